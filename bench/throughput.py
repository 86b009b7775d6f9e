"""How fast and how lean is large-area mapping? km² per minute and peak memory, one process vs Dask.

For square AOIs of 1, 4 and 16 km² of generated 1 m imagery (4-band random texture in EPSG:32618,
1024 px tiles) it runs `python -m web_tool.batch` in a fresh subprocess three ways over the same
cores: in one process (`--workers 0`), on a LocalCluster (`--workers N`), and on an outside cluster
(`--scheduler`: a `dask scheduler` and N `dask worker --nthreads 1` processes started the ordinary
way from this virtualenv, fresh for each run and not timed). It prints, in one Markdown table: the
mapping time (windows + COG + preview + stats, start-up excluded; start-up shown apart: for the
outside cluster that is connecting, checking the workers and loading the model on them), km² per
minute, the speed as a ratio to the single process on the same AOI, and the peak RSS of all the
processes (driver, Dask workers, the outside cluster's scheduler) as a ratio to the 4 km² run.

Aims: the Dask paths within 15 % of the single-process speed; peak memory at 16 km² within 1.2x of
4 km² (memory must not grow with the area).

    python bench/throughput.py [--quick] [--repeat 3] [--workers 2] [--model_fn MODEL.keras]

The model is --model_fn, else the demo model when it has been built, else a randomly initialised
U-Net of the demo's architecture (the speed depends on the architecture, not on the weights).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import REPO, markdown_table  # common puts the repository on sys.path

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model.keras"
TILE = 1024
ORIGIN = (400_000.0, 4_400_000.0)  # top-left, UTM 18N
SIZES_KM2 = (1, 4, 16)
QUICK_SIZES_KM2 = (0.0625, 0.25, 1)


def write_imagery(folder: Path, side_m: float, seed: int = 0) -> None:
    """Enough 1 m tiles of 4-band random texture (smooth fields + fine grain) to cover side_m x side_m."""
    import cv2
    import rasterio
    from rasterio.transform import from_origin

    n = math.ceil(side_m / TILE)
    rng = np.random.default_rng(seed)
    size = n * TILE
    bands = []
    for _ in range(4):
        coarse = cv2.resize(
            rng.random((n * 8, n * 8), np.float32), (size, size), interpolation=cv2.INTER_CUBIC
        )
        mid = cv2.resize(
            rng.random((n * 64, n * 64), np.float32), (size, size), interpolation=cv2.INTER_LINEAR
        )
        band = 140 * coarse + 70 * mid + rng.normal(0, 8, (size, size)).astype(np.float32)
        bands.append(np.clip(band, 0, 255).astype(np.uint8))
    image = np.stack(bands)
    for r in range(n):
        for c in range(n):
            left, top = ORIGIN[0] + c * TILE, ORIGIN[1] - r * TILE
            profile = dict(
                driver="GTiff",
                width=TILE,
                height=TILE,
                count=4,
                dtype="uint8",
                crs="EPSG:32618",
                transform=from_origin(left, top, 1.0, 1.0),
                tiled=True,
                blockxsize=256,
                blockysize=256,
                compress="deflate",
            )
            with rasterio.open(folder / f"tile_{r}_{c}.tif", "w", **profile) as dst:
                dst.write(image[:, r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE])


def write_aoi(path: Path, km2: float) -> None:
    side = math.sqrt(km2) * 1000
    x0, y1 = ORIGIN[0] + 10, ORIGIN[1] - 10
    ring = [[x0, y1 - side], [x0 + side, y1 - side], [x0 + side, y1], [x0, y1], [x0, y1 - side]]
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))


def standin_model(path: Path) -> None:
    """A small encoder-decoder (2 strided downsamplings, transposed-conv upsampling), random weights."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 4))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    skip = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(skip)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Concatenate()([x, skip])
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(4, 1, name="logits")(x)
    keras.Model(inp, layers.Activation("softmax", name="probs")(x)).save(path)


