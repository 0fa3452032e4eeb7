"""Rule of evidence, end to end: select on validation, report on test.

Two runs of one sweep trial, identical but for the test labels (every one of them wrong in the
second), must give a sweep the same numbers to select on: objectives, the pruning metric, the
estimator check. Only the test metrics may move. About 10 s on 2 cores (two 2-epoch digits runs).
"""

from __future__ import annotations

import dataclasses

from albsnn.metrics import TEST_PREFIX
from albsnn.sweep import load_pipeline
from albsnn.sweep.trainable import flat_metrics

# Differ between two identical runs for reasons other than the data.
_TIMING = ("epoch_seconds",)


class _Recorder:
    """albsnn Callback that keeps each epoch's flattened metrics (what a trial reports)."""

    def __init__(self):
        self.epochs: list[dict] = []

    def on_fit_start(self, trainer) -> None:
        pass

    def on_fit_end(self, trainer, result: dict) -> None:
        pass

    def on_epoch_end(self, trainer, metrics: dict) -> bool:
        self.epochs.append(flat_metrics(metrics))
        return False


def _run(config, splits) -> list[dict]:
    from albsnn.train import fit

    recorder = _Recorder()
    fit(config, [recorder], splits=splits)
    return recorder.epochs


def _selected(epoch: dict) -> dict:
    return {k: v for k, v in epoch.items() if not k.startswith(TEST_PREFIX) and k not in _TIMING}


def test_wrong_test_labels_change_test_metrics_only(write_pipeline, tmp_path):
    from albsnn.train import TrainConfig, Trainer

    pipeline = load_pipeline(write_pipeline(tmp_path, "evidence", epochs=2))
    trial = {"width": 0.25, "time_steps": 1, "lr": 1e-2, "batch_size": 32}  # learns in 2 epochs
    config = TrainConfig.from_dict({**pipeline.base_config(), **trial})
    assert config.estimator_check  # sweeps measure the estimator (pipeline default)
    splits = Trainer(config).splits  # exactly the data a trial trains, validates and tests on
    classes = splits.info.num_classes
    wrong = dataclasses.replace(splits, test_y=(splits.test_y + 1) % classes)

    honest, lied_to = _run(config, splits), _run(config, wrong)

    assert [_selected(e) for e in honest] == [_selected(e) for e in lied_to]
    for metric in (*pipeline.metrics, pipeline.prune_on[0]):
        assert not metric.startswith(TEST_PREFIX)
        assert [e[metric] for e in honest] == [e[metric] for e in lied_to]
    assert any(k.startswith("check_measured.") for k in honest[-1])
    assert honest[-1]["test_loss"] != lied_to[-1]["test_loss"]  # the lie was seen, and reported
