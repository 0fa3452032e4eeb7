import numpy as np
import pytest
import torch

from albsnn.binarize import Binarizer, BinaryConv2d, BinaryLinear, binary_weight, compute_alpha, sign


def test_sign_never_returns_zero():
    assert sign(torch.tensor([-2.0, -0.0, 0.0, 3.0])).tolist() == [-1.0, 1.0, 1.0, 1.0]


def test_ste_passes_gradient_inside_clip_and_zero_outside():
    # Rule: dW = g where |W| <= 1, 0 elsewhere; zero weights included (sign(0)=+1, grad passes).
    w = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    g = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    binary_weight(w, torch.ones(1)).backward(g)
    expected = np.where(np.abs(w.detach().numpy()) <= 1, g.numpy(), 0.0)
    np.testing.assert_array_equal(w.grad.numpy(), expected)


def test_alpha_per_channel_is_mean_abs_weight():
    w = torch.tensor([[[[1.0, -3.0]]], [[[0.5, 0.5]]]])  # 2 output channels
    assert compute_alpha(w, "channel").flatten().tolist() == [2.0, 0.5]
    assert compute_alpha(w, "layer").flatten().tolist() == [1.25]
    wb = Binarizer("channel")(w)
    assert wb.flatten().tolist() == [2.0, -2.0, 0.5, 0.5]


def test_learned_alpha_gets_sum_of_grad_times_sign():
    w = torch.tensor([[0.5, -0.2], [0.1, 0.3]])
    alpha = torch.tensor([[1.0], [2.0]], requires_grad=True)
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    binary_weight(w, alpha).backward(g)
    assert alpha.grad.flatten().tolist() == [1.0 - 2.0, 3.0 + 4.0]


def test_switching_to_binary_and_back_keeps_latent_weights():
    conv = BinaryConv2d(2, 3, 3, padding=1)
    latent = conv.weight.detach().clone()
    x = torch.randn(1, 2, 5, 5)
    fp = conv(x)
    conv.set_binary(True)
    assert conv.precision == 1
    binary = conv(x)
    assert not torch.allclose(fp, binary)
    conv.set_binary(False)
    assert torch.equal(conv.weight, latent)
    assert torch.equal(conv(x), fp)


def test_binary_linear_uses_alpha_sign_weights():
    lin = BinaryLinear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.2, -0.4, 0.6], [1.0, 1.0, -1.0]]))
    lin.set_binary(True)
    out = lin(torch.ones(1, 3))
    assert out.flatten().tolist() == pytest.approx([0.4 * (1 - 1 + 1), 1.0 * (1 + 1 - 1)])


def test_binary_state_travels_in_the_state_dict():
    a, b = BinaryConv2d(1, 2, 3), BinaryConv2d(1, 2, 3)
    a.set_binary(True)
    b.load_state_dict(a.state_dict())
    assert b.is_binary
