"""What one pruning judgement costs the sweep driver as the pruning study fills up.

The sweep's scheduler (:class:`~albsnn.sweep.scheduler.OptunaPrunerScheduler`) asks its Optuna
pruner after every reported epoch. Optuna's median pruner reads every completed trial of the study
at each judgement, and ``pareto`` / ``moasha`` compare against the trials at the same step, so a
judgement's cost grows with the sweep: a per-result cost that is not flat in the number of trials.

For each pruner and size N, the script fills a pruning study in the driver's own journal storage
(:func:`albsnn.sweep.journal.open_journal`, ``shared=True``) with N completed trials of 10 epochs
(the objectives ``val_accuracy`` and ``storage_bytes`` reported at every epoch, as a sweep does),
then times ``should_prune`` of a running trial at epoch ``--at`` (default 8: a judging epoch of all
three pruners with these options: past the median pruner's warm-up and a ``moasha`` rung), on this
thread's CPU (``thread_time``).

    PYTHONPATH=. .venv/bin/python benchmarks/pruner_cost.py --sizes 100 500 1000 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

from albsnn.sweep.journal import open_journal  # noqa: E402
from albsnn.sweep.pareto_pruner import report_objectives  # noqa: E402
from albsnn.sweep.pruners import make_pruner  # noqa: E402

OBJECTIVES = {"val_accuracy": "max", "storage_bytes": "min"}
EPOCHS = 10
SPECS = {
    "median": {"kind": "median", "n_startup_trials": 5, "n_warmup_steps": 8},
    "pareto": {"kind": "pareto"},
    "moasha": {"kind": "moasha"},
}


def _run_epochs(trial, rng: random.Random, epochs: int) -> float:
    """Report ``epochs`` epochs of a made-up curve; the last accuracy."""
    ceiling, size = rng.uniform(0.5, 0.95), rng.randint(1_000, 50_000)
    for epoch in range(1, epochs + 1):
        accuracy = ceiling * (1 - 0.5**epoch)
        report_objectives(trial, {"storage_bytes": size}, epoch)
        trial.report(accuracy, epoch)
    return accuracy


def judgement_ms(kind: str, sizes: list[int], repeats: int, at: int = 8) -> dict[int, float]:
    """CPU milliseconds of one ``should_prune`` at epoch ``at``, per number of completed trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng, out, done = random.Random(0), {}, 0
    with tempfile.TemporaryDirectory() as tmp:
        study = optuna.create_study(
            storage=open_journal(Path(tmp) / "journal.log", shared=True),
            study_name=f"cost-{kind}",
            pruner=make_pruner(SPECS[kind], EPOCHS, objectives=OBJECTIVES),
            direction="maximize",
        )
        for size in sizes:
            for _ in range(size - done):
                trial = study.ask()
                study.tell(trial, _run_epochs(trial, rng, EPOCHS))
            done = size
            running = study.ask()
            _run_epochs(running, rng, at)
            start = time.thread_time()
            for _ in range(repeats):
                running.should_prune()
            out[size] = round(1000 * (time.thread_time() - start) / repeats, 3)
            study.tell(running, state=optuna.trial.TrialState.FAIL)  # not a completed trial
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--pruners", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--at", type=int, default=8, help="the epoch the running trial is judged at")
    args = parser.parse_args()
    for kind in args.pruners:
        cost = judgement_ms(kind, args.sizes, args.repeats, args.at)
        print(json.dumps({"pruner": kind, "at_epoch": args.at, "ms_per_judgement": cost}))


if __name__ == "__main__":
    main()
