"""The batch map's Dask side: what a worker needs, holds and runs, and the check that it has it.

Every worker gets the map's `WorkerSpec` (dataset, model, weights) once, through a `SpecPlugin`, and
builds from it, once per process, the dataset index and the model (`worker_state`); a window task
then carries only the spec's key and its window.

Workers read the imagery where it lives (the same local paths on every machine, or URLs) and the
model from a path every worker sees (`--model_fn`, and `--state_dir` for a checkpoint). Before any
window, `check_cluster` asks the scheduler and each worker what they have: the package and its
version, the dataset's files they can read, the model loaded; it raises one ClusterError that
names each worker and what it lacks.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from web_tool import __version__
from web_tool.DataLoader import DataLoader
from web_tool.errors import ClusterError, LandCoverError, ModelError, NotTrainedError
from web_tool.imagery.datasets import DatasetConfig
from web_tool.imagery.rasterfiles import scan
from web_tool.learning.store import load_checkpoint_model
from web_tool.mapping.pipeline import WindowResult, WindowTask, default_window_px, predict_window
from web_tool.paths import STATE_DIR
from web_tool.ServerModels.base import ServerModel

if TYPE_CHECKING:
    from distributed import Client, Worker

#: side of the blank image each process predicts once after loading the model
WARMUP_PX = 64
#: how the README says to give a machine this package
INSTALL_HINT = "install this package there (`pip install .` from a checkout, same version)"


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model in any process: registry name, file, classes, optional checkpoint."""

    model: str
    model_fn: str
    classes: tuple[tuple[str, str], ...]
    checkpoint: str | None = None
    state_dir: str | None = None

    def load(self) -> ServerModel:
        from web_tool.ServerModels import get_model

        classes = [{"name": n, "color": c} for n, c in self.classes]
        model = get_model(self.model)(self.model_fn, classes=classes)
        if self.checkpoint:
            model = load_checkpoint_model(self.state_dir or STATE_DIR, self.checkpoint, model)
        if not model.trained:
            raise NotTrainedError(
                f"model {model.name!r} has not learnt anything yet: map with --checkpoint ID, a checkpoint"
                " saved from a session that taught it"
            )
        return model


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a window task needs besides its window (sent to each worker once)."""

    dataset: DatasetConfig
    model: ModelSpec
    weights: tuple[float, ...] | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()


_SPECS: dict[str, WorkerSpec] = {}
_STATE: dict[str, tuple[DataLoader, ServerModel]] = {}
_STATE_LOCK = threading.Lock()


class SpecPlugin(WorkerPlugin):
    """Gives every worker of the cluster, present or joining later, the map's WorkerSpec once, so
    that tasks carry only its key."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.name = f"landcover-map-{spec.key[:16]}"

    def setup(self, worker: Worker) -> None:
        _SPECS[self.spec.key] = self.spec


def spec_for(key: str) -> WorkerSpec:
    try:
        return _SPECS[key]
    except KeyError:
        raise ModelError(f"this worker never received map spec {key[:12]} (SpecPlugin not set up)") from None


def forget(key: str) -> None:
    """Let go of a finished map's spec, dataset index and model (a cluster outlives many maps)."""
    with _STATE_LOCK:
        _SPECS.pop(key, None)
        _STATE.pop(key, None)


def worker_state(spec: WorkerSpec) -> tuple[DataLoader, ServerModel]:
    """(DataLoader, model) for `spec`, built once per process and kept; the model is warmed up with
    a small prediction (its graph traced) so that the first window does not pay for it."""
    with _STATE_LOCK:
        if spec.key not in _STATE:
            model = spec.model.load()
            loader = DataLoader(spec.dataset, n_bands=model.n_bands)  # checks the bands
            model.predict(np.zeros((WARMUP_PX, WARMUP_PX, len(loader.bands)), dtype=np.uint8))
            _STATE[spec.key] = (loader, model)
        return _STATE[spec.key]


def set_tf_threads(n: int | None) -> None:
    """Limit TensorFlow to `n` threads in this process (only possible before it first runs)."""
    if not n:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)
    except RuntimeError:
        pass  # TensorFlow already started in this process (threaded cluster, earlier map): keep its pool


