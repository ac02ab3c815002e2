"""TF-Hub-style ELMo: the norm of every layer's vector for each token of one sentence.

    python examples/hub_layer_norms.py

Uses the ``tokens`` signature, as the TF-Hub ELMo does (``{"tokens": ..., "sequence_len": ...}``,
rows padded with ""); only the loading line differs from a TF-Hub script. Runs offline on the
shipped ``default`` backbone.
"""

from elmo_core import hub

elmo = hub.load("default")
tokens = "The dog barked loudly in the park".split()
outputs = elmo(
    {"tokens": [tokens + ["", ""]], "sequence_len": [len(tokens)]},  # padded to 9 like a batch would be
    signature="tokens",
    as_dict=True,
)
keys = ("word_emb", "lstm_outputs1", "lstm_outputs2", "elmo")
print(f"{'token':<8}" + "".join(f"{key:>15}" for key in keys))
for t, token in enumerate(tokens):
    print(f"{token:<8}" + "".join(f"{outputs[key][0, t].norm().item():15.3f}" for key in keys))
print("shapes:", {key: tuple(outputs[key].shape) for key in keys}, "sequence_len:", outputs["sequence_len"].tolist())
