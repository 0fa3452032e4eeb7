"""The training hot path: no host syncs in a step, seeded augmentation, determinism, torch.compile."""

import dataclasses

import pytest
import torch

from albsnn.cli import main
from albsnn.data import load_dataset
from albsnn.data.transforms import ImageTransform
from albsnn.errors import ConfigError
from albsnn.train import TrainConfig, Trainer, fit

HOST_READS = ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit_train=200)


@pytest.fixture(scope="module")
def augmenting(digits):
    transform = ImageTransform(mean=(8.0,), std=(4.0,), scale=1.0, augment=True, pad=1)
    return dataclasses.replace(digits, transform=transform)


def _config(**kw):
    base = dict(
        dataset="digits", limit_train=200, epochs=3, time_steps=2, width=0.25, batch_size=50, binarize="none"
    )
    return TrainConfig(**{**base, **kw})


def _ready_trainer(splits, **kw) -> tuple[Trainer, torch.Tensor, torch.Tensor, dict]:
    """A trainer in the worst case for syncs: binary layers, a learned alpha, the taylor estimator."""
    trainer = Trainer(_config(**{"binarize": "all", "estimator": "taylor", **kw}), splits=splits)
    layers = trainer.policy.candidates(trainer.model)
    next(iter(layers.values())).learn_alpha()
    xb, yb = next(iter(trainer.train_loader))
    total = trainer.config.epochs * len(trainer.train_loader)
    trainer.train_step(xb, yb, total, layers)  # warm-up: lazy optimizer state, first-call paths
    return trainer, xb, yb, layers


def test_a_training_step_reads_no_device_value_on_the_host(digits):
    trainer, xb, yb, layers = _ready_trainer(digits)
    total = trainer.config.epochs * len(trainer.train_loader)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        trainer.train_step(xb, yb, total, layers)
    names = [e.name for e in prof.events()]
    assert "aten::convolution_backward" in names  # the profiler saw the step
    assert _host_reads(prof) == []


def _in_optimizer(event) -> bool:
    while event is not None:
        if event.name.startswith("Optimizer.step#"):
            return True
        event = event.cpu_parent
    return False


def _host_reads(prof) -> list[str]:
    """Value reads outside optimizer.step. The optimizer reads its step counter, which on CPU lives on
    the host (no device involved) and on CUDA lives on the device inside the fused kernel (the CUDA
    test below checks that the whole step, optimizer included, never synchronizes)."""
    return [e.name for e in prof.events() if e.name in HOST_READS and not _in_optimizer(e)]


def test_the_step_would_sync_if_a_layer_read_its_buffer(digits):
    # The counter above is able to fail: the old current_alpha read bool(alpha_learned) every forward.
    trainer, xb, yb, layers = _ready_trainer(digits)
    total = trainer.config.epochs * len(trainer.train_loader)
    layer = next(iter(layers.values()))
    original = type(layer).current_alpha
    type(layer).current_alpha = lambda self: self.alpha if bool(self.alpha_learned) else original(self)
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            trainer.train_step(xb, yb, total, layers)
    finally:
        type(layer).current_alpha = original
    assert _host_reads(prof) != []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_never_synchronizes_the_gpu(digits):
    trainer, xb, yb, layers = _ready_trainer(digits, device="cuda")
    total = trainer.config.epochs * len(trainer.train_loader)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_step(xb, yb, total, layers)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_augmentation_ignores_the_global_rng(augmenting):
    # A resumed run (or one whose other code drew random numbers) must crop and flip alike.
    weights = []
    for draw in (0, 1000):
        trainer = Trainer(_config(epochs=1), splits=augmenting)
        torch.rand(draw)
        trainer.epoch = 1
        trainer.train_epoch()
        weights.append(trainer.model.conv2.weight.detach().clone())
    assert torch.equal(*weights)


def test_augmentation_differs_from_step_to_step(augmenting):
    trainer = Trainer(_config(epochs=1), splits=augmenting)
    xb, _ = next(iter(trainer.train_loader))
    first = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    again = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    trainer.step += 1
    later = trainer._inputs(xb, train=True, generator=trainer._augment_generator())
    assert torch.equal(first, again)
    assert not torch.equal(first, later)


def test_resume_with_augmentation_ends_with_the_uninterrupted_weights(tmp_path, augmenting):
    class Stop:
        def on_fit_start(self, trainer):
            pass

        def on_epoch_end(self, trainer, metrics):
            return metrics["epoch"] >= 1

        def on_fit_end(self, trainer, result):
            pass

    full = _config(epochs=2, out=str(tmp_path / "full"))
    split = _config(epochs=2, out=str(tmp_path / "split"))
    fit(full, splits=augmenting)
    fit(split, [Stop()], splits=augmenting)
    torch.rand(1000)  # whatever ran in between
    fit(split, splits=augmenting, resume_from=tmp_path / "split" / "checkpoint.pt")
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["model"]
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_deterministic_sets_the_flags_and_a_later_run_clears_them(digits):
    try:
        Trainer(_config(deterministic=True), splits=digits)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        Trainer(_config(), splits=digits)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_a_deterministic_run_trains_like_a_plain_one_on_cpu(digits):
    losses = []
    try:
        for deterministic in (True, False):
            trainer = Trainer(_config(deterministic=deterministic), splits=digits)
            losses.append(trainer.train_epoch()[0])
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    assert losses[0] == losses[1]


def test_an_op_without_a_deterministic_kernel_names_itself(digits):
    class Scatter:  # a user callback that runs an op torch has no deterministic kernel for
        def on_fit_start(self, trainer):
            torch.zeros(3).put_(torch.tensor([0]), torch.tensor([1.0]))

    try:
        with pytest.raises(ConfigError, match=r"deterministic: .*put_ does not have a .*run without"):
            fit(_config(deterministic=True), [Scatter()], splits=digits)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False


def test_default_batch_size_depends_on_the_device(digits):
    assert Trainer(_config(batch_size=None), splits=digits).batch_size == 64


def test_channels_last_trains_the_same_network(digits):
    plain = Trainer(_config(), splits=digits)
    nhwc = Trainer(_config(channels_last=True), splits=digits)
    assert nhwc.model.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    xb, yb = next(iter(plain.train_loader))
    total = 10
    loss_a, _ = plain.train_step(xb, yb, total, {})
    loss_b, _ = nhwc.train_step(xb, yb, total, {})
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)


def test_compile_unavailable_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, digits):
    from torch import _dynamo

    monkeypatch.setattr(_dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(ConfigError, match="compile: torch.compile does not support this Python"):
        Trainer(_config(compile=True), splits=digits)
    code = main(["train", "--compile", "--epochs", "2", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error: compile: torch.compile does not support" in err.splitlines()[0]
    assert "run without --compile" in err.splitlines()[0] and "Traceback" not in err


@pytest.mark.slow
def test_compiled_training_step_computes_the_eager_loss(digits):
    eager = Trainer(_config(lif_backend="fused"), splits=digits)
    compiled = Trainer(_config(lif_backend="fused", compile=True), splits=digits)
    xb, yb = next(iter(eager.train_loader))
    for _ in range(2):  # the second step runs the compiled graph with updated weights
        loss_a, _ = eager.train_step(xb, yb, 10, {})
        loss_b, _ = compiled.train_step(xb, yb, 10, {})
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-5)
