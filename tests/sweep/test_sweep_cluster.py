"""Remote clusters: storage URIs (against a real S3-compatible server on 127.0.0.1), runtime_env,
pre-flight checks of resources and data, fractional GPUs, and what each trial records."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from mlflow import MlflowClient

from albsnn.cli import main
from albsnn.errors import ConfigError
from albsnn.sweep.pipeline import load_pipeline
from albsnn.sweep.preflight import check_resources
from albsnn.sweep.storage_uri import check_storage_uri, join_uri


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _node(cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    return {"Alive": alive, "NodeID": "n", "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


# ---------------------------------------------------------------- parsing and checks, no cluster


def test_storage_uri_goes_to_ray_and_the_driver_keeps_its_files_locally(write_pipeline, tmp_path):
    path = write_pipeline(tmp_path, "remote", storage="s3://bucket/sweeps?region=eu-west-1")
    pipe = load_pipeline(path)
    assert pipe.ray_storage == "s3://bucket/sweeps?region=eu-west-1"
    assert pipe.storage == tmp_path / "runs" / "sweeps"  # sweep.json, journal, lock: on the driver
    assert pipe.experiment_path("remote-1") == "s3://bucket/sweeps/remote/remote-1?region=eu-west-1"
    assert not (tmp_path / "s3:").exists()
    local = load_pipeline(write_pipeline(tmp_path, "local", storage=f"file://{tmp_path}/x"))
    assert local.ray_storage is None and local.experiment_path("a") == f"{tmp_path}/x/local/a"
    assert join_uri("gs://b", "p", "q") == "gs://b/p/q"


def test_runtime_env_paths_are_relative_to_the_pipeline_and_env_vars_are_strings(write_pipeline, tmp_path):
    (tmp_path / "code").mkdir()
    env = {"working_dir": "code", "env_vars": {"ALBSNN_DATA": "/data"}, "py_modules": ["code"]}
    pipe = load_pipeline(write_pipeline(tmp_path, "env", runtime_env=env))
    assert pipe.runtime_env == {
        "working_dir": str(tmp_path / "code"),
        "env_vars": {"ALBSNN_DATA": "/data"},
        "py_modules": [str(tmp_path / "code")],
    }
    for bad, words in [
        ({"env_vars": {"N": 1}}, "env_vars values must be strings"),
        ({"working_dir": "nowhere"}, "runtime_env.working_dir"),
        ({"container": "x"}, "unknown key(s) ['container'] under runtime_env"),
    ]:
        with pytest.raises(ConfigError) as info:
            load_pipeline(write_pipeline(tmp_path, "env", runtime_env=bad))
        assert words in str(info.value)


def test_storage_uri_without_a_filesystem_is_named():
    with pytest.raises(ConfigError, match=r"storage s4://bucket/x: no filesystem for s4://"):
        check_storage_uri("s4://bucket/x")


@pytest.mark.parametrize(
    "resources, nodes, words",
    [
        ({"cpus": 1, "gpus": 1}, [_node(8)], "missing: GPU"),
        ({"cpus": 16, "gpus": 0}, [_node(8), _node(8)], "offer at most 8 CPU, 0 GPU (missing: CPU)"),
        ({"cpus": 4, "gpus": 1}, [_node(8), _node(2, 1)], "missing: CPU and GPU on the same node"),
        ({"cpus": 1, "gpus": 1}, [_node(8, 1, alive=False)], "0 node(s)"),
    ],
)
def test_resources_no_node_can_hold_are_named(resources, nodes, words):
    with pytest.raises(ConfigError) as info:
        check_resources(resources, nodes)
    assert words in str(info.value)


def test_fractional_gpu_fits_a_node_with_one_gpu():
    check_resources({"cpus": 1, "gpus": 0.25}, [_node(4, 1)])


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing left


def test_cluster_bad_input_fails_before_anything_is_recorded(
    ray_cluster, write_pipeline, tmp_path, tracking_uri, capsys
):
    (tmp_path / "empty").mkdir()
    cases = [
        (
            write_pipeline(tmp_path, "c-s4", storage="s4://bucket/x", mlflow={"experiment": "c-never"}),
            "no filesystem for s4://",
        ),
        (
            write_pipeline(
                tmp_path, "c-gpu", resources={"cpus": 1, "gpus": 2}, mlflow={"experiment": "c-never"}
            ),
            "each trial needs 1 CPU and 2 GPU on one node",
        ),
        (
            write_pipeline(
                tmp_path,
                "c-data",
                dataset="fashion-mnist",
                data_dir=str(tmp_path / "empty"),
                limit_train=None,
                limit_test=None,
                mlflow={"experiment": "c-never"},
            ),
            "dataset fashion-mnist is missing on node",
        ),
    ]
    for path, words in cases:
        assert main(["sweep", str(path), "--tracking-uri", tracking_uri]) == 2, path
        err = capsys.readouterr().err
        assert words in err, err
        assert err.count("error:") == 1 and "Traceback" not in err
    assert MlflowClient(tracking_uri).get_experiment_by_name("c-never") is None
    assert not list((tmp_path / "sweeps").glob("*/*/sweep.json"))


# ---------------------------------------------------------------- a real S3-compatible server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on 127.0.0.1 with a bucket ``sweeps``; yields the AWS_* environment."""
    pytest.importorskip("moto.server", reason="pip install 'moto[server]' (the dev extra)")
    import pyarrow.fs

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.3)
        fs = pyarrow.fs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        fs.create_dir("sweeps")
        yield env, fs
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_sweep_on_s3_storage_keeps_checkpoints_in_the_bucket_and_resumes_from_it(
    ray_cluster, s3_server, write_pipeline, tmp_path, tracking_uri, subprocess_env, python
):
    # Rule: storage: s3://... puts Ray's experiment (snapshots, trial checkpoints) in the bucket;
    # workers get the endpoint and credentials from the pipeline's runtime_env; --resume reads it back.
    env, fs = s3_server
    path = write_pipeline(
        tmp_path,
        "ons3",
        storage="s3://sweeps/albsnn",
        runtime_env={"env_vars": env},
        keep_checkpoints=1,
        epochs=2,
    )
    argv = [python, "-m", "albsnn.cli", "sweep", str(path), "--tracking-uri", tracking_uri]
    argv += ["--address", ray_cluster, "--quiet"]
    run = subprocess.run(argv, cwd=tmp_path, env={**subprocess_env, **env}, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 finished, 0 pruned, 0 failed" in run.stdout
    (sweep_dir,) = (tmp_path / "runs" / "sweeps" / "ons3").iterdir()
    assert {"sweep.json", "optuna.journal", "pipeline.yaml"} <= {p.name for p in sweep_dir.iterdir()}
    assert not (tmp_path / "s3:").exists() and not list(sweep_dir.glob("trial_*"))

    import pyarrow.fs

    keys = [i.path for i in fs.get_file_info(pyarrow.fs.FileSelector("sweeps/albsnn", recursive=True))]
    prefix = f"sweeps/albsnn/ons3/{sweep_dir.name}"
    assert any(k.startswith(f"{prefix}/experiment_state-") for k in keys), keys
    checkpoints = {k.rsplit("/", 2)[0] for k in keys if "/checkpoint_" in k and k.endswith("state.json")}
    assert len(checkpoints) == 2  # one trial folder each, one checkpoint kept each
    client = MlflowClient(tracking_uri)
    info = json.loads((sweep_dir / "sweep.json").read_text())
    runs = client.search_runs(
        [info["experiment_id"]], f"tags.`mlflow.parentRunId` = '{info['parent_run_id']}'"
    )
    assert len(runs) == 2
    for r in runs:
        assert "model" in {a.path for a in client.list_artifacts(r.info.run_id)}  # read from the bucket
        assert r.data.tags["albsnn.code_version"] and r.data.tags["albsnn.trial_host"] == socket.gethostname()

    resumed = subprocess.run(
        [*argv, "--resume", sweep_dir.name, "--num-samples", "3"],
        cwd=tmp_path,
        env={**subprocess_env, **env},
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "3 finished, 0 pruned, 0 failed" in resumed.stdout


FRACTIONAL = textwrap.dedent(
    """
    import json, sys
    import ray
    from albsnn.sweep import run_sweep

    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(sys.argv[1], tracking_uri=sys.argv[2], progress=False)
        print(json.dumps({"experiment_id": result.experiment_id, "parent": result.parent_run_id,
                          "counts": result.counts}))
    finally:
        ray.shutdown()
    """
)


@pytest.mark.slow
def test_four_quarter_gpu_trials_share_one_logical_gpu_at_once(
    write_pipeline, tmp_path, tracking_uri, subprocess_env, python
):
    # Rule: resources.gpus: 0.25 packs four trials on one GPU; Ray's logical GPU resource on a CPU
    # node (num_gpus=1) shows the packing: all four run at once and each is assigned GPU 0.
    path = write_pipeline(
        tmp_path, "quarter", resources={"cpus": 1, "gpus": 0.25}, num_samples=4, max_concurrent=4, epochs=2
    )
    out = subprocess.run(
        [python, "-c", FRACTIONAL, str(path), tracking_uri],
        cwd=tmp_path,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["counts"] == {"FINISHED": 4, "PRUNED": 0, "FAILED": 0}
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [summary["experiment_id"]], f"tags.`mlflow.parentRunId` = '{summary['parent']}'"
    )
    assert [r.data.tags["albsnn.gpu_ids"] for r in runs] == ["0"] * 4
    # Ray started every trial (placed it with its 0.25 GPU; the MLflow run starts then) before any
    # ended: the four held the one GPU at once
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs)
