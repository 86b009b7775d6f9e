"""Map an area of any size offline, on Dask: the same windows, prediction and writer as `/predTile`.

    python -m web_tool.batch --dataset web_tool/data/demo/imagery --aoi area.geojson \\
        --model_fn web_tool/data/demo_model.keras --out map.tif [--workers 2] [--scheduler tcp://host:8786]

Windows of the dataset's native grid are Dask tasks. Each worker process loads the dataset index
and the model once (`worker_state`, cached per process) and returns the window's class indices;
this process writes them to a tiled GeoTIFF as they complete, with a bounded number in flight, so
memory does not grow with the area. The result becomes a COG with a PNG preview and class
statistics (`<out>.png`, `<out>_stats.json`, `<out>_stats.csv`) beside it.

`--workers N` starts a LocalCluster of N single-threaded worker processes; `--scheduler ADDRESS`
uses a running cluster instead (its workers need this package and the dataset's paths); both run the
same code. `--workers 0` maps in this process, without Dask.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from web_tool import datasets as dataset_config
from web_tool.DataLoader import DataLoader
from web_tool.datasets import DatasetConfig
from web_tool.errors import LandCoverError, ModelError, NotFoundError
from web_tool.geometry import WGS84, parse_crs
from web_tool.mapping import (
    AOI,
    MapPlan,
    WindowResult,
    WindowTask,
    aoi_from_geojson,
    check_weights,
    clip_to_imagery,
    default_window_px,
    outputs_beside,
    plan_map,
    predict_window,
    render_map,
    serial_results,
)

WEB_ROOT = Path(__file__).resolve().parent
#: tasks in flight per worker thread: enough to keep workers busy, few enough to bound memory
TASKS_PER_THREAD = 2
#: side of the blank image each process predicts once after loading the model
WARMUP_PX = 64


# --------------------------------------------------------------------------------------------
# what a worker needs, and its per-process cache


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model in any process: registry name, file, classes, optional checkpoint."""

    model: str
    model_fn: str
    classes: tuple[tuple[str, str], ...]
    checkpoint: str | None = None
    state_dir: str | None = None
    tf_threads: int | None = None  # TensorFlow threads per worker process (None: its default)

    def load(self):
        from web_tool.ServerModels import get_model

        set_tf_threads(self.tf_threads)
        classes = [{"name": n, "color": c} for n, c in self.classes]
        model = get_model(self.model)(self.model_fn, classes=classes)
        if self.checkpoint:
            model = load_checkpoint(self.state_dir, self.checkpoint, model)
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
_STATE: dict[str, tuple[DataLoader, object]] = {}
_STATE_LOCK = threading.Lock()


class SpecPlugin(WorkerPlugin):
    """Gives every worker of the cluster, present or joining later, the map's WorkerSpec once, so
    that tasks carry only its key."""

    name = "landcover-map-spec"

    def __init__(self, spec: WorkerSpec):
        self.spec = spec

    def setup(self, worker) -> None:
        _SPECS[self.spec.key] = self.spec


def spec_for(key: str) -> WorkerSpec:
    try:
        return _SPECS[key]
    except KeyError:
        raise ModelError(f"this worker never received map spec {key[:12]} (SpecPlugin not set up)") from None


def worker_state(spec: WorkerSpec):
    """(DataLoader, model) for `spec`, built once per process and kept; the model is warmed up with
    a small prediction (its graph traced) so that the first window does not pay for it."""
    with _STATE_LOCK:
        if spec.key not in _STATE:
            model = spec.model.load()
            loader = DataLoader(spec.dataset, n_bands=getattr(model, "n_bands", None))  # checks the bands
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
        pass  # TensorFlow already started in this process (threaded cluster): keep its pool


def load_checkpoint(state_dir: str | None, checkpoint_id: str, base_model):
    try:
        from web_tool.store import load_checkpoint_model
    except ImportError:
        raise ModelError(
            "--checkpoint needs web_tool.store.load_checkpoint_model, which this version of the tool"
            " does not have yet: map with the base model (leave --checkpoint out)"
        ) from None
    return load_checkpoint_model(state_dir or str(WEB_ROOT / "data" / "state"), checkpoint_id, base_model)


def describe_model(spec: WorkerSpec | str) -> dict:
    """What the driver needs to know of the model; run on every worker first (by key), it also loads
    the model there (so this process never imports TensorFlow on the Dask path)."""
    _, model = worker_state(spec_for(spec) if isinstance(spec, str) else spec)
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
# executors


def dask_results(client, key: str, plan: MapPlan) -> Iterator[WindowResult]:
    """The Dask executor: windows as tasks, at most TASKS_PER_THREAD per worker thread in flight,
    yielded as they complete. Closing the iterator cancels what is still pending."""
    from distributed import as_completed

    tasks = plan.tasks(largest_first=True)
    limit = max(2, TASKS_PER_THREAD * sum(client.nthreads().values()))
    pending = as_completed()
    submitted = []

    def submit_next() -> None:
        task = next(tasks, None)
        if task is not None:
            future = client.submit(run_window, key, task, pure=False)
            submitted.append(future)
            pending.add(future)

    for _ in range(limit):
        submit_next()
    try:
        for future in pending:
            result = future.result()
            future.release()
            submit_next()
            yield result
    finally:
        client.cancel([f for f in submitted if not f.done()])


