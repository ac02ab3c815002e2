"""The scripts in examples/ run offline on the shipped ``default`` backbone and print what they
promise. The five run side by side (one thread each) in separate processes, as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from elmo_core import batch_to_ids, hub, load_bilm
from helpers import REPO

EXAMPLES = (
    "allennlp_bark_similarity.py",
    "allennlp_sentiment_classifier.py",
    "allennlp_crf_tagger.py",
    "hub_bank_senses.py",
    "hub_layer_norms.py",
)


@pytest.fixture(scope="module")
def printed() -> dict[str, str]:
    """What each example printed (all started at once, then collected)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for variable in ("ELMO_OPTIONS", "ELMO_WEIGHTS"):  # the examples' override: use the shipped model here
        env.pop(variable, None)
    running = {
        name: subprocess.Popen(
            [sys.executable, str(REPO / "examples" / name)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in EXAMPLES
    }
    outputs = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{name} failed:\n{stderr[-3000:]}"
        outputs[name] = stdout
    return outputs


def numbers(line: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", line)]


def test_bark_similarity_prints_the_cosine_of_the_two_barks(printed):
    text = printed["allennlp_bark_similarity.py"]
    assert "representations: (2, 8, 256) mask: [7, 8]" in text
    (cosine,) = numbers(text.splitlines()[-1])
    sentences = [
        ["The", "dog", "let", "out", "a", "sharp", "bark"],
        ["The", "bark", "of", "the", "ancient", "oak", "was", "rough"],
    ]
    with torch.no_grad():
        mixed = load_bilm("default")(batch_to_ids(sentences)).layers.mean(0)  # equal weights, dropout 0
    expected = torch.nn.functional.cosine_similarity(mixed[0, 6], mixed[1, 1], dim=0).item()
    assert abs(cosine - expected) < 2e-4 and cosine < 0.99  # context separates the two senses


def test_sentiment_classifier_learns_its_training_sentences(printed):
    lines = printed["allennlp_sentiment_classifier.py"].splitlines()
    losses = [numbers(line)[0] for line in lines if line.startswith("step")]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert lines[-1] == "training accuracy: 1.00"


def test_crf_tagger_decodes_its_training_sentences(printed):
    text = printed["allennlp_crf_tagger.py"]
    assert "training tag accuracy: 1.00" in text
    assert "Peter/B-PER Blackburn/I-PER" in text


def test_bank_senses_separate_in_the_contextual_layers(printed):
    rows = {line.split()[0]: numbers(line) for line in printed["hub_bank_senses.py"].splitlines()[1:5]}
    assert rows["word_emb"] == [1.0, 1.0]  # the char-CNN layer cannot tell the senses apart
    for key in ("lstm_outputs1", "lstm_outputs2", "elmo"):
        same, cross = rows[key]
        assert same > cross, key
    outputs = hub.load("default")(
        ["She went to the bank to withdraw some cash", "He walked into the bank to open an account"], as_dict=True
    )
    expected = torch.nn.functional.cosine_similarity(outputs["elmo"][0, 4], outputs["elmo"][1, 4], dim=0).item()
    assert abs(rows["elmo"][0] - expected) < 2e-4


def test_layer_norms_table(printed):
    lines = printed["hub_layer_norms.py"].splitlines()
    tokens = "The dog barked loudly in the park".split()
    assert [line.split()[0] for line in lines[1:8]] == tokens
    assert "'word_emb': (1, 9, 128)" in lines[-1] and "sequence_len: [7]" in lines[-1]
    # the "default" signature (no padding) gives the same norms
    outputs = hub.load("default")([" ".join(tokens)], as_dict=True)
    for t, line in enumerate(lines[1:8]):
        expected = [outputs[key][0, t].norm().item() for key in ("word_emb", "lstm_outputs1", "lstm_outputs2", "elmo")]
        assert numbers(line) == pytest.approx(expected, abs=2e-3)
