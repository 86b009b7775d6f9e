"""Map an area of any size offline, on Dask: the same windows, prediction and writer as `/predTile`.

    python -m web_tool.batch --dataset web_tool/data/demo/imagery --aoi area.geojson \\
        --model_fn web_tool/data/demo_model.keras --out map.tif [--workers 2] [--scheduler tcp://host:8786]

Windows of the dataset's native grid are Dask tasks. Each worker process loads the dataset index
and the model once (`workers.worker_state`, cached per process) and returns the window's class
indices; this process writes them to a tiled GeoTIFF as they complete, with a bounded number in
flight, so memory does not grow with the area. The result becomes a COG with a PNG preview and class
statistics (`<out>.png`, `<out>_stats.json`, `<out>_stats.csv`) beside it.

`--workers N` starts a LocalCluster of N single-threaded worker processes; `--scheduler ADDRESS`
uses a running cluster instead, whose scheduler and workers have this package installed, and whose
workers see the imagery (same paths, or URLs) and the model file (same path): `workers.check_cluster`
checks that before the first window. Both run the same code. `--workers 0` maps in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from web_tool.DataLoader import DataLoader
from web_tool.errors import ClusterError, LandCoverError, NotFoundError
from web_tool.geometry import WGS84, parse_crs
from web_tool.imagery import datasets as dataset_config
from web_tool.imagery.datasets import DatasetConfig
from web_tool.mapping.pipeline import (
    AOI,
    MapPlan,
    WindowResult,
    aoi_from_geojson,
    clip_to_imagery,
    map_tags,
    outputs_beside,
    plan_map,
    render_map,
    serial_results,
)
from web_tool.mapping.workers import (
    ModelSpec,
    SpecPlugin,
    WorkerSpec,
    check_cluster,
    forget,
    model_facts,
    run_window,
    worker_state,
)
from web_tool.paths import DATASETS_JSON, DEMO_MODEL, STATE_DIR
from web_tool.rendering.images import check_weights

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

#: tasks in flight per worker thread: enough to keep workers busy, few enough to bound memory
TASKS_PER_THREAD = 2
#: seconds to wait for the --scheduler to answer, and for a worker to join it
SCHEDULER_TIMEOUT_S = 30
WORKERS_TIMEOUT_S = 120


# --------------------------------------------------------------------------------------------
# executors


def dask_results(client: Client, key: str, plan: MapPlan) -> Iterator[WindowResult]:
    """The Dask executor: windows as tasks, at most TASKS_PER_THREAD per worker thread in flight,
    yielded as they complete. Closing the iterator cancels what is still pending."""
    from distributed import as_completed

    tasks = plan.tasks(largest_first=True)
    limit = max(2, TASKS_PER_THREAD * sum(client.nthreads().values()))
    pending = as_completed()
    submitted: list[Future[WindowResult]] = []

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


def start_client(args: argparse.Namespace) -> tuple[Client, LocalCluster | None]:
    """A Dask client: of the cluster at --scheduler, or of a new LocalCluster of --workers processes."""
    from distributed import Client, LocalCluster

    if args.scheduler:
        try:
            return Client(args.scheduler, timeout=SCHEDULER_TIMEOUT_S), None
        except (OSError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}") from None
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
    p.add_argument("--dataset", required=True, help="dataset name, raster path/dir/glob, or https/s3/gs URL")
    p.add_argument("--datasets_json", default=str(DATASETS_JSON), help="named datasets")
    p.add_argument("--aoi", required=True, help="GeoJSON (Multi)Polygon, Feature or FeatureCollection")
    p.add_argument("--aoi_crs", default=None, help="EPSG code of the AOI (None: the file's crs, else 4326)")
    p.add_argument("--model", default="keras", help="ServerModels registry name")
    p.add_argument(
        "--model_fn",
        default=str(DEMO_MODEL),
        help="the Keras model file (with --scheduler: at this path on every worker)",
    )
    p.add_argument("--checkpoint", default=None, help="a saved human-in-the-loop checkpoint id")
    p.add_argument("--state_dir", default=str(STATE_DIR), help="where checkpoints are")
    p.add_argument("--weights", type=class_weights, default=None, help="class weights, e.g. 1,1,2,1")
    p.add_argument("--out", required=True, help="the output COG (.tif); preview, stats, styles go beside it")
    p.add_argument("--vector", action="store_true", help="also class polygons: <out>.gpkg and <out>.geojson")
    p.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://host:8786); scheduler and workers need"
        " this package, the workers the imagery and the model (checked first)",
    )
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


def absolute(path: str) -> str:
    """`path` as every worker must see it: absolute (workers run in other folders); GDAL's /vsi paths
    and URLs as they are."""
    return path if path.startswith("/vsi") else os.path.abspath(path)


def make_spec(args: argparse.Namespace, dataset: DatasetConfig) -> WorkerSpec:
    model = ModelSpec(
        args.model,
        absolute(str(args.model_fn)),
        tuple((c["name"], c["color"]) for c in dataset.classes),
        args.checkpoint,
        absolute(args.state_dir),
    )
    return WorkerSpec(dataset, model, args.weights)


def wait_for_workers(client: Client, args: argparse.Namespace) -> None:
    try:
        client.wait_for_workers(1 if args.scheduler else args.workers, timeout=WORKERS_TIMEOUT_S)
    except TimeoutError:
        where = f"the scheduler at {args.scheduler}" if args.scheduler else "the local cluster"
        raise ClusterError(
            f"no Dask worker joined {where} within {WORKERS_TIMEOUT_S} s (start one: dask worker ADDRESS)"
        ) from None


def prepare_cluster(client: Client, spec: WorkerSpec, loader: DataLoader) -> dict[str, Any]:
    """Check the cluster can make the map, then give its workers the spec; the model's facts."""
    facts = check_cluster(client, spec, [f.path for f in loader.files])
    client.register_plugin(SpecPlugin(spec))
    return facts


