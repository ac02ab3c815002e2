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


def test_batched_backtrace_gives_pytorch_crfs_paths_including_ties():
    # Integer emissions make many equal scores: the first maximal tag must win, as in pytorch-crf.
    from torchcrf import CRF

    generator = torch.Generator().manual_seed(3)
    for trial in range(120):
        scheme = "BIOES" if trial % 3 else None
        crf = ConstrainedCrf(LABELS, scheme)
        batch = int(torch.randint(1, 9, (1,), generator=generator))
        steps = int(torch.randint(1, 12, (1,), generator=generator))
        if trial % 2:
            emissions = torch.randint(-2, 3, (batch, steps, len(LABELS)), generator=generator).float()
        else:
            emissions = torch.randn(batch, steps, len(LABELS), generator=generator)
        lengths = torch.randint(1, steps + 1, (batch,), generator=generator)
        mask = torch.arange(steps)[None, :] < lengths[:, None]
        expected = CRF._viterbi_decode(crf, emissions.transpose(0, 1), mask.transpose(0, 1))
        got = crf.decode(emissions, mask=mask)
        assert got == expected
        assert [len(path) for path in got] == lengths.tolist()


def test_decode_without_mask_uses_every_step():
    crf = ConstrainedCrf(LABELS, "BIOES")
    paths = crf.decode(torch.randn(3, 5, len(LABELS)))
    assert [len(path) for path in paths] == [5, 5, 5]
