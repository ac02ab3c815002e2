"""TF-Hub-style ELMo: the financial and the river sense of "bank".

    python examples/hub_bank_senses.py

Written as the TF-Hub ELMo snippets are (``elmo(sentences, signature="default", as_dict=True)``);
only the loading line differs (``hub.Module("https://tfhub.dev/google/elmo/3")`` there). Runs
offline on the shipped ``default`` backbone.

The three sentences put "bank" at the same position, so the comparison is about its sense, not
where it stands in the sentence (which also moves its vectors).
"""

import torch

from elmo_core import hub

elmo = hub.load("default")
sentences = [
    "She went to the bank to withdraw some cash",
    "He walked into the bank to open an account",
    "He walked along the bank of the river",
]
outputs = elmo(sentences, signature="default", as_dict=True)
position = [sentence.split(" ").index("bank") for sentence in sentences]

print("output                 cos(money, money)  cos(money, river)")
for key in ("word_emb", "lstm_outputs1", "lstm_outputs2", "elmo"):
    bank = outputs[key][torch.arange(len(sentences)), torch.tensor(position)]
    same = torch.nn.functional.cosine_similarity(bank[0], bank[1], dim=0).item()
    cross = (
        torch.nn.functional.cosine_similarity(bank[0], bank[2], dim=0).item()
        + torch.nn.functional.cosine_similarity(bank[1], bank[2], dim=0).item()
    ) / 2
    print(f"{key:<22} {same:17.4f} {cross:18.4f}")
print("default (sentence mean):", tuple(outputs["default"].shape))
