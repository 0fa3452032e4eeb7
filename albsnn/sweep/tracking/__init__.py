"""MLflow tracking of sweeps: the layout (``layout``), the experiment and parent run (``runs``), the
spool and its background sender (``spool``, ``writer``) and the Ray Tune callback (``callback``).

One experiment per pipeline, one parent run per sweep (``albsnn.role=sweep``), one child run per
Ray trial (``albsnn.role=trial``, keyed by ``albsnn.trial_id``; a confirmation run of the Pareto
front: ``albsnn.role=confirm``), per-epoch metrics with
``step = epoch``. ``docs/tracking.md`` describes the layout; its names are constants in
:mod:`.layout` and nowhere else. Importing this package needs neither Ray nor MLflow.

    from albsnn.sweep.tracking import layout, runs
    from albsnn.sweep.tracking.spool import SweepLog
    layout.check_tracking_uri(uri)                    # one line naming what is wrong
    experiment_id = runs.ensure_experiment(uri, "albsnn-demo")
    parent = runs.start_parent_run(uri, experiment_id, "demo-20250101-120000", tags)
    log = SweepLog(sweep_dir, uri, experiment_id, parent)
"""
