"""Progress inside a training epoch: plain lines off a terminal, a bar on one, the loss read when shown."""

from __future__ import annotations

import io
import json
import re

import pytest

import albsnn.cli.progress as progress
from albsnn.cli import main
from albsnn.cli.progress import StepProgress
from albsnn.train import TrainConfig, fit

LINE = re.compile(r"^  epoch 1/1  step (\d+)/(\d+)  [\d,]+ samples/s  loss \d+\.\d{4}  ETA \d\d:\d\d$")


def _config(tmp_path, **kw) -> TrainConfig:
    # 300 digits samples, 10% held out, batch 16: 17 steps in the epoch.
    base = dict(
        dataset="digits",
        limit_train=300,
        limit_test=100,
        epochs=1,
        time_steps=1,
        width=0.25,
        batch_size=16,
        bwo="off",
        binarize="none",
        calibration_size=10,
    )
    return TrainConfig(**{**base, "out": str(tmp_path / "run"), **kw})


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only wait for each other on a busy CPU
    yield
    torch.set_num_threads(threads)


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_off_a_terminal_progress_is_plain_lines(tmp_path):
    stream = _Stream(tty=False)
    fit(_config(tmp_path), [StepProgress(stream, every_s=0)])
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text  # no bar redraws, no escape codes
    lines = text.splitlines()
    assert lines, "no progress line"
    for line in lines:
        match = LINE.match(line)
        assert match, line
        assert int(match.group(1)) < int(match.group(2))  # the epoch's own line reports the end


def test_on_a_terminal_progress_is_a_bar_that_the_epoch_line_replaces(tmp_path):
    stream = _Stream(tty=True)
    fit(_config(tmp_path), [StepProgress(stream, mininterval=0)])
    text = stream.getvalue()
    assert "epoch 1/1" in text and "sample/s" in text and "loss " in text
    assert "\r" in text  # redrawn in place
    assert text.rstrip(" ").endswith("\r") or text.endswith("\x1b[A")  # leave=False: cleared at the end


@pytest.mark.parametrize("bar", [True, False])
def test_the_device_loss_is_read_only_when_progress_is_shown(tmp_path, monkeypatch, bar):
    reads = []
    real = progress._running_loss
    monkeypatch.setattr(progress, "_running_loss", lambda t, n: reads.append(n) or real(t, n))
    stream = _Stream(tty=bar)
    fit(_config(tmp_path), [StepProgress(stream, every_s=3600, mininterval=3600)])
    # bar: once, its final refresh of the epoch; lines: none within an hour. Never once per step.
    assert len(reads) == (1 if bar else 0)


def test_json_keeps_the_result_as_the_last_stdout_line_and_progress_on_stderr(tmp_path, capsys):
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--limit-train",
            "300",
            "--limit-test",
            "100",
            "--width",
            "0.25",
            "--epochs",
            "1",
            "--time-steps",
            "1",
            "--batch-size",
            "16",
            "--bwo",
            "off",
            "--binarize",
            "none",
            "--progress-every",
            "0",
            "--out",
            str(tmp_path / "j"),
            "--json",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert len(out) == 1 and json.loads(out[-1])["epochs"] == 1
    step_lines = [line for line in captured.err.splitlines() if LINE.match(line)]
    assert step_lines, captured.err
