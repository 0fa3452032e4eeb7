r"""Training-step time of the ``fmnist`` network: albsnn vs the same network on SpikingJelly 2.0.

The network is 64C3-128C3-P2-256C3-256C3-P2-GAP (28x28x1 input, 10 classes), every conv followed by
BatchNorm and a LIF layer. These implementations are timed on the same device, batch, data and
optimizer (Adam, lr 1e-3), one training step = zero_grad + forward + cross-entropy + backward + step:

* ``ours-loop``     ``albsnn.models.build_model(arch="fmnist", lif_backend="loop")`` fed the static
                    ``[B, 1, 28, 28]`` batch: autograd over ``lif_step`` per time step (the reference).
                    Direct encoding: conv1 + bn1 run once on ``B`` images and their output is expanded
                    over T (a legitimate saving of (T-1)/T of the first layer's work).
* ``ours-fused``    the same with ``lif_backend="auto"``: the fused LIF (PyTorch function on CPU, Triton
                    kernels on CUDA when Triton imports).
* ``ours-compiled`` ``ours-fused`` under ``torch.compile`` (compiled in the untimed warm-up steps).
* ``ours-seq``      (only with ``--impls``) ``ours-fused`` fed ``x.repeat(T, ...)`` as ``[T, B, 1, 28, 28]``.
* ``sj``        SpikingJelly 2.0 multi-step (``step_mode='m'``) ``layer.Conv2d`` / ``layer.BatchNorm2d`` /
                ``neuron.LIFNode`` / ``layer.MaxPool2d`` ..., fed ``x.repeat(T, ...)`` (SpikingJelly's
                own tutorial encoding), ``functional.reset_net`` after every step. Its weights are
                copied from ``ours-loop`` so all compute the same function.

Neuron semantics: ours is ``h = 0.5 v + x``, fire at ``h >= 1``, hard reset to 0, ATan(alpha=2)
surrogate. ``LIFNode(tau=2.0, decay_input=False, v_reset=0.0, v_threshold=1.0,
surrogate_function=ATan(alpha=2.0))`` computes ``h = v - (v - 0) / 2 + x``, the same number
(``v - v/2`` is exact in floating point). Before timing, the script checks that spikes and input
gradients agree on random currents, and prints how far each network's logits and conv1 gradients are
from ``ours-loop``.

Timing: warm-up steps are excluded; then ``--reps`` rounds, each timing ``--steps`` consecutive
steps of every implementation, in the order ABC, CBA, ABC, ... so that drift (thermal, turbo,
allocator) hits all of them alike. Reported per implementation: median seconds per step over the
rounds and the min-max spread; the ratio ``sj / ours`` is taken per round (paired) and its median
printed, with the projected epoch time for 60,000 images. CPU uses ``time.perf_counter`` (or, with
``--clock cpu``, ``time.process_time``: on a machine shared with other jobs, one thread's CPU time is
far steadier than wall time); CUDA uses CUDA events, ``torch.cuda.synchronize`` and bf16 autocast.

Run from the repository root (the package must be importable: ``pip install -e .`` or PYTHONPATH=.)::

    # CPU defaults (batch 32, 20 rounds x 1 step, 2 warm-up): about 2 minutes on 2 idle cores
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --device cpu --data-dir ../shared/data \
        --json runs/train_speed_cpu.json

    # shared/busy machine: CPU seconds of one thread instead of wall time (about 4 minutes)
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --device cpu --data-dir ../shared/data \
        --threads 1 --clock cpu --json runs/train_speed_cpu_1thread.json

    # what dominates a step: torch.profiler table per implementation after the timing
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --device cpu --time-steps 4 --reps 2 --profile 2

    # narrower network, where the neuron (elementwise) share of the step is larger
    PYTHONPATH=. .venv/bin/python benchmarks/train_speed.py --device cpu --data-dir ../shared/data \
        --threads 1 --clock cpu --width 0.25

    # GPU (defaults batch 128, 50 steps x 5 rounds, 10 warm-up), H100 target: sj/ours-* >= 3 at T=1 and 4
    PYTHONPATH=. python benchmarks/train_speed.py --device cuda --data-dir ../shared/data \
        --json runs/train_speed_h100.json

Measured on a 2-core AMD EPYC (torch 2.13 CPU, SpikingJelly 2.0.0, width 1.0, batch 32, 1 thread, CPU
clock, median of 20 paired rounds), before the fused LIF existed: sj / ours-loop = 1.14x at T=1 and
1.16x at T=4 (ours-loop 0.55 s and 2.38 s per step). Convolutions are 73-78 % of a CPU step.
Not yet measured on a GPU (benchmarks/gpu_check.sh runs it). Details:
docs/performance.md, "Training speed vs SpikingJelly".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from albsnn.binarize import BinaryConv2d, BinaryLinear
from albsnn.data import data_root
from albsnn.data.fashion_mnist import FashionMNIST, read_idx
from albsnn.models import GlobalAvgPool, SpikingNet, build_model
from albsnn.neuron import LIF
from albsnn.surrogate import ATan

EPOCH_IMAGES = 60_000

# Per-device defaults: a CPU run must finish in minutes, a GPU run needs enough steps to beat noise.
DEFAULTS = {
    # CPU: one step per round, many rounds; on a shared machine per-step alternation keeps each
    # ABC triple under the same load, and the median over rounds drops the contended ones.
    "cpu": {"batch_size": 32, "steps": 1, "reps": 20, "warmup": 2},
    "cuda": {"batch_size": 128, "steps": 50, "reps": 5, "warmup": 10},
}


def _spikingjelly():
    try:
        from spikingjelly.activation_based import functional, layer, neuron, surrogate
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "this benchmark needs SpikingJelly 2.0: pip install --no-deps spikingjelly==2.0.0 loguru"
        ) from e
    return functional, layer, neuron, surrogate


# ----------------------------------------------------------------------------------------- models


def build_ours(time_steps: int, width: float, lif_backend: str = "auto") -> SpikingNet:
    return build_model(
        arch="fmnist",
        in_channels=1,
        input_size=(28, 28),
        num_classes=10,
        time_steps=time_steps,
        width=width,
        lif_backend=lif_backend,
    )


def with_backend(model: SpikingNet, backend: str) -> SpikingNet:
    """A copy of ``model`` (same weights) whose LIF layers run ``backend``."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, LIF):
            m.backend = backend
    return model


