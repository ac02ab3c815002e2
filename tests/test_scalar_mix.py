import pytest
import torch

from elmo_core import ScalarMix
from elmo_core.scalar_mix import masked_layer_norm


def layers_and_mask():
    torch.manual_seed(0)
    layers = torch.randn(3, 2, 4, 5)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    return layers, mask


def test_learned_mix_value_is_gamma_times_softmax_weighted_sum():
    layers, mask = layers_and_mask()
    mix = ScalarMix(3, initial_weights=[0.1, 0.2, 0.3], initial_gamma=2.0)
    s = torch.softmax(torch.tensor([0.1, 0.2, 0.3]), 0)
    expected = 2.0 * (s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2])
    assert torch.allclose(mix(layers, mask), expected, atol=1e-6)
    assert torch.allclose(mix.normalized_weights(), s)


def test_learned_mix_gradients_match_the_analytic_ones():
    layers, mask = layers_and_mask()
    mix = ScalarMix(3)
    mix(layers, mask).sum().backward()
    s = torch.full((3,), 1 / 3)
    sums = layers.sum(dim=(1, 2, 3))  # d out / d s_j summed over elements
    # d/dw_i of sum_j s_j S_j = s_i (S_i - sum_j s_j S_j); gamma = 1
    expected_w = s * (sums - (s * sums).sum())
    assert torch.allclose(mix.weights.grad, expected_w, atol=1e-4)
    assert torch.allclose(mix.gamma.grad, (s * sums).sum().reshape(1), atol=1e-4)


def test_layer_norm_uses_one_mean_and_variance_over_unmasked_elements():
    layers, mask = layers_and_mask()
    normed = masked_layer_norm(layers[0], mask)
    values = normed[mask]
    assert abs(values.mean().item()) < 1e-5
    assert abs(values.var(unbiased=False).item() - 1.0) < 1e-4
    mix = ScalarMix(3, do_layer_norm=True)
    with pytest.raises(ValueError, match="mask"):
        mix(layers)
    assert mix(layers, mask).shape == (2, 4, 5)


def test_penalty_is_lambda_times_squared_raw_weights():
    mix = ScalarMix(3, l2_coef=0.001, initial_weights=[1.0, -2.0, 0.5])
    assert torch.isclose(mix.penalty(), torch.tensor(0.001 * 5.25))
    assert ScalarMix(3, mode="average").penalty() == 0


def test_fixed_modes():
    layers, mask = layers_and_mask()
    assert torch.equal(ScalarMix(3, mode="single", layer=1)(layers, mask), layers[1])
    assert torch.equal(ScalarMix(3, mode="top")(layers, mask), layers[2])
    assert torch.allclose(ScalarMix(3, mode="average")(layers, mask), layers.mean(0))
    concat = ScalarMix(3, mode="concat")
    assert concat(layers, mask).shape == (2, 4, 15) and concat.output_dim(5) == 15
    assert not any(p.requires_grad for p in ScalarMix(3, mode="average").parameters())


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="layer in 0..2"):
        ScalarMix(3, mode="single", layer=3)
    with pytest.raises(ValueError, match="unknown ScalarMix mode"):
        ScalarMix(3, mode="max")
    with pytest.raises(ValueError, match="received 2"):
        ScalarMix(3)(torch.randn(2, 1, 1, 1))


def test_elmo_has_named_mixes_from_one_frozen_pass(tiny_model):
    from elmo_core import NamedMixElmo, batch_to_ids, load_bilm

    elmo = NamedMixElmo(load_bilm(options=tiny_model[0], weights=tiny_model[1]), ["ner", "sentiment"], dropout=0.0)
    reps, mask = elmo(batch_to_ids([["a", "b"], ["c"]]))
    assert set(reps) == {"ner", "sentiment"} and reps["ner"].shape == (2, 2, 16)
    assert not any(p.requires_grad for p in elmo.bilm.parameters())
    reps["ner"].sum().backward()
    assert elmo.mixes["ner"].weights.grad is not None
    elmo.train()
    assert not elmo.bilm.training


@pytest.mark.parametrize(
    "mixes, message",
    [
        ([], "no mixes given"),
        (["ner", "ner"], "mix names repeat: 'ner'"),
        (["ner.v2"], "mix name 'ner.v2': a non-empty str without '.'"),
        ({"ner": 4}, "mix 'ner' mixes 4 layers; this backbone has 3"),
    ],
)
def test_named_mixes_refuse_what_would_silently_collapse(tiny_model, mixes, message):
    """Repeated names used to become one mix, and an empty list a model that returns nothing."""
    from elmo_core import NamedMixElmo, load_bilm
    from elmo_core.errors import BackboneUsageError

    if isinstance(mixes, dict):
        mixes = {name: ScalarMix(layers) for name, layers in mixes.items()}
    with pytest.raises(BackboneUsageError, match=message):
        NamedMixElmo(load_bilm(options=tiny_model[0], weights=tiny_model[1]), mixes)


@pytest.mark.parametrize("layers", [0, -1, 2.5])
def test_scalar_mix_needs_at_least_one_layer(layers):
    from elmo_core.errors import BackboneUsageError

    with pytest.raises(BackboneUsageError, match="ScalarMix needs num_layers >= 1"):
        ScalarMix(layers)
