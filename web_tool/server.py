"""Serve the land-cover mapping tool: the Leaflet app and its JSON API, in one process.

    python web_tool/server.py --model nips_hr --model_fn web_tool/data/demo_model \
        --fine_tune last_layer --port 4444

`main()` parses the command line, loads and checks datasets and the model (`startup.py`), and
serves `web_tool.http.app.make_app(config)` with a threaded WSGI server (waitress).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package, not sibling modules
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    # numpy's BLAS threads fight TensorFlow's for 2 cores; small matrix work runs best on one
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging

from web_tool import startup
from web_tool.DataLoader import MAX_PATCH_PIXELS
from web_tool.errors import ConfigError, LandCoverError
from web_tool.geometry import MAX_VERTICES
from web_tool.http import admission, api, auth, memory, origins
from web_tool.http.app import make_app
from web_tool.http.config import AppConfig
from web_tool.http.origins import is_loopback
from web_tool.http.wsgi_server import make_server
from web_tool.imagery import datasets as dataset_config
from web_tool.imagery import raster_pool
from web_tool.learning.sessions import IDLE_S, MAX_CLASSES, MAX_SESSIONS, SessionManager
from web_tool.learning.training_data import replay_path
from web_tool.mapping.jobs import JOB_WORKERS, MAX_QUEUED_JOBS, MAX_TILE_KM2, JobManager
from web_tool.paths import DATASETS_JSON, DEMO_MODEL, STATE_DIR
from web_tool.ServerModels import list_models
from web_tool.validate.samples import MAX_SAMPLE_POINTS, SampleStore

log = logging.getLogger("web_tool")

FINE_TUNE_CHOICES = ("last_layer", "last_k_layers")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python web_tool/server.py",
        description="Serve the land-cover mapping tool (web app + JSON API) on one port.",
        epilog=startup.MODEL_CONTRACT,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="nips_hr",
        choices=list_models(),
        help="which ServerModel class serves the model: nips_hr/nips_sr/keras serve the"
        " Keras network --model_fn; features needs no weights (any band count) and"
        " learns everything from corrections",
    )
    parser.add_argument(
        "--model_fn",
        default=str(DEMO_MODEL),
        help="Keras model: a .keras or .h5 file, or the seed's <name>.json +"
        " <name>_weights.h5 pair; the extension may be left off",
    )
    parser.add_argument(
        "--fine_tune",
        default="last_layer",
        choices=FINE_TUNE_CHOICES,
        help="how /retrainModel learns from corrections: last_layer replaces the model's"
        " last layer by a forest over its features and the imagery's filter bank"
        " (any model, well under a second); last_k_layers backpropagates through the"
        " last K layers of a Keras network (seconds)",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=("float32", "bf16"),
        help="arithmetic of the network: bf16 (Keras mixed_bfloat16) is faster on CPUs"
        " with bf16 instructions (AVX512-BF16, AMX, Arm BF16) for wide networks; on"
        " others the server says so and computes in float32",
    )
    parser.add_argument(
        "--fine_tune_layers",
        type=int,
        default=2,
        metavar="K",
        help="last_k_layers: weighted layers to tune (the head counts as one)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 0.0.0.0 accepts connections from other machines"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="shared secret every API call must send as 'Authorization: Bearer <token>';"
        f" safer in the environment variable {auth.TOKEN_ENV} (not shown by ps)."
        " Without one there is no auth: keep --host on loopback",
    )
    parser.add_argument("--port", type=int, default=4444, help="port to listen on")
    parser.add_argument(
        "--cors_origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another page's origin (scheme://host:port) that may call this server, e.g."
        " the server whose page lists this one in endpoints.js; repeatable. Without"
        " a token only the server's own page and these may call it",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="imagery to serve: a GeoTIFF/COG/VRT file, a directory, a glob or an"
        " https/s3/gs URL (read where it lives);"
        " repeat for several datasets (the first is the default)."
        " Without it, --datasets_json is read",
    )
    parser.add_argument(
        "--datasets_json",
        default=str(DATASETS_JSON),
        help="named datasets: band order, scaling, nodata, classes, the resolution to serve at (see README)",
    )
    parser.add_argument(
        "--state_dir",
        default=str(STATE_DIR),
        help="where sessions, corrections, checkpoints and exports are kept",
    )
    parser.add_argument(
        "--max_body_mb",
        type=float,
        default=api.MAX_BODY_BYTES / 2**20,
        help="largest request body in MiB (GeoJSON polygons make bodies grow)",
    )
    parser.add_argument(
        "--max_patch_pixels",
        type=int,
        default=MAX_PATCH_PIXELS,
        help="largest /predPatch or /getInput extent, in pixels",
    )
    parser.add_argument(
        "--max_tile_km2",
        type=float,
        default=MAX_TILE_KM2,
        help="largest /predTile area in km² (the batch CLI has no cap)",
    )
    parser.add_argument(
        "--max_sessions",
        type=int,
        default=MAX_SESSIONS,
        help="sessions kept in memory; the least recently used idle ones are let go"
        " (their corrections and model stay on disk)",
    )
    parser.add_argument(
        "--session_idle_minutes",
        type=float,
        default=IDLE_S / 60,
        help="a session unused this long is let go from memory (and reloads on its next call)",
    )
    parser.add_argument(
        "--job_workers",
        type=int,
        default=JOB_WORKERS,
        help="/predTile jobs that run at once; later ones wait in the queue",
    )
    parser.add_argument(
        "--max_queued_jobs",
        type=int,
        default=MAX_QUEUED_JOBS,
        help="jobs that may wait; beyond this /predTile answers 503",
    )
    parser.add_argument(
        "--max_sample_points",
        type=int,
        default=MAX_SAMPLE_POINTS,
        help="most points of one validation sample of a finished map",
    )
    parser.add_argument(
        "--max_vertices",
        type=int,
        default=MAX_VERTICES,
        help="most vertices of a GeoJSON area in /recordCorrection or /predTile",
    )
    parser.add_argument(
        "--max_classes",
        type=int,
        default=MAX_CLASSES,
        help="most classes a session may have (/addClass); at most 254, since exports"
        " write class indices as bytes with 255 for nodata",
    )
    parser.add_argument(
        "--max_heavy",
        type=int,
        default=admission.HEAVY_SLOTS,
        help="heavy requests (predictions, retrains) that run at once; corrections,"
        " tiles and /health never wait for them",
    )
    parser.add_argument(
        "--max_waiting",
        type=int,
        default=admission.MAX_WAITING,
        help="heavy requests that may wait for their turn; beyond them: 503 with Retry-After",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=16,
        help=f"HTTP worker threads; at least max_heavy + max_waiting + {admission.LIGHT_THREADS}",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="log every request (its route, never the ids or tokens in its URL)",
    )
    return parser.parse_args(argv)


def batch_dataset_args(args: argparse.Namespace, names: list[str]) -> dict[str, list[str]]:
    """How the batch CLI names each dataset: `--dataset [NAME=]PATH` whole, as the server was given it
    (a URL's own "=" included), or the name in --datasets_json."""
    if not args.dataset:
        return {n: ["--dataset", n, "--datasets_json", args.datasets_json] for n in names}
    return {dataset_config.cli_name(spec, i): ["--dataset", spec] for i, spec in enumerate(args.dataset)}


def build_config(args: argparse.Namespace) -> AppConfig:
    """Load datasets and the model named by the command line."""
    check_limits(args)
    loaders, model = startup.load(args)
    dataset_args = batch_dataset_args(args, list(loaders))
    replay = replay_path(args.model_fn) if model.trained else None  # a model without weights has none
    gate = admission.Gate(args.max_heavy, args.max_waiting)
    sessions = SessionManager(
        model,
        args.state_dir,
        args.fine_tune,
        replay,
        options={"k": args.fine_tune_layers},
        max_sessions=args.max_sessions,
        idle_s=args.session_idle_minutes * 60,
        gate=gate,
    )
    jobs = JobManager(
        Path(args.state_dir),
        max_km2=args.max_tile_km2,
        workers=args.job_workers,
        max_queued=args.max_queued_jobs,
        owner=sessions.owner,
    )
    return AppConfig(
        loaders=loaders,
        model=model,
        fine_tune=args.fine_tune,
        state_dir=Path(args.state_dir),
        sessions=sessions,
        jobs=jobs,
        max_body_bytes=int(args.max_body_mb * 2**20),
        validation=SampleStore(args.state_dir, max_points=args.max_sample_points),
        token=args.token or os.environ.get(auth.TOKEN_ENV),
        model_kind=args.model,
        model_fn=args.model_fn,
        dataset_args=dataset_args,
        host=args.host,
        cors_origins=tuple(args.cors_origin),
        max_vertices=args.max_vertices,
        max_classes=args.max_classes,
        gate=gate,
    )


def check_limits(args: argparse.Namespace) -> None:
    """ConfigError for flags that cannot work together, before anything is loaded."""
    try:
        for origin in args.cors_origin:
            origins.parse_origin(origin)
        admission.check_threads(args.threads, args.max_heavy, args.max_waiting)
    except ValueError as exc:
        raise ConfigError(f"{exc}") from None
    if not 1 <= args.max_classes <= MAX_CLASSES:
        raise ConfigError(f"--max_classes must be between 1 and {MAX_CLASSES}, got {args.max_classes}")
    if args.max_heavy < 1 or args.max_waiting < 0 or args.max_vertices < 4:
        raise ConfigError(
            "--max_heavy must be at least 1, --max_waiting at least 0 and --max_vertices at least 4"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raster_pool.bound_block_cache()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = build_config(args)
    except LandCoverError as exc:
        log.error("%s", exc)
        return 2
    memory.keep_memory_bounded()
    app = make_app(config)
    if args.verbose:
        app.add_hook("after_request", api.log_request)
    log.info(
        "model %r (%d classes); serving on http://%s:%d/",
        config.model.name,
        config.model.n_classes,
        args.host,
        args.port,
    )
    if not config.token and not is_loopback(args.host):
        log.warning("serving %s without --token: anyone who can reach this port can use the API", args.host)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # channel_request_lookahead: routes may ask waitress.client_disconnected() and skip abandoned work
    make_server(
        app,
        host=args.host,
        port=args.port,
        threads=args.threads,
        ident="landcover",
        max_body_bytes=config.max_body_bytes,
        channel_request_lookahead=4,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