def sj_lif() -> nn.Module:
    """SpikingJelly's LIFNode set to our LIF: h = v - (v - 0)/2 + x = 0.5 v + x, hard reset to 0."""
    _, _, neuron, surrogate = _spikingjelly()
    return neuron.LIFNode(
        tau=2.0,
        decay_input=False,
        v_threshold=1.0,
        v_reset=0.0,
        surrogate_function=surrogate.ATan(alpha=2.0),
        detach_reset=False,
        step_mode="m",
    )


def build_spikingjelly(ours: SpikingNet) -> nn.Sequential:
    """The same layer stack as ``ours`` from SpikingJelly multi-step layers, with ours' weights."""
    _, layer, _, _ = _spikingjelly()
    c = ours.config
    if (c.decay, c.v_threshold, c.reset, c.surrogate, c.surrogate_param, c.detach_reset) != (
        0.5,
        1.0,
        "hard",
        "atan",
        None,
        False,
    ):
        raise ValueError("the SpikingJelly mirror is written for decay 0.5, threshold 1, hard reset, ATan(2)")
    mods: list[nn.Module] = []
    for name, m in ours.named_children():
        if isinstance(m, BinaryConv2d):
            if m.is_binary:
                raise ValueError(f"{name} is binarized; SpikingJelly has no binary conv to compare with")
            new = layer.Conv2d(m.in_channels, m.out_channels, 3, padding=1, bias=False, step_mode="m")
            new.weight.data.copy_(m.weight.data)
        elif isinstance(m, nn.BatchNorm2d):
            new = layer.BatchNorm2d(m.num_features, step_mode="m")
            new.load_state_dict(m.state_dict())
        elif isinstance(m, LIF):
            new = sj_lif()
        elif isinstance(m, nn.MaxPool2d):
            new = layer.MaxPool2d(2, step_mode="m")
        elif isinstance(m, GlobalAvgPool):
            mods.append(layer.AdaptiveAvgPool2d(1, step_mode="m"))
            new = layer.Flatten(step_mode="m")
        elif isinstance(m, BinaryLinear):
            new = layer.Linear(m.in_features, m.out_features, step_mode="m")
            new.load_state_dict({"weight": m.weight.data, "bias": m.bias.data})
        else:
            raise TypeError(f"no SpikingJelly mirror for layer {name} ({type(m).__name__})")
        mods.append(new)
    return nn.Sequential(*mods)