def release_cluster(client: Client, spec: WorkerSpec) -> None:
    """Take the spec and what it built off the workers (an outside cluster outlives the map)."""
    try:
        client.unregister_worker_plugin(SpecPlugin(spec).name)
    except ValueError:
        pass  # never registered: the check failed first
    except OSError:
        return  # the scheduler is gone: nothing left to release
    client.run(forget, spec.key, on_error="ignore")


def run(args: argparse.Namespace, timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Make the map the arguments describe; its statistics. `timings` gets start-up and mapping seconds."""
    from tqdm import tqdm

    started = time.perf_counter()
    dataset = dataset_for(args.dataset, args.datasets_json)
    dataset = dataclasses.replace(dataset, paths=[absolute(p) for p in dataset.paths])
    loader = DataLoader(dataset)
    aoi = clip_to_imagery(loader, read_aoi(args.aoi, args.aoi_crs))  # fail fast, before any cluster
    spec = make_spec(args, dataset)
    weights = list(spec.weights) if spec.weights else None
    client: Client | None = None
    cluster: LocalCluster | None = None
    try:
        if args.workers == 0 and not args.scheduler:
            _, model = worker_state(spec)
            facts = model_facts(model)
        else:
            client, cluster = start_client(args)
            wait_for_workers(client, args)
            facts = prepare_cluster(client, spec, loader)  # every worker loads the model, in parallel
        check_weights(weights, facts["n_classes"])
        plan = plan_map(loader, aoi, args.window or facts["window_px"])
        ready = time.perf_counter()
        if client is None:
            results = serial_results(loader, model, plan, weights)
        else:
            results = dask_results(client, spec.key, plan)
        with tqdm(total=len(plan.windows), unit="window", disable=args.quiet, smoothing=0.1) as bar:
            tags = map_tags(args.model, args.model_fn, args.checkpoint, dataset.name)
            stats = render_map(
                plan,
                results,
                outputs_beside(args.out, vector=args.vector),
                facts["classes"],
                on_window=lambda done, total: bar.update(1),
                tags=tags,
            )
        if timings is not None:
            timings.update(
                startup_s=ready - started, map_s=time.perf_counter() - ready, windows=len(plan.windows)
            )
        return stats.to_dict(plan.grid)
    finally:
        if client is not None:
            release_cluster(client, spec)
            client.close()
        if cluster is not None:
            cluster.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.ERROR)  # not every worker start and stop
    timings: dict[str, float] = {}
    try:
        stats = run(args, timings)
    except LandCoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {stats['total_km2']:.3f} km² in {timings['windows']} windows,"
        f" {timings['map_s']:.1f} s (+ {timings['startup_s']:.1f} s start-up)"
    )
    for row in stats["classes"]:
        print(f"  {row['name']:<12} {row['percent']:6.2f} %  {row['km2']:10.4f} km²  {row['pixels']:>12} px")
    return 0


if __name__ == "__main__":  # run the module's own import, so Dask pickles tasks as web_tool.batch.*
    from web_tool.batch import main as _main

    sys.exit(_main())
