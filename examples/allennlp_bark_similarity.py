"""The AllenNLP ELMo snippet, unchanged but for the import line: the two senses of "bark".

    python examples/allennlp_bark_similarity.py

Runs offline on the shipped ``default`` backbone; set ELMO_OPTIONS / ELMO_WEIGHTS to other files
or to the official AllenNLP URLs. With ``from allennlp.modules.elmo import Elmo, batch_to_ids``
instead of the line below, AllenNLP 2.10.1 prints the same numbers.
"""

import os
from pathlib import Path

import torch

from elmo_core import Elmo, batch_to_ids

MODEL = Path(__file__).resolve().parent.parent / "elmo_core" / "pretrained" / "default"
options_file = os.environ.get("ELMO_OPTIONS", str(MODEL / "options.json"))
weight_file = os.environ.get("ELMO_WEIGHTS", str(MODEL / "weights.hdf5"))

# Compute two different representations for each token.
# Each representation is a linear weighted combination of the
# 3 layers in ELMo (i.e., charcnn, the outputs of the two BiLSTM)
elmo = Elmo(options_file, weight_file, 2, dropout=0)

# use batch_to_ids to convert sentences to character ids
sentences = [
    ["The", "dog", "let", "out", "a", "sharp", "bark"],
    ["The", "bark", "of", "the", "ancient", "oak", "was", "rough"],
]
character_ids = batch_to_ids(sentences)

embeddings = elmo(character_ids)

# embeddings['elmo_representations'] is length two list of tensors.
# Each element contains one layer of ELMo representations with shape
# (2, 8, 2 * projection_dim): 256 for the default backbone, 1024 for the original ELMo.
representations = embeddings["elmo_representations"][0]
print("representations:", tuple(representations.shape), "mask:", embeddings["mask"].sum(dim=1).tolist())
dog_bark, oak_bark = representations[0, 6], representations[1, 1]
cosine = torch.nn.functional.cosine_similarity(dog_bark, oak_bark, dim=0)
print(f"cosine(bark of a dog, bark of an oak) = {cosine.item():.4f}")