# ------------------------------------------------------------------------------ implementations


@dataclass
class Impl:
    """One way to run a training step; ``step(x, y)`` does zero_grad, forward, backward, update."""

    name: str
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]  # [B, 1, 28, 28] -> [B, 10] logits
    after_step: Callable[[], None] = lambda: None
    optimizer: torch.optim.Optimizer = field(init=False)

    def __post_init__(self) -> None:
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)


IMPLS = ("ours-loop", "ours-fused", "ours-compiled", "ours-seq", "sj")
DEFAULT_IMPLS = ("ours-loop", "ours-fused", "ours-compiled", "sj")
REFERENCE = "ours-loop"  # the equivalence check compares every other implementation with it


def make_impls(
    time_steps: int, width: float, device: torch.device, names=DEFAULT_IMPLS, channels_last: bool = False
) -> list[Impl]:
    """The implementations in ``names``, all with the same initial weights, on ``device``."""
    functional, _, _, _ = _spikingjelly()
    T = time_steps
    torch.manual_seed(0)
    base = build_ours(T, width)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def seq(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)

    impls = []
    for name in (REFERENCE, *[n for n in names if n != REFERENCE]):
        if name == "sj":
            sj = build_spikingjelly(base).to(device, memory_format=fmt)
            impls.append(
                Impl("sj", sj, lambda x, sj=sj: sj(seq(x)).mean(0), lambda sj=sj: functional.reset_net(sj))
            )
            continue
        model = with_backend(base, "loop" if name == "ours-loop" else "auto").to(device, memory_format=fmt)
        if name == "ours-compiled":
            impls.append(Impl(name, model, torch.compile(model)))
        elif name == "ours-seq":
            impls.append(Impl(name, model, lambda x, m=model: m(seq(x))))
        else:
            impls.append(Impl(name, model, model))
    return impls


def train_step(impl: Impl, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    impl.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = F.cross_entropy(impl.forward(x), y)
    loss.backward()
    impl.optimizer.step()
    impl.after_step()


# ------------------------------------------------------------------------------------------ data


def load_batches(
    n_batches: int, batch_size: int, device: torch.device, data_dir: Path | None
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], str]:
    """``n_batches`` normalized batches resident on ``device``: Fashion-MNIST train if found, else noise."""
    n = n_batches * batch_size
    g = torch.Generator().manual_seed(0)
    fm = FashionMNIST
    folder = data_root(data_dir) / fm.folder
    if (folder / fm.train_images.name).is_file() and (folder / fm.train_labels.name).is_file():
        n_all = fm.sizes["train"]
        images = read_idx(folder / fm.train_images.name, fm.image_magic, (n_all, 28, 28))
        labels = read_idx(folder / fm.train_labels.name, fm.label_magic, (n_all,))
        idx = torch.randperm(n_all, generator=g)[:n]
        x = torch.from_numpy(images.copy())[idx].unsqueeze(1).float().div(255)
        x = (x - fm.mean[0]) / fm.std[0]
        y = torch.from_numpy(labels.astype(np.int64))[idx]
        source = f"Fashion-MNIST train ({folder})"
    else:
        x = torch.randn(n, 1, 28, 28, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        source = f"random normal images, random labels (no Fashion-MNIST in {folder})"
    x, y = x.to(device), y.to(device)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)], source


# ---------------------------------------------------------------------------------- equivalence