def model_facts(model: ServerModel) -> dict[str, Any]:
    """What the driver needs to know of the model."""
    return {
        "classes": model.classes,
        "padding": model.padding,
        "window_px": default_window_px(model),
        "n_classes": model.n_classes,
    }


def run_window(key: str, task: WindowTask) -> WindowResult:
    """One Dask task: the class indices of one window (the spec is the worker's, by key)."""
    spec = spec_for(key)
    loader, model = worker_state(spec)
    weights = list(spec.weights) if spec.weights else None
    return task.window, predict_window(loader, model, task, weights)


# --------------------------------------------------------------------------------------------
# the check before the map


def package_version() -> str:
    """This process's version of the package (run on the scheduler: can it import web_tool?)."""
    return __version__


def worker_report(
    spec: WorkerSpec, host_threads: dict[str, int], dask_worker: Worker | None = None
) -> dict[str, Any]:
    """Run on each worker before the map: its package version, the dataset files it can read, and
    the model's facts once loaded here (or what failed). TensorFlow gets this machine's cores shared
    among the Dask threads on it (`host_threads`)."""
    from distributed.comm.addressing import get_address_host

    threads_here = host_threads.get(get_address_host(dask_worker.address), 1) if dask_worker else 1
    set_tf_threads(max(1, (os.cpu_count() or 1) // threads_here))
    files = [f.path for f in scan(spec.dataset.paths)]  # unreadable ones are logged on the worker
    report: dict[str, Any] = {"version": __version__, "files": files}
    if not files:
        return report
    try:
        _, model = worker_state(spec)
    except LandCoverError as exc:  # ModelError, or NotFoundError for a checkpoint
        return {**report, "error": f"cannot load the model: {exc}"}
    return {**report, "model": model_facts(model)}


def threads_per_host(client: Client) -> dict[str, int]:
    """Dask worker threads on each host of the cluster."""
    counts: dict[str, int] = {}
    for info in client.scheduler_info(n_workers=-1)["workers"].values():
        counts[info["host"]] = counts.get(info["host"], 0) + info["nthreads"]
    return counts


def check_cluster(client: Client, spec: WorkerSpec, files: list[str]) -> dict[str, Any]:
    """Check that the scheduler and every worker can make this map (`files`: the dataset's files
    this process reads) before any window runs; the model's facts. ClusterError names each worker
    and what it lacks."""
    try:
        version = client.run_on_scheduler(package_version)
    except Exception as exc:
        if lacks_package(exc):
            raise ClusterError(f"the Dask scheduler cannot import web_tool: {INSTALL_HINT}") from None
        raise
    if version != __version__:
        raise ClusterError(
            f"the Dask scheduler has web_tool {version}, this machine {__version__}: {INSTALL_HINT}"
        )
    reports = client.run(worker_report, spec, threads_per_host(client), on_error="return")
    problems = [
        f"worker {addr}: {problem}"
        for addr, report in sorted(reports.items())
        for problem in worker_problems(report, files)
    ]
    if problems:
        raise ClusterError("the Dask cluster cannot make this map:\n  " + "\n  ".join(problems))
    facts: dict[str, Any] = next(iter(reports.values()))["model"]
    return facts


def worker_problems(report: dict[str, Any] | BaseException, files: list[str]) -> list[str]:
    """What one worker's report says it lacks, in words."""
    if isinstance(report, BaseException) and lacks_package(report):
        return [f"cannot import web_tool: {INSTALL_HINT}"]
    if isinstance(report, BaseException):
        return [f"failed to prepare the map: {type(report).__name__}: {report}"]
    if report["version"] != __version__:
        return [f"has web_tool {report['version']}, this machine {__version__}: {INSTALL_HINT}"]
    problems = []
    missing = sorted(set(files) - set(report["files"]))
    if missing:
        problems.append(
            f"cannot read {len(missing)} of the dataset's {len(files)} imagery files, e.g."
            f" {missing[0]} (give every worker the same paths, or URLs)"
        )
    if "error" in report:
        problems.append(report["error"])
    return problems


def lacks_package(exc: BaseException) -> bool:
    """Whether an error from the scheduler or a worker says it cannot import web_tool (Dask hands it
    on as the ImportError itself, or as a plain Exception carrying its text)."""
    return isinstance(exc, ImportError) or "No module named 'web_tool" in str(exc)