def servable(model_fn: str) -> bool:
    """Whether the server's model class can run this model (a quick 64 px prediction)."""
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    try:
        model = KerasSegmentationModel(model_fn, [{"name": str(i), "color": "#000000"} for i in range(4)])
        model.predict(np.zeros((64, 64, 4), np.uint8))
        return True
    except Exception as exc:
        print(f"{model_fn} cannot be served ({type(exc).__name__}): using a stand-in model", file=sys.stderr)
        return False


def make_model(folder: Path, model_fn: str | None) -> str:
    """--model_fn, else the built demo model, else a random demo-architecture U-Net, else a stand-in."""
    if model_fn:
        return model_fn
    if DEMO_MODEL.is_file() and servable(str(DEMO_MODEL)):
        return str(DEMO_MODEL)
    try:
        from web_tool.ServerModels.unet import build_unet

        build_unet().save(folder / "unet.keras")
        if servable(str(folder / "unet.keras")):
            return str(folder / "unet.keras")
    except ImportError:
        pass
    standin_model(folder / "standin.keras")
    return str(folder / "standin.keras")


class OutsideCluster:
    """`dask scheduler` + `workers` x `dask worker --nthreads 1` on loopback, as the README starts them."""

    def __init__(self, folder: Path, workers: int):
        from distributed import Client

        folder.mkdir(parents=True, exist_ok=True)
        scheduler_file = folder / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        dask = str(Path(sys.executable).with_name("dask"))
        self.folder = folder
        self.procs = [
            self._start(
                [
                    dask,
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--no-dashboard",
                    "--scheduler-file",
                    str(scheduler_file),
                ]
            )
        ]
        self.address = None
        while self.address is None:  # the scheduler writes its address once it listens
            if self.procs[0].poll() is not None:
                raise RuntimeError("dask scheduler exited at start")
            try:
                self.address = json.loads(scheduler_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        for _ in range(workers):
            self.procs.append(
                self._start(
                    [dask, "worker", self.address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
                )
            )
        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=300)

    def _start(self, cmd: list[str]) -> subprocess.Popen:
        """A process in its own group, in another folder (web_tool comes from the installed package)."""
        return subprocess.Popen(
            cmd,
            cwd=self.folder,
            env=batch_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def close(self) -> None:
        for proc in self.procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            proc.wait(60)


def batch_env() -> dict:
    return {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}


def tree_rss(proc) -> int:
    """RSS of `proc` and all its descendants (Dask workers included), in bytes; 0 once it is gone."""
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # a worker that just exited
            pass
    return total


def run_batch(args: list[str], cluster: OutsideCluster | None = None) -> dict:
    """Run the CLI in a subprocess; its timings (parsed) and the peak RSS of its process tree (and
    of the outside cluster's processes)."""
    import psutil

    cmd = [sys.executable, "-m", "web_tool.batch", *args, "--quiet"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=batch_env()
    )
    watched = [psutil.Process(p.pid) for p in [proc, *(cluster.procs if cluster else [])]]
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(tree_rss(p) for p in watched))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    line = next(ln for ln in out.splitlines() if ln.startswith("wrote "))
    # "wrote PATH: 1.000 km² in 4 windows, 12.3 s (+ 4.5 s start-up)"
    km2 = float(line.split(": ", 1)[1].split(" km²")[0])
    map_s = float(line.split("windows, ")[1].split(" s ")[0])
    startup_s = float(line.split("(+ ")[1].split(" s")[0])
    return {"km2": km2, "map_s": map_s, "startup_s": startup_s, "peak_mb": peak[0] / 2**20}


def summarise(runs: list[dict]) -> dict:
    """Of the runs of one case: the median of each time, the highest peak memory."""
    return {
        **{key: statistics.median(r[key] for r in runs) for key in ("km2", "map_s", "startup_s")},
        "peak_mb": max(r["peak_mb"] for r in runs),
    }


def run_case(tmp: Path, cli: list[str], executor: str, workers: int) -> dict:
    """One run of the CLI with `executor`: "local" (--workers 0 or N) or "outside" (a fresh cluster)."""
    if executor == "local":
        return run_batch([*cli, "--workers", str(workers)])
    cluster = OutsideCluster(tmp / "cluster", workers)
    try:
        return run_batch([*cli, "--scheduler", cluster.address], cluster)
    finally:
        cluster.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny AOIs (1/16 of the sizes): a smoke run")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="Dask workers (both clusters)"
    )
    parser.add_argument("--model_fn", default=None, help="Keras model to map with")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per case: the median time, the highest peak"
    )
    args = parser.parse_args()
    sizes = QUICK_SIZES_KM2 if args.quick else SIZES_KM2
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        tmp = Path(tmp)
        (tmp / "imagery").mkdir()
        print(f"generating {max(sizes):g} km² of 1 m imagery ...", file=sys.stderr)
        write_imagery(tmp / "imagery", math.sqrt(max(sizes)) * 1000 + 20)
        model_fn = make_model(tmp, args.model_fn)
        runs: dict[tuple, list[dict]] = {}
        for km2 in sizes:
            write_aoi(tmp / f"aoi_{km2}.geojson", km2)
            for attempt in range(args.repeat):  # interleaved, so every executor sees the same load
                for name, executor, workers in executors(args.workers):
                    print(f"{km2:g} km², {name}, run {attempt + 1} of {args.repeat} ...", file=sys.stderr)
                    out = tmp / "out" / f"{km2}_{executor}_{workers}.tif"
                    cli = [
                        "--dataset",
                        str(tmp / "imagery"),
                        "--aoi",
                        str(tmp / f"aoi_{km2}.geojson"),
                        "--aoi_crs",
                        "32618",
                        "--model_fn",
                        model_fn,
                        "--out",
                        str(out),
                    ]
                    runs.setdefault((km2, name), []).append(run_case(tmp, cli, executor, workers))
    results = {case: summarise(case_runs) for case, case_runs in runs.items()}
    print(report(results, sizes, args.workers, model_fn))
    return 0


