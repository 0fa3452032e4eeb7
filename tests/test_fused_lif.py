"""The fused LIF (one autograd function over [T, ...]) against the reference lif_step loop."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from albsnn.errors import ConfigError
from albsnn.fused_lif import FusedLIF, lif_sequence, resolve_backend
from albsnn.neuron import LIF, lif_step
from albsnn.surrogate import SURROGATES, get_surrogate

SURROGATE_NAMES = sorted(SURROGATES)


def _currents(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # spread around the threshold so that every step both fires and stays silent somewhere
    return (1.5 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def _reference(x, *, decay, v_threshold, reset, surrogate, detach_reset):
    v, out = 0.0, []
    for xt in x:
        s, v = lif_step(
            xt,
            v,
            decay=decay,
            v_threshold=v_threshold,
            reset=reset,
            surrogate=surrogate,
            detach_reset=detach_reset,
        )
        out.append(s)
    return torch.stack(out)


def _spikes_and_grad(fn, x, grad_out):
    x = x.detach().clone().requires_grad_()
    s = fn(x)
    (g,) = torch.autograd.grad(s, x, grad_out)
    return s, g


@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("time_steps", [1, 2, 6])
def test_fused_module_equals_the_loop_in_fp32(surrogate, reset, detach_reset, time_steps):
    kw = dict(
        decay=0.7, v_threshold=0.8, reset=reset, surrogate=get_surrogate(surrogate), detach_reset=detach_reset
    )
    x = _currents((time_steps, 16, 3, 5, 5))
    grad_out = _currents(x.shape, seed=1)
    s_loop, g_loop = _spikes_and_grad(LIF(**kw, backend="loop"), x, grad_out)
    s_fused, g_fused = _spikes_and_grad(LIF(**kw, backend="fused"), x, grad_out)
    assert torch.equal(s_fused, s_loop)  # bit for bit
    assert 0 < s_loop.mean() < 1
    rel = (g_fused - g_loop).abs().max() / g_loop.abs().max()
    assert rel <= 1e-6


@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_fused_gradients_equal_autograd_of_the_loop_in_float64(surrogate, reset, detach_reset):
    # torch.autograd.gradcheck's finite differences cannot judge a surrogate gradient (the forward is a
    # step whose true derivative is 0), so the float64 reference is autograd through lif_step itself.
    kw = dict(
        decay=0.5, v_threshold=1.0, reset=reset, surrogate=get_surrogate(surrogate), detach_reset=detach_reset
    )
    x = _currents((5, 40), dtype=torch.float64)
    grad_out = _currents(x.shape, dtype=torch.float64, seed=2)
    s_ref, g_ref = _spikes_and_grad(lambda v: _reference(v, **kw), x, grad_out)
    fused = lambda v: FusedLIF.apply(v, 0.5, 1.0, reset == "hard", kw["surrogate"], detach_reset, False)  # noqa: E731
    s, g = _spikes_and_grad(fused, x, grad_out)
    assert s.dtype == g.dtype == torch.float64
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)


def test_reset_gradient_is_in_the_fused_backward():
    # Detaching the reset must change the gradient, or the two parametrizations above test one thing.
    x = _currents((4, 64))
    grad_out = torch.ones_like(x)
    grads = [_spikes_and_grad(LIF(detach_reset=d, backend="fused"), x, grad_out)[1] for d in (False, True)]
    assert not torch.equal(*grads)


def test_bf16_currents_give_the_loops_spikes_and_bf16_gradients():
    x = _currents((3, 8, 4, 6, 6), dtype=torch.bfloat16)
    grad_out = _currents(x.shape, seed=3)
    s_loop, g_loop = _spikes_and_grad(LIF(backend="loop"), x, grad_out)
    s_fused, g_fused = _spikes_and_grad(LIF(backend="fused"), x, grad_out)
    assert s_fused.dtype == torch.float32  # the membrane is integrated in fp32
    assert g_fused.dtype == torch.bfloat16
    assert torch.equal(s_fused, s_loop)
    assert torch.equal(g_fused, g_loop)


def test_channels_last_currents_keep_their_layout_and_values():
    x = _currents((2 * 4, 6, 5, 5)).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 4))
    s = LIF(backend="fused")(x)
    assert s.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(s, LIF(backend="loop")(x.contiguous()))


def _saved_numel(fn, x):
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.detach().clone().requires_grad_())
    return sum(saved)


def test_fused_forward_saves_only_the_membrane():
    x = _currents((4, 32, 8, 8))
    assert _saved_numel(LIF(backend="fused"), x) == x.numel()  # h[t] for every step, nothing else
    assert _saved_numel(LIF(backend="loop"), x) > 2 * x.numel()


def test_unknown_backend_names_the_choices():
    with pytest.raises(ConfigError, match=r"unknown lif_backend 'cuda-magic'.*'auto'.*'fused'.*'loop'"):
        LIF(backend="cuda-magic")
    with pytest.raises(ConfigError, match="unknown lif_backend"):
        lif_sequence(
            torch.zeros(2, 3),
            decay=0.5,
            v_threshold=1.0,
            reset="hard",
            surrogate=get_surrogate("atan"),
            backend="x",
        )


def test_auto_runs_the_pytorch_path_on_cpu():
    assert resolve_backend("auto", torch.zeros(2, 3), get_surrogate("atan")) is False


@pytest.mark.skipif(importlib.util.find_spec("triton") is not None, reason="Triton is installed here")
def test_forced_triton_backend_without_triton_says_what_to_do():
    with pytest.raises(
        ConfigError, match="lif_backend 'triton' cannot run: Triton is not installed.*'fused'"
    ):
        resolve_backend("triton", torch.zeros(2, 3), get_surrogate("atan"))


_TRITON_CHECK = textwrap.dedent(
    """
    import torch
    from albsnn.fused_lif import FusedLIF
    from albsnn.surrogate import SURROGATES, get_surrogate

    g = torch.Generator().manual_seed(0)
    for name in sorted(SURROGATES):
        for hard in (True, False):
            for detach in (False, True):
                for T in (1, 3):
                    sur = get_surrogate(name)
                    x = 1.5 * torch.randn(T, 5, 300, generator=g)
                    go = torch.randn(x.shape, generator=g)
                    out = []
                    for use_triton in (False, True):
                        xi = x.clone().requires_grad_()
                        s = FusedLIF.apply(xi, 0.6, 0.9, hard, sur, detach, use_triton)
                        (gx,) = torch.autograd.grad(s, xi, go)
                        out.append((s, gx))
                    (s0, g0), (s1, g1) = out
                    assert torch.equal(s0, s1), (name, hard, detach, T)
                    rel = ((g0 - g1).abs().max() / g0.abs().max()).item()
                    assert rel <= 1e-6, (name, hard, detach, T, rel)
    print("triton kernels agree")
    """
)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_triton_kernels_equal_the_pytorch_path_under_the_interpreter():
    # TRITON_INTERPRET=1 runs the kernels on CPU tensors; it must be set before Triton is imported.
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _TRITON_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "triton kernels agree" in done.stdout


@pytest.mark.skipif(
    not (torch.cuda.is_available() and importlib.util.find_spec("triton")), reason="needs CUDA and Triton"
)
@pytest.mark.parametrize("surrogate", SURROGATE_NAMES)
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_triton_kernels_on_the_gpu_match_the_pytorch_path(surrogate, reset):
    sur = get_surrogate(surrogate)
    x = _currents((4, 64, 32, 14, 14)).cuda()
    assert resolve_backend("auto", x, sur) is True
    grad_out = _currents(x.shape, seed=4).cuda()
    out = {}
    for use_triton in (False, True):
        fn = lambda v, t=use_triton: FusedLIF.apply(v, 0.5, 1.0, reset == "hard", sur, False, t)  # noqa: E731
        out[use_triton] = _spikes_and_grad(fn, x, grad_out)
    (s0, g0), (s1, g1) = out[False], out[True]
    # An FMA on the GPU may flip a spike whose h is within one rounding of V_th: allow a handful.
    same = (s0 == s1).all(0)
    assert same.float().mean() >= 0.9999
    rel = (g0 - g1)[:, same].abs().max() / g0.abs().max()
    assert rel <= 1e-5