def check_lif(time_steps: list[int], device: torch.device) -> dict:
    """Max differences between one LIF layer of ours (loop and fused) and one SpikingJelly LIFNode."""
    out: dict[str, dict[str, float]] = {}
    for T in time_steps:
        g = torch.Generator().manual_seed(T)
        x0 = (1.5 * torch.randn(T, 4096, generator=g)).to(device)
        grad = torch.randn(x0.shape, generator=g).to(device)
        spikes, grads = {}, {}
        for name, lif in (
            ("loop", LIF(decay=0.5, v_threshold=1.0, reset="hard", surrogate=ATan(2.0), backend="loop")),
            ("fused", LIF(decay=0.5, v_threshold=1.0, reset="hard", surrogate=ATan(2.0), backend="auto")),
            ("sj", sj_lif()),
        ):
            x = x0.clone().requires_grad_()
            spikes[name] = lif.to(device)(x)
            (spikes[name] * grad).sum().backward()
            grads[name] = x.grad
        out[f"T={T}"] = {"lif_firing_rate": spikes["loop"].mean().item()}
        for name in ("fused", "sj"):
            out[f"T={T}"][f"lif_spike_max_abs_diff_{name}"] = (
                (spikes[name] - spikes["loop"]).abs().max().item()
            )
            out[f"T={T}"][f"lif_grad_max_abs_diff_{name}"] = (grads[name] - grads["loop"]).abs().max().item()
    return out


def check_network(impls: list[Impl], device: torch.device, seed: int) -> dict[str, float]:
    """Logits and conv1 weight gradients of every implementation against ``ours-loop``, fresh weights."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(8, 1, 28, 28, generator=g).to(device)
    labels = torch.arange(8).to(device)
    logits, grads = {}, {}
    for impl in impls:  # one forward + backward each; conv1's weight gradient sees the whole network
        logits[impl.name] = impl.forward(images)
        F.cross_entropy(logits[impl.name], labels).backward()
        grads[impl.name] = next(impl.model.parameters()).grad.clone()
        impl.model.zero_grad(set_to_none=True)
        impl.after_step()
    ref_logits, ref_grad = logits[REFERENCE], grads[REFERENCE]
    out = {"net_logits_max_abs": ref_logits.abs().max().item()}
    for name in logits:
        if name != REFERENCE:
            out[f"net_logits_max_abs_diff_{name}"] = (logits[name] - ref_logits).abs().max().item()
            rel = (grads[name] - ref_grad).abs().max() / ref_grad.abs().max()
            out[f"net_conv1_grad_max_rel_diff_{name}"] = rel.item()
    return out


# --------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps_of(impl: Impl, batches, start: int, steps: int, device: torch.device, clock: str) -> float:
    """Seconds per training step, averaged over ``steps`` consecutive steps."""
    nb = len(batches)
    _sync(device)
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for i in range(steps):
            train_step(impl, *batches[(start + i) % nb], device)
        end.record()
        torch.cuda.synchronize(device)
        return begin.elapsed_time(end) / 1000 / steps
    # "cpu" = CPU seconds of this process (all threads): with --threads 1 it hardly moves when other
    # jobs share the cores, where wall time can triple.
    now = time.process_time if clock == "cpu" else time.perf_counter
    t0 = now()
    for i in range(steps):
        train_step(impl, *batches[(start + i) % nb], device)
    return (now() - t0) / steps


def profile_steps(impls: list[Impl], T: int, batches, steps: int, device: torch.device) -> None:
    """Print each implementation's top ops by self time over ``steps`` training steps."""
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort_by = "self_device_time_total"
    for impl in impls:

        def report(prof, name: str = impl.name) -> None:
            print(f"--- profile: {name}, T={T}, {steps} steps, top ops by self time")
            print(prof.key_averages().table(sort_by=sort_by, row_limit=15, max_name_column_width=48))

        # one profiled-but-discarded step first: the profiler's own start-up cost lands there
        sched = schedule(wait=0, warmup=1, active=steps, repeat=1)
        with profile(activities=activities, schedule=sched, on_trace_ready=report) as prof:
            for i in range(steps + 1):
                train_step(impl, *batches[i % len(batches)], device)
                _sync(device)
                prof.step()


