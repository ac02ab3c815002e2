"""An ELMo + CRF named-entity tagger (``torchcrf.CRF``) with ``num_output_representations=2``, written
as with AllenNLP's ``Elmo``: only the import line differs.

    python examples/allennlp_crf_tagger.py

One ELMo mix feeds a BiLSTM encoder, the second is concatenated to the encoder's output (as in
the ELMo paper's SQuAD model); a CRF scores tag sequences. Trains for a few steps on six made-up
sentences and prints the tags it decodes. Runs offline on the shipped ``default`` backbone; set
ELMO_OPTIONS / ELMO_WEIGHTS to other files or to the official AllenNLP URLs.
"""

import os
from pathlib import Path

import torch
from torchcrf import CRF

from elmo_core import Elmo, batch_to_ids

MODEL = Path(__file__).resolve().parent.parent / "elmo_core" / "pretrained" / "default"
options_file = os.environ.get("ELMO_OPTIONS", str(MODEL / "options.json"))
weight_file = os.environ.get("ELMO_WEIGHTS", str(MODEL / "weights.hdf5"))

torch.manual_seed(0)

train = [
    ("EU rejects German call to boycott British lamb", "B-ORG O B-MISC O O O B-MISC O"),
    ("Peter Blackburn", "B-PER I-PER"),
    ("Germany 's representative Werner Zwingmann said", "B-LOC O O B-PER I-PER O"),
    ("The European Commission said on Thursday", "O B-ORG I-ORG O O O"),
    ("Britain and France agreed", "B-LOC O B-LOC O"),
    ("Fischler proposed EU-wide measures", "B-PER O B-MISC O"),
]
tags = sorted({tag for _, line in train for tag in line.split()})
tag_index = {tag: i for i, tag in enumerate(tags)}


class ElmoCrfTagger(torch.nn.Module):
    def __init__(self, num_tags: int, hidden: int = 64):
        super().__init__()
        self.elmo = Elmo(options_file, weight_file, num_output_representations=2, dropout=0.5)
        dim = self.elmo.get_output_dim()
        self.encoder = torch.nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.projection = torch.nn.Linear(2 * hidden + dim, num_tags)
        self.crf = CRF(num_tags, batch_first=True)

    def emissions(self, character_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        elmo_output = self.elmo(character_ids)
        below, above = elmo_output["elmo_representations"]
        mask = elmo_output["mask"]
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            below, mask.sum(dim=1).cpu(), batch_first=True, enforce_sorted=False
        )
        encoded, _ = self.encoder(packed)
        encoded, _ = torch.nn.utils.rnn.pad_packed_sequence(encoded, batch_first=True, total_length=mask.shape[1])
        return self.projection(torch.cat([encoded, above], dim=-1)), mask

    def loss(self, character_ids: torch.Tensor, tag_ids: torch.Tensor) -> torch.Tensor:
        emissions, mask = self.emissions(character_ids)
        return -self.crf(emissions, tag_ids, mask=mask, reduction="mean")

    def decode(self, character_ids: torch.Tensor) -> list[list[int]]:
        emissions, mask = self.emissions(character_ids)
        return self.crf.decode(emissions, mask=mask)


sentences = [text.split() for text, _ in train]
character_ids = batch_to_ids(sentences)
tag_ids = torch.zeros(character_ids.shape[:2], dtype=torch.long)
for row, (_, line) in enumerate(train):
    tag_ids[row, : len(line.split())] = torch.tensor([tag_index[t] for t in line.split()])

model = ElmoCrfTagger(len(tags))
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
for step in range(30):
    model.train()
    loss = model.loss(character_ids, tag_ids)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == 29:
        print(f"step {step:2d}: loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    decoded = model.decode(character_ids)
correct = sum(p == tag_index[g] for path, (_, line) in zip(decoded, train) for p, g in zip(path, line.split()))
total = sum(len(line.split()) for _, line in train)
print(f"training tag accuracy: {correct / total:.2f}")
for sentence, path in zip(sentences[:2], decoded):
    print(" ".join(f"{word}/{tags[t]}" for word, t in zip(sentence, path)))
