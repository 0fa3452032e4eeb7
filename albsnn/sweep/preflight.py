"""Checks a sweep makes on the Ray cluster before any trial starts (and before MLflow hears of it).

* :func:`check_resources`: some alive node must hold one trial's ``resources`` (Ray places a trial's
  CPUs and GPUs on one node); otherwise Ray would keep every trial PENDING forever.
* :func:`check_dataset`: one light task per node (``num_cpus=0``, pinned with
  ``NodeAffinitySchedulingStrategy``) asks :func:`albsnn.data.dataset_status` whether the pipeline's
  dataset is there, with the job's ``runtime_env`` (so ``env_vars: {ALBSNN_DATA: ...}`` counts).

A failed check is a :class:`ConfigError` naming the resource or the node; the caller has started no
trial and created no MLflow run, so nothing is left RUNNING.

    check_resources({"cpus": 1, "gpus": 0.25}, ray.nodes())
    check_dataset("fashion-mnist", data_dir=None)
"""

from __future__ import annotations

from albsnn.errors import ConfigError
from albsnn.sweep._imports import require

__all__ = ["check_resources", "check_dataset", "trial_nodes", "DATASET_TIMEOUT_S"]

DATASET_TIMEOUT_S = 300.0  # a node's first task may wait for its runtime_env (working_dir upload, pip)
_PRESENT = ("present", "embedded")


def trial_nodes(resources: dict, nodes: list[dict]) -> list[dict]:
    """The alive nodes of ``ray.nodes()`` that can hold one trial's ``{"cpus", "gpus"}``."""
    need = {"CPU": resources.get("cpus", 1), "GPU": resources.get("gpus", 0)}
    return [
        n
        for n in nodes
        if n.get("Alive") and all(n["Resources"].get(k, 0) >= v for k, v in need.items() if v)
    ]


def check_resources(resources: dict, nodes: list[dict], where: str = "resources") -> None:
    """A ConfigError naming what is missing when no alive node can hold one trial."""
    if trial_nodes(resources, nodes):
        return
    alive = [n for n in nodes if n.get("Alive")]
    need = {"CPU": resources.get("cpus", 1), "GPU": resources.get("gpus", 0)}
    largest = {k: max((n["Resources"].get(k, 0) for n in alive), default=0) for k in need}
    missing = [k for k, v in need.items() if v and largest[k] < v] or ["CPU and GPU on the same node"]
    have = ", ".join(f"{_num(largest[k])} {k}" for k in need)
    raise ConfigError(
        f"{where}: each trial needs {_num(need['CPU'])} CPU and {_num(need['GPU'])} GPU on one node, "
        f"but the Ray cluster's {len(alive)} node(s) offer at most {have} (missing: {', '.join(missing)}); "
        "lower resources in the pipeline or add a node that has them"
    )


def check_dataset(
    dataset: str, data_dir: str | None, resources: dict | None = None, timeout: float = DATASET_TIMEOUT_S
) -> None:
    """A ConfigError naming the node and folder when ``dataset`` is missing on a node that runs trials."""
    from albsnn.data import dataset_status

    if dataset_status(dataset, data_dir).state == "embedded":
        return  # ships with the package: present wherever albsnn is
    ray = require("ray")
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_dataset_state)
    nodes = trial_nodes(resources or {"cpus": 0}, ray.nodes())
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            dataset, data_dir
        )
        for n in nodes
    ]
    try:
        states = ray.get(refs, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise ConfigError(
            f"dataset check: nodes did not answer within {timeout:.0f} s (is the runtime_env installing?)"
        ) from None
    missing = [s for s in states if s[1] not in _PRESENT]
    if missing:
        host, state, folder = missing[0]
        raise ConfigError(
            f"dataset {dataset} is {state} on node {host} (looked in {folder}; {len(missing)} of "
            f"{len(states)} node(s) lack it): copy it there, or set data_dir or runtime_env.env_vars."
            "ALBSNN_DATA to a folder every node has"
        )


def _dataset_state(dataset: str, data_dir: str | None) -> tuple[str, str, str]:
    import socket

    from albsnn.data import dataset_status

    status = dataset_status(dataset, data_dir)
    return socket.gethostname(), status.state, str(status.folder)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
