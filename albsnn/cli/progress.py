"""Progress inside each training epoch: a tqdm bar on a terminal, plain periodic lines elsewhere.

``albsnn train`` adds a :class:`StepProgress` to its callbacks. On a terminal it draws a tqdm bar
(samples, samples/s, running loss, ETA of the epoch) that the epoch's summary line replaces; when
the stream is not a terminal (a log file, a pipe, ``--json``) it prints one plain line every
``every_s`` seconds instead, so logs stay line-based.

The running loss lives on the device (the trainer never syncs per step); it is read only when the
bar or a line is about to be shown, at most every ``mininterval`` / ``every_s`` seconds.
"""

from __future__ import annotations

import time
from typing import IO

from tqdm import tqdm

from albsnn.train import Callback

__all__ = ["StepProgress"]


class StepProgress(Callback):
    """Per-step progress of :func:`albsnn.train.fit` on ``stream``.

    Args:
        stream: where to write (the command's progress stream).
        bar: a tqdm bar (True) or plain lines (False); default: whether ``stream`` is a terminal.
        every_s: seconds between plain lines.
        mininterval: seconds between bar refreshes (and running-loss reads).
    """

    def __init__(
        self, stream: IO[str], bar: bool | None = None, every_s: float = 10.0, mininterval: float = 0.5
    ) -> None:
        self.stream = stream
        self.bar = stream.isatty() if bar is None else bar
        self.every_s = every_s
        self.mininterval = mininterval
        self._tqdm: tqdm | None = None
        self._t0 = self._shown = time.monotonic()

    def on_fit_start(self, trainer) -> None:
        self._t0 = self._shown = time.monotonic()

    def on_step_end(self, trainer, step_in_epoch: int, steps_in_epoch: int, samples: int) -> None:
        now = time.monotonic()
        if self.bar:
            self._update_bar(trainer, step_in_epoch, steps_in_epoch, samples, now)
        elif now - self._shown >= self.every_s and step_in_epoch < steps_in_epoch:
            self._shown = now
            self._print_line(trainer, step_in_epoch, steps_in_epoch, samples, now)

    def on_epoch_end(self, trainer, metrics: dict) -> None:
        self._close()
        self._t0 = self._shown = time.monotonic()  # the next epoch's training starts now

    def on_fit_end(self, trainer, result: dict) -> None:
        self._close()

    # ---- drawing ---------------------------------------------------------------------------------
    def _update_bar(self, trainer, step: int, steps: int, samples: int, now: float) -> None:
        if self._tqdm is None:
            self._tqdm = tqdm(
                total=len(trainer.splits.train_y),
                desc=f"epoch {trainer.epoch}/{trainer.config.epochs}",
                unit="sample",
                file=self.stream,
                mininterval=self.mininterval,
                leave=False,
                dynamic_ncols=True,
            )
        if now - self._shown >= self.mininterval or step == steps:
            self._shown = now
            self._tqdm.set_postfix_str(f"loss {_running_loss(trainer, samples):.4f}", refresh=False)
        self._tqdm.update(samples - self._tqdm.n)

    def _print_line(self, trainer, step: int, steps: int, samples: int, now: float) -> None:
        elapsed = max(now - self._t0, 1e-9)
        rate = samples / elapsed
        eta = elapsed * (steps - step) / step
        print(
            f"  epoch {trainer.epoch}/{trainer.config.epochs}  step {step}/{steps}  "
            f"{rate:,.0f} samples/s  loss {_running_loss(trainer, samples):.4f}  "
            f"ETA {tqdm.format_interval(eta)}",
            file=self.stream,
            flush=True,
        )

    def _close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None


def _running_loss(trainer, samples: int) -> float:
    """Mean training loss of the epoch so far (one host sync)."""
    return float(trainer.epoch_loss_sum) / max(samples, 1)
