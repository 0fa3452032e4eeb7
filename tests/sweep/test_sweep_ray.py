"""Real sweeps through Ray Tune on tiny digits trials: records, pruning, retries, resume, two nodes.

Each test runs a handful of 3-epoch trials of a width-0.25/0.5 network on 300 digits (about a
second of training each on 2 cores); the session shares one Ray cluster and one MLflow database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from ray.tune import ExperimentAnalysis

from albsnn.pareto import hypervolume_2d
from albsnn.sweep import run_sweep
from albsnn.sweep.scheduler import open_journal
from albsnn.sweep.trainable import ROTATED_FILE
from albsnn.train import TrainConfig

pytestmark = pytest.mark.slow  # real sweeps through Ray Tune

TRIAL_ARTIFACTS = {"config.json", "metrics.json", "estimator_history.json", "binarized_layers.json", "model"}
CHECK_ARTIFACT = "estimator_check.json"  # finished trials only: the check runs after the last epoch


def _children(uri: str, result) -> list:
    client = MlflowClient(uri)
    return client.search_runs([result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")


def _steps(uri: str, run) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "val_accuracy"))


def _study(result, name: str):
    return optuna.load_study(study_name=name, storage=open_journal(result.sweep_dir / "optuna.journal"))


def test_small_sweep_records_parent_children_and_optuna_states(
    ray_cluster, tracking_uri, write_pipeline, tmp_path
):
    # Rule: 1 parent + 1 child per trial; pruned trials are PRUNED in Optuna and KILLED in MLflow;
    # the study holds the same trials as Ray and MLflow, in the same states.
    path = write_pipeline(
        tmp_path, "small", num_samples=6, pruner={"kind": "deterministic", "every": 2, "at_step": 2}
    )
    result = run_sweep(path, tracking_uri=tracking_uri, progress=False, command="pytest small")
    assert result.counts == {"FINISHED": 3, "PRUNED": 3, "FAILED": 0}
    assert result.ray_trials == 6 and not result.interrupted

    client = MlflowClient(tracking_uri)
    parent = client.get_run(result.parent_run_id)
    tags = parent.data.tags
    assert tags["albsnn.role"] == "sweep" and tags["albsnn.mode"] == "search"
    assert json.loads(tags["albsnn.objectives"]) == {"val_accuracy": "max", "storage_bytes": "min"}
    assert tags["albsnn.prune_metric"] == "val_accuracy"
    assert json.loads(tags["albsnn.base_config"])["estimator_check"] is True
    assert json.loads(tags["albsnn.search_space_types"]) == {
        "width": "float",
        "time_steps": "int",
        "lr": "float",
        "seed": "int",
    }
    assert tags["albsnn.optuna_storage"] == str(result.sweep_dir / "optuna.journal")
    assert tags["albsnn.command"] == "pytest small" and tags["albsnn.git_dirty"] in ("true", "false")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {
        "pipeline.yaml",
        "search_space.yaml",
    }

    # Readable in the MLflow UI: training-runs view, summary metrics on the parent, source columns
    experiment = client.get_experiment(result.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert parent.data.metrics["trials_finished"] == 3 and parent.data.metrics["trials_pruned"] == 3
    # The hypervolume of the finished children's (val_accuracy, storage) in the (0, fp32 size) box.
    # (It is 0 when no finished trial binarized a layer: a training outcome on 300 digits, not a bug.)
    children = _children(tracking_uri, result)
    finished = [c.data.metrics for c in children if c.data.tags["albsnn.trial_state"] == "FINISHED"]
    fp32 = max(m["fp32_bytes"] for m in finished)
    area = hypervolume_2d(
        [m["val_accuracy"] for m in finished], [m["storage_bytes"] for m in finished], (0.0, fp32)
    )
    assert parent.data.metrics["sweep_val_hypervolume"] == pytest.approx(area / fp32)
    assert 0 <= parent.data.metrics["sweep_val_hypervolume"] < 1
    assert parent.data.metrics["sweep_best_val_accuracy"] == max(
        c.data.metrics["best_val_accuracy"] for c in _children(tracking_uri, result)
    )
    assert parent.info.status == "FINISHED"

    children = _children(tracking_uri, result)
    assert len(children) == 6 and len({c.data.tags["albsnn.trial_id"] for c in children}) == 6
    by_state = {"FINISHED": [], "PRUNED": []}
    config_fields = set(TrainConfig.from_dict({}).to_dict()) - {"out"}
    for run in children:
        by_state[run.data.tags["albsnn.trial_state"]].append(run)
        params = run.data.params
        assert set(params) == config_fields  # searched and fixed values alike
        assert params["epochs"] == "3" and params["dataset"] == "digits" and params["limit_train"] == "300"
        w, t, lr = float(params["width"]), params["time_steps"], float(params["lr"])
        assert run.info.run_name == f"w={w:.2g} T={t} lr={lr:.2g} s0"
        assert {"mlflow.user", "mlflow.source.name", "mlflow.source.git.commit"} <= set(run.data.tags)
        assert run.data.tags["mlflow.source.name"] == "pytest small"
        (dataset,) = run.inputs.dataset_inputs
        assert dataset.dataset.name == "digits" and len(dataset.dataset.digest) == 16
        assert json.loads(dataset.dataset.profile) == {"train": 300, "val": 144, "test": 200}
        assert "learning_rate" in run.data.metrics and "lr" not in run.data.metrics
        assert {"val_accuracy", "test_accuracy", "storage_bytes", "storage_reduction"} <= set(
            run.data.metrics
        )
        finished = run.data.tags["albsnn.trial_state"] == "FINISHED"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert artifacts == TRIAL_ARTIFACTS | ({CHECK_ARTIFACT} if finished else set())
        checked = [k for k in run.data.metrics if k.startswith("check_measured.")]
        assert bool(checked) == finished
    assert all(
        r.info.status == "FINISHED" and _steps(tracking_uri, r) == [1, 2, 3] for r in by_state["FINISHED"]
    )
    assert all(r.info.status == "KILLED" and _steps(tracking_uri, r) == [1, 2] for r in by_state["PRUNED"])

    study = _study(result, result.optuna_study)
    optuna_states = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    assert len(study.trials) == 6
    for run in children:
        trial = optuna_states[run.data.tags["albsnn.trial_id"]]
        assert str(trial.number) == run.data.tags["albsnn.optuna_trial_number"]
        if run.data.tags["albsnn.trial_state"] == "PRUNED":
            assert trial.state == TrialState.PRUNED
        else:
            assert trial.state == TrialState.COMPLETE
            assert trial.values == [run.data.metrics["val_accuracy"], run.data.metrics["storage_bytes"]]
    pruning = _study(result, f"{result.sweep_id}.pruning")
    assert sorted(t.state.name for t in pruning.trials) == ["COMPLETE"] * 3 + ["PRUNED"] * 3
    # optuna-dashboard reads these: named objectives, and which study is the search
    assert study.metric_names == ["val_accuracy", "storage_bytes"]
    assert pruning.metric_names == ["val_accuracy"]
    assert (study.user_attrs["albsnn.role"], pruning.user_attrs["albsnn.role"]) == ("search", "pruning")


def test_trial_failing_once_is_retried_from_its_checkpoint_with_one_run(
    ray_cluster, tracking_uri, write_pipeline, tmp_path
):
    # Rule: FailureConfig retries a crashed trial from its last checkpoint (epoch 1 here, so the
    # retry trains epochs 2-3 only), and the retry logs into the trial's one MLflow run.
    # Ablation mode: head grid x 1 seed = 2 trials, each failing once at epoch 2.
    path = write_pipeline(
        tmp_path,
        "retry",
        space="model:\n  head: {grid: [gap, fc]}\n",
        mode="ablation",
        sampler=None,
        num_samples=None,
    )
    result = run_sweep(path, tracking_uri=tracking_uri, progress=False, fail_once_at_epoch=2)
    assert result.counts == {"FINISHED": 2, "PRUNED": 0, "FAILED": 0}
    children = _children(tracking_uri, result)
    assert len(children) == 2
    assert {c.data.params["head"] for c in children} == {"gap", "fc"}
    for run in children:
        assert _steps(tracking_uri, run) == [1, 2, 3]
        assert run.data.tags["albsnn.retries"] == "1"
    for trial in ExperimentAnalysis(str(result.sweep_dir)).trials:
        assert trial.status == "TERMINATED" and trial.run_metadata.num_failures == 1
        assert trial.last_result["training_iteration"] == 3
        assert trial.last_result["iterations_since_restore"] == 2  # restored from epoch 1


def test_trial_retried_under_an_active_pruner_can_still_be_pruned_and_ends_in_one_state(
    ray_cluster, tracking_uri, write_pipeline, tmp_path
):
    # Rule: Ray calls the scheduler's on_trial_error on every retry; the pruning study must keep the
    # trial RUNNING then (not FAIL), so the retried trial is still judged and can be PRUNED, and
    # Ray, both Optuna studies and MLflow agree on one state per trial.
    # Both trials fail once at epoch 2 (after reporting epoch 1); the pruner prunes the pruning
    # study's trial number 1 from epoch 2 on, which only a retried trial can reach.
    path = write_pipeline(
        tmp_path, "retry-prune", num_samples=2, pruner={"kind": "deterministic", "every": 2, "at_step": 2}
    )
    result = run_sweep(path, tracking_uri=tracking_uri, progress=False, fail_once_at_epoch=2)
    assert result.counts == {"FINISHED": 1, "PRUNED": 1, "FAILED": 0}

    ray_trials = {t.trial_id: t for t in ExperimentAnalysis(str(result.sweep_dir)).trials}
    assert all(t.status == "TERMINATED" and t.run_metadata.num_failures == 1 for t in ray_trials.values())
    runs = {r.data.tags["albsnn.trial_id"]: r for r in _children(tracking_uri, result)}
    assert set(runs) == set(ray_trials)
    search = {t.user_attrs["ray_trial_id"]: t for t in _study(result, result.optuna_study).trials}
    pruning = {t.user_attrs["ray_trial_id"]: t for t in _study(result, f"{result.sweep_id}.pruning").trials}
    for trial_id, run in runs.items():
        assert run.data.tags["albsnn.retries"] == "1"
        if run.data.tags["albsnn.trial_state"] == "PRUNED":
            assert run.info.status == "KILLED" and _steps(tracking_uri, run) == [1, 2]
            assert ray_trials[trial_id].last_result["epoch"] == 2
            assert search[trial_id].state == pruning[trial_id].state == TrialState.PRUNED
            assert sorted(pruning[trial_id].intermediate_values) == [1, 2]
        else:
            assert run.info.status == "FINISHED" and _steps(tracking_uri, run) == [1, 2, 3]
            assert search[trial_id].state == pruning[trial_id].state == TrialState.COMPLETE


def test_conditional_parameter_reaches_only_the_trials_whose_parent_matches(
    ray_cluster, tracking_uri, write_pipeline, tmp_path
):
    # Rule: define-by-run through Ray: a trial's config, its MLflow params and its Optuna trial
    # hold `time_steps` exactly when `width` is 0.5.
    space = "model:\n  width: {choice: [0.25, 0.5]}\n  time_steps: {int: [1, 2], when: {width: [0.5]}}\n"
    path = write_pipeline(tmp_path, "conditional", space=space, num_samples=6, epochs=2)
    result = run_sweep(path, tracking_uri=tracking_uri, progress=False)
    assert result.counts["FINISHED"] == 6
    search = {t.user_attrs["ray_trial_id"]: t for t in _study(result, result.optuna_study).trials}
    widths = set()
    for run in _children(tracking_uri, result):
        params = run.data.params  # the whole resolved config: sampled and fixed alike
        widths.add(params["width"])
        sampled = {k: str(v) for k, v in search[run.data.tags["albsnn.trial_id"]].params.items()}
        assert ("time_steps" in sampled) == (sampled["width"] == "0.5")
        assert sampled == {k: params[k] for k in sampled}
    assert widths == {"0.25", "0.5"}


def test_trials_checkpoint_every_n_epochs_and_keep_one_copy_without_tune_result_files(
    ray_cluster, tracking_uri, write_pipeline, tmp_path
):
    # Rule: I/O per epoch stays flat: a checkpoint every `checkpoint_every` epochs and at the last,
    # written once (Ray's folder, rotated by the trial), and no Tune JSON/CSV result files.
    path = write_pipeline(tmp_path, "ckpt", checkpoint_every=2, keep_checkpoints=1, epochs=3)
    result = run_sweep(path, tracking_uri=tracking_uri, progress=False)
    assert result.counts == {"FINISHED": 2, "PRUNED": 0, "FAILED": 0}
    trial_dirs = sorted(result.sweep_dir.glob("trial_*"))
    assert len(trial_dirs) == 2 and not (result.sweep_dir / "trials").exists()
    for trial_dir in trial_dirs:
        full = [f.parent for f in sorted(trial_dir.glob("checkpoint_*/checkpoint.pt"))]
        assert [json.loads((f / "state.json").read_text())["epoch"] for f in full] == [3]
        rotated = [f for f in trial_dir.glob("checkpoint_*") if f not in full]  # epoch 2's, emptied
        assert len(rotated) == 1 and [p.name for p in rotated[0].iterdir()] == [ROTATED_FILE]
        assert not list(trial_dir.glob("result.json")) and not list(trial_dir.glob("progress.csv"))
    for run in _children(tracking_uri, result):
        assert _steps(tracking_uri, run) == [1, 2, 3]
        artifacts = {a.path for a in MlflowClient(tracking_uri).list_artifacts(run.info.run_id)}
        assert artifacts == TRIAL_ARTIFACTS | {CHECK_ARTIFACT}


def test_killed_driver_resumes_without_duplicates(
    wait_for, ray_cluster, tracking_uri, write_pipeline, tmp_path, subprocess_env, python
):
    # Rule: kill -9 the driver mid-sweep, then `--resume`: every trial finishes once, MLflow has one run
    # per study trial (no duplicates, none left RUNNING), and Ray's trials are among them.
    # Ray's snapshots are held off after the first (TUNE_GLOBAL_CHECKPOINT_S), so the kill always
    # loses to Ray both trials that finished since (their results stand: study and MLflow keep them and
    # the budget counts them) and the running one (re-run by Ray, under its Optuna trial).
    path = write_pipeline(tmp_path, "resume", num_samples=8, epochs=4)
    argv = [
        python,
        "-m",
        "albsnn.cli",
        "sweep",
        str(path),
        "--tracking-uri",
        tracking_uri,
        "--address",
        ray_cluster,
    ]
    client = MlflowClient(tracking_uri)
    driver = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env={**subprocess_env, "TUNE_GLOBAL_CHECKPOINT_S": "3600"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def mid_sweep() -> bool:
        experiment = client.get_experiment_by_name("test-resume")
        if experiment is None:
            return False
        runs = client.search_runs([experiment.experiment_id], "tags.`albsnn.role` = 'trial'")
        finished = [r for r in runs if r.info.status == "FINISHED"]
        running = [r for r in runs if r.info.status == "RUNNING" and r.data.metrics]
        return len(finished) >= 3 and len(running) >= 1  # max_concurrent 2: the 3rd came after the snapshot

    try:
        wait_for(mid_sweep, 300, "three finished trials and one running")  # a loaded box: minutes
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        out = driver.communicate()[0].decode()
    assert driver.returncode == -signal.SIGKILL, out

    resumed = subprocess.run(
        [*argv, "--resume"], cwd=tmp_path, env=subprocess_env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "8 finished, 0 pruned, 0 failed" in resumed.stdout

    sweep_dir = next((tmp_path / "sweeps" / "resume").iterdir())
    ray_trials = {t.trial_id: t.status for t in ExperimentAnalysis(str(sweep_dir)).trials}
    assert set(ray_trials.values()) == {"TERMINATED"}
    experiment = client.get_experiment_by_name("test-resume")
    runs = client.search_runs([experiment.experiment_id], "tags.`albsnn.role` = 'trial'")
    mlflow_trials = sorted(r.data.tags["albsnn.trial_id"] for r in runs)
    assert len(mlflow_trials) == 8 and set(ray_trials) < set(mlflow_trials)  # some were lost to Ray
    for run in runs:
        assert run.info.status == "FINISHED"
        assert _steps(tracking_uri, run) == [1, 2, 3, 4]
    info = json.loads((sweep_dir / "sweep.json").read_text())
    study = optuna.load_study(
        study_name=info["optuna_study"], storage=open_journal(sweep_dir / "optuna.journal")
    )
    assert sorted(t.user_attrs["ray_trial_id"] for t in study.trials) == mlflow_trials
    assert {t.state for t in study.trials} == {TrialState.COMPLETE}


TWO_NODES = textwrap.dedent(
    """
    import json, logging, sys
    from ray.cluster_utils import Cluster
    from albsnn.sweep import run_sweep

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        result = run_sweep(sys.argv[1], tracking_uri=sys.argv[2], address=cluster.address, progress=False)
        print(json.dumps({"experiment_id": result.experiment_id, "parent": result.parent_run_id,
                          "counts": result.counts}))
    finally:
        cluster.shutdown()
    """
)


def test_two_node_cluster_runs_trials_on_both_nodes(
    tracking_uri, write_pipeline, tmp_path, subprocess_env, python
):
    # Rule: `--address` joins an existing cluster; trials spread over its nodes (one CPU each here).
    path = write_pipeline(tmp_path, "nodes", num_samples=4)
    out = subprocess.run(
        [python, "-c", TWO_NODES, str(path), tracking_uri],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["counts"] == {"FINISHED": 4, "PRUNED": 0, "FAILED": 0}
    runs = MlflowClient(tracking_uri).search_runs(
        [summary["experiment_id"]], f"tags.`mlflow.parentRunId` = '{summary['parent']}'"
    )
    assert len({r.data.tags["albsnn.node_id"] for r in runs}) == 2


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # reports, default storage: never in the repository
    yield Path(tmp_path)