def start_client(args: argparse.Namespace):
    """A Dask client: of the cluster at --scheduler, or of a new LocalCluster of --workers processes."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        return Client(args.scheduler), None
    cluster = LocalCluster(
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        processes=not args.threads_only,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster


# --------------------------------------------------------------------------------------------
# the command


def read_aoi(path: str, crs_code: str | None) -> AOI:
    """The AOI in a GeoJSON file; its CRS from --aoi_crs, the file's legacy `crs` member, or 4326."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"cannot read the AOI GeoJSON {path}: {exc}") from None
    if crs_code is None and isinstance(obj, dict) and isinstance(obj.get("crs"), dict):
        name = str(obj["crs"].get("properties", {}).get("name", ""))
        crs_code = name.rsplit(":", 1)[-1] if name else None
        if name.upper().endswith("CRS84"):
            crs_code = "4326"
    crs = parse_crs(crs_code) if crs_code else WGS84
    return aoi_from_geojson(obj, crs)


def dataset_for(spec: str, datasets_json: str) -> DatasetConfig:
    """A dataset named in --datasets_json, or else the rasters at the path/dir/glob `spec`."""
    try:
        named = {c.name: c for c in dataset_config.from_json(datasets_json)}
    except LandCoverError:
        named = {}
    if spec in named and named[spec].paths:
        return named[spec]
    return dataset_config.from_cli([spec])[0]


def class_weights(text: str) -> tuple[float, ...]:
    """--weights: comma-separated non-negative numbers, at least one positive."""
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated numbers: {text!r}") from None
    if any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
        raise argparse.ArgumentTypeError("weights must be finite, non-negative, and not all zero")
    return weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m web_tool.batch",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset name (--datasets_json) or raster path/dir/glob")
    p.add_argument("--datasets_json", default=str(WEB_ROOT / "datasets.json"), help="named datasets")
    p.add_argument("--aoi", required=True, help="GeoJSON (Multi)Polygon, Feature or FeatureCollection")
    p.add_argument("--aoi_crs", default=None, help="EPSG code of the AOI (None: the file's crs, else 4326)")
    p.add_argument("--model", default="keras", help="ServerModels registry name")
    p.add_argument("--model_fn", default=str(WEB_ROOT / "data" / "demo_model"), help="the Keras model file")
    p.add_argument("--checkpoint", default=None, help="a saved human-in-the-loop checkpoint id")
    p.add_argument("--state_dir", default=str(WEB_ROOT / "data" / "state"), help="where checkpoints are")
    p.add_argument("--weights", type=class_weights, default=None, help="class weights, e.g. 1,1,2,1")
    p.add_argument("--out", required=True, help="the output COG (.tif); preview and stats go beside it")
    p.add_argument("--scheduler", default=None, help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="LocalCluster worker processes; 0 = no Dask, map in this process",
    )
    p.add_argument("--threads_per_worker", type=int, default=1, help="threads per LocalCluster worker")
    p.add_argument("--threads_only", action="store_true", help="LocalCluster of threads, not processes")
    p.add_argument(
        "--window", type=int, default=None, help="window side in native pixels (None: sized for the model)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.workers < 0:
        p.error("--workers must be 0 or more")
    return args


def make_spec(args: argparse.Namespace, dataset: DatasetConfig) -> WorkerSpec:
    tf_threads = None
    if not args.scheduler and args.workers > 0:
        tf_threads = max(1, (os.cpu_count() or 1) // (args.workers * args.threads_per_worker))
    model = ModelSpec(
        args.model,
        str(args.model_fn),
        tuple((c["name"], c["color"]) for c in dataset.classes),
        args.checkpoint,
        args.state_dir,
        tf_threads,
    )
    return WorkerSpec(dataset, model, args.weights)


def run(args: argparse.Namespace, timings: dict | None = None) -> dict:
    """Make the map the arguments describe; its statistics. `timings` gets start-up and mapping seconds."""
    from tqdm import tqdm

    started = time.perf_counter()
    dataset = dataset_for(args.dataset, args.datasets_json)
    loader = DataLoader(dataset)
    aoi = clip_to_imagery(loader, read_aoi(args.aoi, args.aoi_crs))  # fail fast, before any cluster
    spec = make_spec(args, dataset)
    weights = list(spec.weights) if spec.weights else None
    client = cluster = None
    try:
        if args.workers == 0 and not args.scheduler:
            _, model = worker_state(spec)
            facts = describe_model(spec)
        else:
            client, cluster = start_client(args)
            client.wait_for_workers(1 if args.scheduler else args.workers)
            client.register_plugin(SpecPlugin(spec))
            facts = next(iter(client.run(describe_model, spec.key).values()))  # all load, in parallel
        check_weights(weights, facts["n_classes"])
        plan = plan_map(loader, aoi, args.window or facts["window_px"])
        ready = time.perf_counter()
        if client is None:
            results = serial_results(loader, model, plan, weights)
        else:
            results = dask_results(client, spec.key, plan)
        with tqdm(total=len(plan.windows), unit="window", disable=args.quiet, smoothing=0.1) as bar:
            stats = render_map(plan, results, outputs_beside(args.out), facts["classes"],
                               on_window=lambda done, total: bar.update(1))  # fmt: skip
        if timings is not None:
            timings.update(
                startup_s=ready - started, map_s=time.perf_counter() - ready, windows=len(plan.windows)
            )
        return stats.to_dict(plan.grid)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.ERROR)  # not every worker start and stop
    timings: dict = {}
    try:
        stats = run(args, timings)
    except LandCoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {stats['total_km2']:.3f} km² in {timings['windows']} windows,"
          f" {timings['map_s']:.1f} s (+ {timings['startup_s']:.1f} s start-up)")  # fmt: skip
    for row in stats["classes"]:
        print(f"  {row['name']:<12} {row['percent']:6.2f} %  {row['km2']:10.4f} km²  {row['pixels']:>12} px")
    return 0


if __name__ == "__main__":  # run the module's own import, so Dask pickles tasks as web_tool.batch.*
    from web_tool.batch import main as _main

    sys.exit(_main())
