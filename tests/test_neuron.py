import math

import pytest
import torch

from albsnn.errors import ConfigError
from albsnn.neuron import LIF, firing_rates, lif_step, reset_firing_rates
from albsnn.surrogate import SURROGATES, ATan, Rectangular, Sigmoid, get_surrogate

# Hand-computed: decay 0.5, V_th 1, input 0.6 every step.
# hard: h = .6 (no), .9 (no), 1.05 (fire, v=0), .6, .9, 1.05 (fire)
# soft: h = .6, .9, 1.05 (fire, v=.05), .625, .9125, 1.05625 (fire, v=.05625)
HAND = [
    ("hard", [0, 0, 1, 0, 0, 1], [0.6, 0.9, 0.0, 0.6, 0.9, 0.0]),
    ("soft", [0, 0, 1, 0, 0, 1], [0.6, 0.9, 0.05, 0.625, 0.9125, 0.05625]),
]


@pytest.mark.parametrize("reset, spikes, membranes", HAND)
def test_lif_matches_hand_computed_sequence(reset, spikes, membranes):
    x = torch.full((6, 1), 0.6, dtype=torch.float64)
    out = LIF(decay=0.5, v_threshold=1.0, reset=reset)(x)
    assert out.flatten().tolist() == spikes
    v, seen = 0.0, []
    for t in range(6):
        _, v = lif_step(x[t], v, decay=0.5, v_threshold=1.0, reset=reset, surrogate=ATan())
        seen.append(float(v))
    assert seen == pytest.approx(membranes)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_module_agrees_with_pure_step(reset):
    # The module's loop must be exactly lif_step applied T times.
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4) * 1.5
    lif = LIF(decay=0.7, v_threshold=0.8, reset=reset)
    v, ref = 0.0, []
    for t in range(5):
        s, v = lif_step(x[t], v, decay=0.7, v_threshold=0.8, reset=reset, surrogate=lif.surrogate)
        ref.append(s)
    assert torch.equal(lif(x), torch.stack(ref))


def test_single_time_step_fires_on_threshold_without_loop():
    # T = 1: spike iff x >= V_th, gradient still flows through the surrogate.
    x = torch.tensor([[0.5, 1.0, 1.5]], requires_grad=True)
    s = LIF(v_threshold=1.0)(x)
    assert s.tolist() == [[0.0, 1.0, 1.0]]
    s.sum().backward()
    assert (x.grad > 0).all()


SURROGATE_GRADS = [
    # (surrogate, x, expected dH/dx)
    (Rectangular(width=1.0), 0.0, 1.0),
    (Rectangular(width=1.0), 0.49, 1.0),
    (Rectangular(width=1.0), 0.51, 0.0),
    (Rectangular(width=0.5), 0.1, 2.0),
    (Sigmoid(alpha=4.0), 0.0, 1.0),  # 4 * .5 * .5
    (Sigmoid(alpha=4.0), 0.5, 4 * (1 / (1 + math.exp(-2))) * (1 - 1 / (1 + math.exp(-2)))),
    (ATan(alpha=2.0), 0.0, 1.0),  # a/2
    (ATan(alpha=2.0), 1.0, 1.0 / (1 + math.pi**2)),
]


@pytest.mark.parametrize("surrogate, x, expected", SURROGATE_GRADS)
def test_surrogate_gradient_values(surrogate, x, expected):
    t = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    out = surrogate(t)
    assert out.item() == (1.0 if x >= 0 else 0.0)
    out.backward()
    assert t.grad.item() == pytest.approx(expected)


@pytest.mark.parametrize("name", sorted(SURROGATES))
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_spike_with_threshold_equals_the_shifted_definition(name, dtype, rtol):
    # The threshold is folded into the spike op (fewer passes on CPU); spikes and gradients must be
    # those of H(x - V_th) with the surrogate's derivative, whatever the surrogate's fused backward.
    surrogate = get_surrogate(name)
    torch.manual_seed(0)
    x = (torch.randn(4096, dtype=dtype) * 1.5).requires_grad_()
    grad = torch.randn(4096, dtype=dtype)
    spikes = surrogate(x, 0.8)
    assert torch.equal(spikes, (x.detach() - 0.8 >= 0).to(dtype))
    spikes.backward(grad)
    expected = grad * surrogate.derivative(x.detach() - 0.8)
    torch.testing.assert_close(x.grad, expected, rtol=rtol, atol=0)


def test_firing_rate_counts_spikes_per_neuron_step():
    lif = LIF(decay=0.5, v_threshold=1.0)
    model = torch.nn.Sequential(lif)
    model(torch.full((6, 1), 0.6))  # 2 spikes in 6 steps
    assert firing_rates(model) == {"0": pytest.approx(2 / 6)}
    reset_firing_rates(model)
    assert lif.firing_rate == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"decay": 1.5}, {"v_threshold": 0.0}, {"reset": "zero"}],
)
def test_bad_neuron_parameters_are_rejected(kwargs):
    with pytest.raises(ConfigError):
        LIF(**kwargs)


def test_unknown_surrogate_names_the_choices():
    with pytest.raises(ConfigError, match="atan"):
        get_surrogate("relu")
