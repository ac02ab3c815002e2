"""A toy sentiment classifier on mean-pooled ELMo, written as with AllenNLP's ``Elmo``: only the
import line differs.

    python examples/allennlp_sentiment_classifier.py

Trains a linear layer (and ELMo's scalar mix) for a few steps on eight made-up sentences and
prints the loss and the training accuracy. Runs offline on the shipped ``default`` backbone; set
ELMO_OPTIONS / ELMO_WEIGHTS to other files or to the official AllenNLP URLs.
"""

import os
from pathlib import Path

import torch

from elmo_core import Elmo, batch_to_ids

MODEL = Path(__file__).resolve().parent.parent / "elmo_core" / "pretrained" / "default"
options_file = os.environ.get("ELMO_OPTIONS", str(MODEL / "options.json"))
weight_file = os.environ.get("ELMO_WEIGHTS", str(MODEL / "weights.hdf5"))

torch.manual_seed(0)

train = [
    ("a great movie with wonderful acting", 1),
    ("truly wonderful and great fun", 1),
    ("I loved every minute of it", 1),
    ("the best film of the year", 1),
    ("a terrible movie with awful acting", 0),
    ("truly awful and a boring mess", 0),
    ("I hated every minute of it", 0),
    ("the worst film of the year", 0),
]


class ElmoClassifier(torch.nn.Module):
    def __init__(self, num_labels: int):
        super().__init__()
        self.elmo = Elmo(options_file, weight_file, 1, dropout=0.5)
        self.classifier = torch.nn.Linear(self.elmo.get_output_dim(), num_labels)

    def forward(self, character_ids: torch.Tensor) -> torch.Tensor:
        elmo_output = self.elmo(character_ids)
        representations = elmo_output["elmo_representations"][0]
        mask = elmo_output["mask"].unsqueeze(-1).float()
        # mean over each sentence's real tokens
        pooled = (representations * mask).sum(dim=1) / mask.sum(dim=1)
        return self.classifier(pooled)


model = ElmoClassifier(num_labels=2)
character_ids = batch_to_ids([text.split() for text, _ in train])
labels = torch.tensor([label for _, label in train])
# the biLM is frozen (requires_grad=False): only the scalar mix and the classifier train
optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)

for step in range(40):
    model.train()
    loss = torch.nn.functional.cross_entropy(model(character_ids), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0 or step == 39:
        print(f"step {step:2d}: loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    predictions = model(character_ids).argmax(dim=-1)
print(f"training accuracy: {(predictions == labels).float().mean().item():.2f}")