def bench_one_T(T: int, args, batches, device: torch.device) -> tuple[dict, list[Impl]]:
    impls = make_impls(T, args.width, device, args.impls, args.channels_last)
    equivalence = check_network(impls, device, seed=T)
    print(f"equivalence T={T}: " + ", ".join(f"{k}={v:.3g}" for k, v in equivalence.items()))
    for impl in impls:  # warm-up (and, for ours-compiled, compilation)
        for i in range(args.warmup):
            train_step(impl, *batches[i % len(batches)], device)
    times: dict[str, list[float]] = {i.name: [] for i in impls}
    for rep in range(args.reps):
        order = impls if rep % 2 == 0 else impls[::-1]  # ABC CBA ABC ...: drift cancels in pairs
        start = args.warmup + rep * args.steps
        for impl in order:
            times[impl.name].append(time_steps_of(impl, batches, start, args.steps, device, args.clock))
    row: dict = {"T": T, "per_round_s": times, "impls": {}, "equivalence": equivalence}
    for name, ts in times.items():
        med = statistics.median(ts)
        row["impls"][name] = {
            "median_s": med,
            "min_s": min(ts),
            "max_s": max(ts),
            "epoch_s": med * EPOCH_IMAGES / args.batch_size,
        }
    for ref in times:
        if ref != "sj" and "sj" in times:
            ratios = [s / o for s, o in zip(times["sj"], times[ref], strict=True)]
            row[f"sj_over_{ref}"] = {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            }
    return row, impls


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _env(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {
        "torch": torch.__version__,
        "spikingjelly": _version("spikingjelly"),
        "python": platform.python_version(),
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "loadavg_1_5_15_min": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["autocast"] = "bf16"
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--batch-size", type=int, help="default 32 on CPU, 128 on CUDA")
    p.add_argument("--steps", type=int, help="timed steps per round (default 3 CPU, 50 CUDA)")
    p.add_argument("--reps", type=int, help="rounds (default 5)")
    p.add_argument("--warmup", type=int, help="untimed steps per implementation (default 2 CPU, 10 CUDA)")
    p.add_argument("--time-steps", type=int, nargs="+", default=[1, 4], help="values of T")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier of the fmnist network")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="data root holding fashion-mnist/ (default $ALBSNN_DATA, then ~/.cache/albsnn); else noise",
    )
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="CPU device only: wall time, or process CPU time (robust to a shared machine with --threads 1)",
    )
    p.add_argument(
        "--impls",
        nargs="+",
        choices=IMPLS,
        default=list(DEFAULT_IMPLS),
        help="implementations to time (ours-loop, the reference, is always built); "
        f"default {' '.join(DEFAULT_IMPLS)}",
    )
    p.add_argument("--channels-last", action="store_true", help="NHWC weights and activations, every impl")
    p.add_argument("--profile", type=int, default=0, help="after timing, profile this many steps per impl")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but this torch build sees no CUDA device")
    if device.type == "cuda" and args.clock != "wall":
        p.error("--clock cpu is for --device cpu; CUDA steps are timed with CUDA events")
    for k, v in DEFAULTS[device.type].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    env = _env(device)
    n_batches = args.warmup + args.reps * args.steps
    batches, source = load_batches(n_batches, args.batch_size, device, args.data_dir)
    print(f"env: {env}")
    print(
        f"fmnist width {args.width}, batch {args.batch_size}, {args.warmup} warm-up + {args.reps} rounds x "
        f"{args.steps} steps per implementation, {args.clock} clock, data: {source}"
    )

    equivalence = check_lif(args.time_steps, device)
    for key, d in equivalence.items():
        print(f"LIF layer {key}: " + ", ".join(f"{k}={v:.3g}" for k, v in d.items()))

    rows = []
    header = f"{'T':>2} {'impl':<13} {'median ms/step':>15} {'min-max ms':>17} {'epoch (60k) s':>14}"
    print(header)
    for T in args.time_steps:
        row, impls = bench_one_T(T, args, batches, device)
        rows.append(row)
        for name, r in row["impls"].items():
            spread = f"{1e3 * r['min_s']:.1f}-{1e3 * r['max_s']:.1f}"
            print(f"{T:>2} {name:<13} {1e3 * r['median_s']:>15.1f} {spread:>17} {r['epoch_s']:>14.1f}")
        for key, q in row.items():
            if key.startswith("sj_over_"):
                ref = key.removeprefix("sj_over_")
                print(
                    f"{T:>2} sj / {ref}: {q['median']:.2f}x (per-round range {q['min']:.2f}-{q['max']:.2f})"
                )
        if args.profile:
            profile_steps(impls, T, batches, args.profile, device)

    env_after = _env(device)["loadavg_1_5_15_min"]
    print(f"load average (1, 5, 15 min) before: {env['loadavg_1_5_15_min']}, after: {env_after}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "env": {**env, "loadavg_after": env_after},
            "data": source,
            "equivalence": equivalence,
            "rows": rows,
        }
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
