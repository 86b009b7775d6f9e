"""Do zoomed-out map tiles stay cheap over imagery without overviews and over many files?

Three datasets of the same generated 1 m imagery (4-band uint8, 20000 x 20000 px, UTM 18N):

- **COG with overviews** (the baseline): one tiled GeoTIFF with internal overviews;
- **COG without overviews**: the same file without them;
- **200-file folder**: the same pixels as 200 tiles of 1000 x 2000 px, without overviews.

A real server process serves each, on a fresh state folder; the three run side by side. Once the
low-resolution caches they build in the background are ready (build times are reported; the two
builds share the machine), every z10–z12 tile over each dataset is fetched over HTTP, `--repeat`
times, all datasets' requests interleaved in one shuffled order so that the machine's load weighs
on each alike. It prints median and p95 tile times, and p95 as a ratio to the COG with overviews
measured in the same run. Aim: every ratio within 3x. One more row shows the file without
overviews on a fresh server while its cache is still being built (tiles then come from a bounded
sample of blocks).

    python bench/tiles.py [--repeat 3] [--data /tmp/landcover-bench-tiles] [--side 20000]

The imagery is generated once into --data (about 1.5 GB, a few minutes) and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mercantile
import numpy as np
from common import REPO, ServerProcess, markdown_table  # common puts the repository on sys.path

ORIGIN = (300_000.0, 4_500_000.0)  # top-left corner, UTM 18N (about 40.6° N, 77.4° W)
CRS = "EPSG:32618"
ZOOMS = (10, 11, 12)
FOLDER_GRID = (10, 20)  # rows x columns of the 200-file folder
BLOCK = 512


def profile(width: int, height: int, left: float, top: float) -> dict:
    from rasterio.transform import from_origin

    return dict(
        driver="GTiff",
        width=width,
        height=height,
        count=4,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(left, top, 1.0, 1.0),
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="deflate",
        predictor=2,
        photometric="MINISBLACK",
        bigtiff="IF_SAFER",
    )


def texture(rows: slice, side: int, seed: int = 0) -> np.ndarray:
    """4 x h x side uint8 of smooth fields and fine grain, the same wherever it is cut."""
    y = np.arange(rows.start, rows.stop, dtype=np.float32)[:, None]
    x = np.arange(side, dtype=np.float32)[None, :]
    out = []
    for b in range(4):
        fields = np.sin(x / (900 + 70 * b)) * np.cos(y / (700 - 50 * b)) + np.sin((x + y) / (230 + 11 * b))
        grain = ((x * 7 + y * 13 + b * 5) % 17) - 8
        out.append(np.clip(120 + 55 * fields + grain, 0, 255).astype(np.uint8))
    return np.stack(out)


def write_big(path: Path, side: int) -> None:
    import rasterio

    with rasterio.open(path, "w", **profile(side, side, *ORIGIN)) as dst:
        for row in range(0, side, 2048):
            rows = slice(row, min(side, row + 2048))
            dst.write(texture(rows, side), window=((rows.start, rows.stop), (0, side)))


def with_overviews(src: Path, dst: Path) -> None:
    import rasterio
    from rasterio.enums import Resampling

    shutil.copyfile(src, dst)
    with rasterio.open(dst, "r+") as ds:
        ds.build_overviews([2, 4, 8, 16, 32, 64, 128], Resampling.average)


def split(src: Path, folder: Path, side: int) -> None:
    import rasterio
    from rasterio.windows import Window

    rows, cols = FOLDER_GRID
    h, w = side // rows, side // cols
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as big:
        for r in range(rows):
            for c in range(cols):
                data = big.read(window=Window(c * w, r * h, w, h))
                left, top = ORIGIN[0] + c * w, ORIGIN[1] - r * h
                with rasterio.open(
                    folder / f"tile_{r:02d}_{c:02d}.tif", "w", **profile(w, h, left, top)
                ) as dst:
                    dst.write(data)


def make_data(root: Path, side: int) -> dict[str, Path]:
    """The three datasets under `root`, generated once."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "plain": root / f"plain_{side}.tif",
        "cog": root / f"cog_{side}.tif",
        "folder": root / f"folder_{side}",
    }
    steps = [
        ("plain", lambda: write_big(paths["plain"], side)),
        ("cog", lambda: with_overviews(paths["plain"], paths["cog"])),
        ("folder", lambda: split(paths["plain"], paths["folder"], side)),
    ]
    for name, make in steps:
        if not paths[name].exists():
            t0 = time.perf_counter()
            tmp = paths[name].with_name(paths[name].name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            paths[name], final = tmp, paths[name]
            make()
            tmp.rename(final)
            paths[name] = final
            print(f"generated {final} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return paths


def tiles_over(bounds_4326: list[float]) -> list[mercantile.Tile]:
    west, south, east, north = bounds_4326
    return [t for z in ZOOMS for t in mercantile.tiles(west, south, east, north, [z])]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=600) as resp:
        return json.load(resp)


def wait_until_ready(urls: dict[str, str], timeout: float = 3600) -> dict[str, float]:
    """Seconds until each server's low-resolution cache is ready (0 when it needs none)."""
    t0, ready = time.perf_counter(), {}
    while len(ready) < len(urls) and time.perf_counter() - t0 < timeout:
        for name, url in urls.items():
            if name not in ready and get_json(url + "/datasets")[0].get("lowres_cache") != "building":
                ready[name] = time.perf_counter() - t0
        time.sleep(0.5)
    if len(ready) < len(urls):
        raise RuntimeError("a low-resolution cache was not ready in time")
    return ready


def time_tiles(requests: list[tuple[str, str, mercantile.Tile]]) -> dict[str, list[float]]:
    """Seconds of each GET /tiles request, in the given order, by dataset name."""
    times: dict[str, list[float]] = {}
    for url, name, t in requests:
        t0 = time.perf_counter()
        with urllib.request.urlopen(f"{url}/tiles/{name}/{t.z}/{t.x}/{t.y}.png", timeout=600) as resp:
            resp.read()
        times.setdefault(name, []).append(time.perf_counter() - t0)
    return times


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def serve(path: Path, state: Path, name: str):
    return ServerProcess(
        "--dataset",
        f"{name}={path}",
        "--state_dir",
        str(state),
        "--model_fn",
        str(REPO / "web_tool" / "data" / "demo_model"),
    )


def measure_ready(data: dict[str, Path], repeat: int) -> dict[str, dict]:
    """All three servers at once, caches built, then their tiles interleaved in a shuffled order, so
    that the machine's load (a shared 2-core machine) weighs on each dataset alike."""
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, path in data.items():
            state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            servers[name] = stack.enter_context(serve(path, state, name))
        built = wait_until_ready({name: srv.url for name, srv in servers.items()})
        tiles = {
            name: tiles_over(get_json(srv.url + "/datasets")[0]["bounds_4326"])
            for name, srv in servers.items()
        }
        time_tiles([(srv.url, name, t) for name, srv in servers.items() for t in tiles[name][:3]])  # warm-up
        requests = [
            (srv.url, name, t) for _ in range(repeat) for name, srv in servers.items() for t in tiles[name]
        ]
        random.Random(0).shuffle(requests)
        times = time_tiles(requests)
    return {name: {"times": times[name], "build_s": built[name], "tiles": len(tiles[name])} for name in data}


def measure_building(path: Path, name: str) -> dict:
    """The file without overviews on a fresh server, its cache building meanwhile: one round."""
    with tempfile.TemporaryDirectory() as state, serve(path, Path(state), name) as srv:
        tiles = tiles_over(get_json(srv.url + "/datasets")[0]["bounds_4326"])
        times = time_tiles([(srv.url, name, t) for t in tiles])[name]
    return {"times": times, "build_s": None, "tiles": len(tiles)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--side", type=int, default=20000)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "landcover-bench-tiles")
    args = parser.parse_args(argv)
    data = make_data(args.data, args.side)
    ready = measure_ready(data, args.repeat)
    runs = {
        "COG with overviews": ready["cog"],
        "COG without overviews": ready["plain"],
        "200-file folder": ready["folder"],
        "without overviews, cache building": measure_building(data["plain"], "plain"),
    }
    base = p95(runs["COG with overviews"]["times"])
    rows = []
    for label, run in runs.items():
        times = run["times"]
        build = "" if run["build_s"] is None else f"{run['build_s']:.0f}"
        rows.append(
            [
                label,
                run["tiles"],
                len(times),
                f"{1000 * statistics.median(times):.0f}",
                f"{1000 * p95(times):.0f}",
                f"{p95(times) / base:.2f}x",
                build,
            ]
        )
    zooms = f"z{ZOOMS[0]}–z{ZOOMS[-1]}"
    print(f"{zooms} tiles over {args.side} x {args.side} px of 1 m imagery, {args.repeat} rounds:\n")
    header = ["dataset", "tiles", "requests", "median ms", "p95 ms", "p95 vs COG", "cache built in s"]
    print(markdown_table(header, rows))
    worst = max(p95(runs[k]["times"]) / base for k in ("COG without overviews", "200-file folder"))
    verdict = "met" if worst <= 3 else "NOT met"
    print(f"\naim: p95 within 3x of the COG with overviews; worst {worst:.2f}x ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
