import torch

from data.tags import count_invalid_transitions
from tasks.heads.crf import ConstrainedCrf

LABELS = ["B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "O"]


def decode_random(scheme):
    torch.manual_seed(0)
    crf = ConstrainedCrf(LABELS, scheme)
    emissions = torch.randn(64, 12, len(LABELS)) * 5
    mask = torch.ones(64, 12, dtype=torch.bool)
    mask[32:, 7:] = False
    return [[LABELS[t] for t in seq] for seq in crf.decode(emissions, mask=mask)]


def test_constrained_decoding_only_yields_valid_bioes():
    assert sum(count_invalid_transitions(seq, "BIOES") for seq in decode_random("BIOES")) == 0


def test_unconstrained_decoding_does_yield_invalid_sequences():
    # the counterpart that shows the test above can fail
    assert sum(count_invalid_transitions(seq, "BIOES") for seq in decode_random(None)) > 0


def test_likelihood_trains_the_free_parameters_only():
    crf = ConstrainedCrf(LABELS, "BIOES")
    emissions = torch.randn(2, 3, len(LABELS), requires_grad=True)
    tags = torch.tensor([[3, 8, 7], [0, 1, 2]])
    crf(emissions, tags, mask=torch.ones(2, 3, dtype=torch.bool)).backward()
    assert crf.free_transitions.grad is not None and emissions.grad is not None
    assert not crf.transition_mask.requires_grad
    assert {name for name, _ in crf.named_parameters()} == {"free_start", "free_end", "free_transitions"}