def executors(workers: int) -> list[tuple[str, str, int]]:
    """(table name, how it runs, workers) of each executor compared."""
    return [
        ("1 process", "local", 0),
        (f"LocalCluster {workers} workers", "local", workers),
        (f"outside cluster {workers} workers", "outside", workers),
    ]


def report(results: dict, sizes, workers: int, model_fn: str) -> str:
    names = [name for name, _, _ in executors(workers)]
    ref_size = sizes[1]
    rows = []
    for km2 in sizes:
        for name in names:
            r, base = results[km2, name], results[km2, names[0]]
            speed = r["km2"] / (r["map_s"] / 60)
            rows.append(
                [
                    f"{km2:g}",
                    name,
                    f"{r['map_s']:.1f}",
                    f"{r['startup_s']:.1f}",
                    f"{speed:.2f}",
                    f"{base['map_s'] / r['map_s']:.2f}",
                    f"{r['peak_mb']:.0f}",
                    f"{r['peak_mb'] / results[ref_size, name]['peak_mb']:.2f}",
                ]
            )
    table = markdown_table(
        [
            "AOI km²",
            "executor",
            "map s",
            "start-up s",
            "km²/min",
            "speed vs 1 process",
            "peak RSS MB",
            f"RSS vs {ref_size:g} km²",
        ],
        rows,
    )
    big = sizes[-1]
    speeds = [results[big, names[0]]["map_s"] / results[big, n]["map_s"] for n in names[1:]]
    mem = [results[big, n]["peak_mb"] / results[ref_size, n]["peak_mb"] for n in names]
    notes = [
        "",
        f"{os.cpu_count()} CPU cores; model {Path(model_fn).name}; 1 m pixels; windows sized for the model.",
        f"Dask speed at {big:g} km²: {speeds[0]:.2f}x (LocalCluster), {speeds[1]:.2f}x (outside cluster) the"
        f" single process (aim ≥ 0.85): {'met' if min(speeds) >= 0.85 else 'NOT met'}.",
        f"Peak memory {big:g} km² / {ref_size:g} km²: "
        + ", ".join(f"{m:.2f} ({n})" for m, n in zip(mem, names, strict=True))
        + f" (aim ≤ 1.2): {'met' if max(mem) <= 1.2 else 'NOT met'}.",
    ]
    return table + "\n" + "\n".join(notes)


if __name__ == "__main__":
    sys.exit(main())
