"""Bad input to ``albsnn report``: one clear line, exit code 2, no report folder left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from albsnn.cli import main


def _run(capsys, *args) -> tuple[int, str]:
    code = main(["report", *args])
    return code, capsys.readouterr().err


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--experiment", "no-such-experiment"], "no MLflow experiment named 'no-such-experiment'"),
        (["--parent-run", "0123456789abcdef0123456789abcdef"], "no MLflow run with id"),
        (["--experiment", "nothing-finished"], "has no finished runs"),
    ],
    ids=["unknown experiment", "unknown run id", "no finished runs"],
)
def test_bad_input_is_one_line_and_exit_code_2(logged_sweeps, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, err = _run(capsys, *args, "--tracking-uri", logged_sweeps.tracking_uri, "--out", str(out))
    assert code == 2
    first = err.splitlines()[0]
    assert message in first and "Traceback" not in err
    _assert_nothing_written(out)


def test_a_trial_run_id_points_to_its_sweep(logged_sweeps, tmp_path, capsys):
    trial = next(iter(logged_sweeps.children))
    code, err = _run(
        capsys,
        "--parent-run",
        trial,
        "--tracking-uri",
        logged_sweeps.tracking_uri,
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 2 and f"pass its parent run {logged_sweeps.search_parent}" in err


@pytest.mark.parametrize(
    "uri, message",
    [
        ("sqlite:///{tmp}/missing/mlflow.db", "no MLflow database at"),
        ("http://127.0.0.1:9", "does not answer"),  # discard port: refused at once, never retried
        ("{tmp}/no-store-here", "no MLflow store at"),
    ],
    ids=["missing sqlite file", "server not answering", "missing folder"],
)
def test_a_tracking_uri_that_does_not_answer(tmp_path, capsys, uri, message):
    out = tmp_path / "out"
    code, err = _run(
        capsys, "--experiment", "x", "--tracking-uri", uri.format(tmp=tmp_path), "--out", str(out)
    )
    assert code == 2 and message in err.splitlines()[0]
    _assert_nothing_written(out)
    assert not (tmp_path / "missing").exists()  # MLflow must not have created an empty store


def test_default_tracking_uri_is_runs_mlflow_db_in_the_working_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _run(capsys, "--experiment", "demo")
    assert code == 2 and f"no MLflow database at {tmp_path.resolve() / 'runs' / 'mlflow.db'}" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_experiment_and_parent_run_are_exclusive(capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", "--experiment", "a", "--parent-run", "b"])
    assert e.value.code == 2


def test_an_out_folder_that_is_not_a_report_is_never_replaced(logged_sweeps, tmp_path, capsys):
    # the old report is replaced whole: a folder with other files in it (say, --out .) must survive
    keep = tmp_path / "precious.txt"
    keep.write_text("do not delete")
    code, err = _run(capsys, "--experiment", logged_sweeps.experiment, "--tracking-uri",
                     logged_sweeps.tracking_uri, "--out", str(tmp_path))  # fmt: skip
    assert code == 2 and "is not a report folder" in err
    assert keep.read_text() == "do not delete"


def test_a_second_report_replaces_the_first_whole(report, logged_sweeps, tmp_path):
    import shutil

    from albsnn.report import generate_report

    old = shutil.copytree(report, tmp_path / "r")
    (old / "stale.csv").write_text("from an older report")
    again = generate_report(logged_sweeps.tracking_uri, experiment=logged_sweeps.experiment, out_dir=old,
                            log_artifacts=False)  # fmt: skip
    assert again == old and (old / "index.html").is_file() and not (old / "stale.csv").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary or backup folder left
