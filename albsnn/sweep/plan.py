"""``albsnn sweep --dry-run``: what a sweep would run, with nothing started.

:func:`plan_sweep` validates the pipeline exactly as :func:`~albsnn.sweep.runner.run_sweep` does
and describes the sweep: number of trials, epochs, resources per trial and at full concurrency,
where it records, and the resolved configuration. It starts no Ray, creates no MLflow run and
writes no file.

    print(plan_sweep("pipelines/demo.yaml"))
"""

from __future__ import annotations

from pathlib import Path

from albsnn.sweep.pipeline import Pipeline, load_pipeline

__all__ = ["plan_sweep", "trial_count"]


def trial_count(pipe: Pipeline) -> int:
    """Trials the sweep creates: ``num_samples`` (search) or grid cells x seeds (ablation)."""
    if pipe.mode == "search":
        return pipe.num_samples
    size = len(pipe.seeds)
    for p in pipe.search_space.params:
        if p.kind == "grid":
            size *= len(p.values)
    return size * pipe.num_samples


def plan_sweep(
    pipeline: str | Path,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    resume: bool | str = False,
    num_samples: int | None = None,
    experiment: str | None = None,
) -> str:
    """The dry-run description of ``pipeline`` (or of the sweep ``--resume`` would continue)."""
    from albsnn.sweep.record import SweepRecord, find_sweep
    from albsnn.sweep.tracking import layout as tracking

    pipe = load_pipeline(Path(pipeline), num_samples=None if resume else num_samples, experiment=experiment)
    if resume:
        record = SweepRecord.load(find_sweep(pipe, None if resume is True else str(resume)))
        pipe = record.started_pipeline()
        if num_samples is not None and pipe.mode == "search":
            pipe.num_samples = max(num_samples, pipe.num_samples)
        uri = tracking_uri or record.tracking_uri
        where = f"resume {record.sweep_id} in {record.folder}"
    else:
        uri = tracking_uri or pipe.tracking_uri or tracking.default_tracking_uri()
        where = f"new sweep under {pipe.storage / pipe.name}"
    tracking.check_tracking_uri(uri)
    return _describe(pipe, uri, address, where)


def _describe(pipe: Pipeline, uri: str, address: str | None, where: str) -> str:
    import yaml

    n = trial_count(pipe)
    cpus, gpus = pipe.resources["cpus"], pipe.resources["gpus"]
    at_once = min(n, pipe.max_concurrent or n)
    if pipe.mode == "search":
        how = f"search: {n} trials, sampler {pipe.sampler['kind']}"
    else:
        how = f"ablation: {n // len(pipe.seeds)} grid cells x {len(pipe.seeds)} seeds = {n} trials"
    lines = [
        "dry run: nothing started (no Ray, no MLflow run, no files)",
        f"pipeline:    {pipe.path}",
        f"sweep:       {where}",
        f"trials:      {how}, pruner {pipe.pruner['kind']}",
        f"epochs:      {pipe.epochs} per trial, at most {n * pipe.epochs} trial-epochs; checkpoint "
        f"every {pipe.checkpoint_every} epoch(s) and at the last, keep {pipe.keep_checkpoints}",
        *_confirm_lines(pipe),
        f"resources:   {cpus} CPU, {gpus} GPU per trial; up to {at_once} at once = "
        f"{_num(cpus * at_once)} CPU, {_num(gpus * at_once)} GPU",
        f"ray:         {address or 'a local Ray on this machine'}",
        f"tracking:    {uri}, experiment {pipe.experiment}",
        "search space:",
        *(f"  {p.name}: {_domain(p)}" for p in pipe.search_space.params),
        "trial config (fixed values):",
        *(f"  {line}" for line in yaml.safe_dump(pipe.base_config(), sort_keys=True).splitlines()),
        "pipeline (resolved):",
        *(f"  {line}" for line in yaml.safe_dump(_resolved(pipe), sort_keys=False).splitlines()),
    ]
    return "\n".join(lines)


def _confirm_lines(pipe: Pipeline) -> list[str]:
    """How many confirmation runs follow the search: the front is unknown until it ends."""
    if not pipe.confirm:
        return []
    seeds, cap = pipe.confirm["seeds"], pipe.confirm["max_points"]
    size = f"min(front size, {cap})" if cap else "front size"
    most = f" (at most {cap * len(seeds)})" if cap else ""
    return [
        f"confirm:     after the search, up to {size} x {len(seeds)} seeds {seeds} runs{most}, "
        f"{pipe.epochs} epochs each, unpruned (the front is known only when the search ends)"
    ]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _domain(param) -> str:
    return f"{param.kind} {list(param.values)}"


def _resolved(pipe: Pipeline) -> dict:
    d = pipe.to_dict()
    d.pop("train", None)  # listed above as the trial config
    return d
