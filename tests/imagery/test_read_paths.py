"""The cheap reads give the pixels the plain warp gives: on the demo scene and on real NAIP.

A read skips the warp for a grid on a file's own pixel lattice, warps an all-valid file's coverage
with its data (one warp, not two), and keeps files open between reads (`raster_pool`). Each is
compared here, pixel for pixel, with the plain path written out below: every file opened afresh,
its window read, its data and its mask warped separately, first file first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from tests.conftest import DEMO_DIR, SHARED, UTM18, four_tiles, make_geotiff
from web_tool.DataLoader import DataLoader, source_window
from web_tool.errors import NoImageryError
from web_tool.geometry import WEB_MERCATOR, Extent, Grid
from web_tool.imagery.datasets import DatasetConfig, from_cli
from web_tool.imagery.raster_pool import RasterPool

DEV_NAIP = SHARED / "data" / "chesapeake-wv-dev" / "naip2014"
ND_NAIP = SHARED / "data" / "naip-nd"


def plain_warp(loader: DataLoader, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """(HxWxB raw values, HxW valid) of every file under `grid`, each opened afresh and warped
    (data bilinear, mask nearest) into the part of `grid` it covers, first file first."""
    data = np.zeros((*grid.shape, len(loader.bands)), loader.dtype)
    valid = np.zeros(grid.shape, bool)
    for f in loader.files_for(grid.extent):
        with rasterio.open(f.path) as src:
            window = source_window(src, grid.extent.to_crs(src.crs))
            cropped = window and grid.crop_to(Extent.from_bounds(src.window_bounds(window), src.crs))
            if not cropped:
                continue
            part_grid, (rows, cols) = cropped
            part = src.read(loader.bands, window=window)
            mask = f.valid_mask(src, part, window, part.shape[1:], loader.config.nodata)
            common = dict(
                src_transform=src.window_transform(window),
                src_crs=src.crs,
                dst_transform=part_grid.transform,
                dst_crs=part_grid.crs,
            )
            out = np.zeros((len(part), *part_grid.shape), part.dtype)
            out_mask = np.zeros(part_grid.shape, np.uint8)
            reproject(part, out, resampling=Resampling.bilinear, **common)
            reproject(mask, out_mask, resampling=Resampling.nearest, **common)
        fill = (out_mask > 0) & ~valid[rows, cols]
        data[rows, cols][fill] = np.moveaxis(out, 0, -1)[fill]
        valid[rows, cols] |= fill
    return data, valid


def grids_over(loader: DataLoader, n: int, seed: int = 0) -> list[Grid]:
    """`n` web-map grids and `n` grids on the files' own lattice, at random places over the files
    (some across their seams or half off the dataset), of 20 to 300 px."""
    rng = np.random.default_rng(seed)
    grids = []
    for _ in range(n):
        x0, y0, x1, y1 = loader.files[rng.integers(len(loader.files))].extent_3857.bounds
        cx, cy = x0 + rng.uniform(-0.2, 1.2) * (x1 - x0), y0 + rng.uniform(-0.2, 1.2) * (y1 - y0)
        half = rng.uniform(10, 150) * loader.resolution_m * 1.3
        extent = Extent(cx - half, cy - half, cx + half, cy + half, crs=WEB_MERCATOR)
        grids += [loader.grid_for(extent).padded(24), loader.native_grid(extent)]
    return grids


def assert_same_as_plain_warp(loader: DataLoader, grids: list[Grid]) -> int:
    """Compare the loader's read with the plain warp on each grid; the pixels compared."""
    compared = 0
    for grid in grids:
        want, want_valid = plain_warp(loader, grid)
        got, got_valid = loader.mosaic(
            grid, loader.files_for(grid.extent), loader.bands, Resampling.bilinear, loader.dtype
        )
        np.testing.assert_array_equal(got_valid, want_valid, err_msg=str(grid))
        np.testing.assert_array_equal(got, want, err_msg=str(grid))
        compared += int(want_valid.sum())
    return compared


@pytest.mark.skipif(not DEMO_DIR.exists(), reason="the demo scene is missing: run `make demo-data`")
def test_the_demo_scene_reads_as_the_plain_warp_gives_it():
    loader = DataLoader(from_cli([f"demo={DEMO_DIR / 'imagery'}"])[0])
    assert all(f.all_valid() for f in loader.files)  # so the one-warp coverage is what is tested
    corner = Extent(325_224 - 150, 4_305_976 - 150, 325_224 + 150, 4_305_976 + 150, crs=UTM18)  # 4 files
    grids = [loader.grid_for(corner.to_crs(WEB_MERCATOR)).padded(24), *grids_over(loader, 12)]
    assert assert_same_as_plain_warp(loader, grids) > 500_000
    assert assert_same_as_plain_warp(loader, grids[:3]) > 0  # again, from the files kept open


@pytest.mark.parametrize("folder", [DEV_NAIP, ND_NAIP], ids=["chesapeake-wv-dev", "naip-nd"])
def test_real_naip_reads_as_the_plain_warp_gives_it(folder):
    if not folder.exists():
        pytest.skip(f"{folder} is absent")
    loader = DataLoader(from_cli([f"naip={folder}"])[0])
    assert assert_same_as_plain_warp(loader, grids_over(loader, 8, seed=1)) > 100_000


def test_a_grid_on_the_files_lattice_reads_their_pixels_as_they_are(tmp_path):
    paths = four_tiles(tmp_path)  # 2 x 2 tiles of 64 m at 1 m, corner at (500064, 4300064)
    loader = DataLoader(DatasetConfig(name="t", paths=[str(p) for p in paths]))
    grid = Grid(UTM18, Affine(1, 0, 499_990, 0, -1, 4_300_100), 110, 60)  # across all four, and off the west
    got, valid = loader.mosaic(grid, loader.files, loader.bands, Resampling.bilinear, loader.dtype)
    want, want_valid = plain_warp(loader, grid)
    np.testing.assert_array_equal(valid, want_valid)
    np.testing.assert_array_equal(got, want)
    assert not valid[:, :10].any() and valid[:, 10:].all()  # the tiles start at x 500000
    with rasterio.open(paths[2]) as src:  # t_10, the south-west tile: its top-left pixel
        assert (got[36, 10] == src.read(window=((0, 1), (0, 1)))[:, 0, 0]).all()


def test_masked_files_keep_their_mask_on_both_paths(tmp_path):
    data = np.full((3, 32, 32), 90, np.uint8)
    data[:, :, :8] = 0  # a black border, declared nodata
    path = make_geotiff(
        tmp_path / "nd.tif", (500_000, 4_300_000, 500_032, 4_300_032), size=(32, 32), data=data, nodata=0
    )
    loader = DataLoader(DatasetConfig(name="t", paths=[str(path)]))
    assert not loader.files[0].all_valid()
    on_lattice = Grid(UTM18, Affine(1, 0, 500_000, 0, -1, 4_300_032), 32, 32)
    web = loader.grid_for(on_lattice.extent.to_crs(WEB_MERCATOR))
    for grid in (web, on_lattice):
        got, valid = loader.mosaic(grid, loader.files, loader.bands, Resampling.bilinear, loader.dtype)
        want, want_valid = plain_warp(loader, grid)
        np.testing.assert_array_equal(valid, want_valid)
        np.testing.assert_array_equal(got, want)
    assert not valid[:, :8].any() and valid[:, 8:].all()  # on the lattice: the border exactly


# --- the pool of open files -------------------------------------------------------------------------


def test_a_file_rewritten_after_a_read_is_read_anew(tmp_path):
    bounds = (500_000, 4_300_000, 500_032, 4_300_032)
    path = make_geotiff(tmp_path / "a.tif", bounds, size=(32, 32), data=np.full((3, 32, 32), 10, np.uint8))
    loader = DataLoader(DatasetConfig(name="t", paths=[str(path)]))
    grid = Grid(UTM18, Affine(1, 0, 500_000, 0, -1, 4_300_032), 32, 32)
    assert loader.read(grid).data.max() > 0  # read: its dataset is now kept open
    make_geotiff(path, bounds, size=(32, 32), data=np.full((3, 32, 32), 200, np.uint8))
    raw, valid = loader.read_imagery(grid, loader.files)
    assert valid.all() and (raw == 200).all()
    path.write_bytes(b"overwritten by a failed copy")
    with pytest.raises(NoImageryError):
        loader.read(grid)


def test_the_pool_lends_a_dataset_to_one_thread_and_keeps_at_most_its_limit(tmp_path):
    paths = four_tiles(tmp_path)
    pool = RasterPool(max_idle=2)
    with pool.open(str(paths[0])) as a, pool.open(str(paths[0])) as b:
        assert a is not b  # both in use at once: two datasets
    assert len(pool) == 2
    with pool.open(str(paths[0])) as again:
        assert again in (a, b) and not again.closed  # an idle one, reused
    for p in paths:
        with pool.open(str(p)):
            pass
    assert len(pool) == 2 and a.closed and b.closed  # the least recently used were closed
    with pytest.raises(RuntimeError), pool.open(str(paths[1])) as failed:
        raise RuntimeError("a read that failed")
    assert failed.closed and len(pool) == 2  # not kept: the two idle ones are still the last two


def test_threads_reading_the_same_files_get_the_same_pixels(tmp_path):
    paths = four_tiles(tmp_path)
    loader = DataLoader(DatasetConfig(name="t", paths=[str(p) for p in paths]))
    grid = loader.grid_for(Extent(500_010, 4_300_010, 500_118, 4_300_118, crs=UTM18).to_crs(WEB_MERCATOR))
    want = loader.read(grid).data
    results, errors = [], []

    def reader():
        try:
            for _ in range(10):
                results.append(loader.read(grid).data)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 40
    assert all(np.array_equal(r, want) for r in results)


def test_the_servers_block_cache_is_bounded_unless_the_environment_says_otherwise(monkeypatch):
    from web_tool.imagery import raster_pool

    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    raster_pool.bound_block_cache()
    assert os.environ["GDAL_CACHEMAX"] == str(raster_pool.BLOCK_CACHE_MB)
    monkeypatch.setenv("GDAL_CACHEMAX", "5%")
    raster_pool.bound_block_cache()
    assert os.environ["GDAL_CACHEMAX"] == "5%"


HAMMER = """
import gc, sys, threading, time
from web_tool.DataLoader import DataLoader
from web_tool.geometry import WEB_MERCATOR, Extent
from web_tool.imagery.datasets import DatasetConfig

loader = DataLoader(DatasetConfig(name="t", paths=sys.argv[1:]))
extents = [
    Extent(500_000 + x, 4_300_000 + x, 500_020 + x, 4_300_020 + x, crs="EPSG:32618").to_crs(WEB_MERCATOR)
    for x in range(0, 120, 3)
]
stop = time.monotonic() + 5
counts = [0] * 8

def look_up(k):
    while time.monotonic() < stop:
        for extent in extents:
            counts[k] += len(loader.files_for(extent)) > 0

threads = [threading.Thread(target=look_up, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
del loader
gc.collect()
print(*counts)  # one line, from this thread only: threads printing at once interleave their words
print("done")
"""


@pytest.mark.slow
def test_threads_looking_up_files_at_once_do_not_crash_the_process(tmp_path):
    """The server's threads find the files of their requests in one rtree index at the same time;
    libspatialindex is not thread-safe even for queries, and unguarded this crashed the process
    (a segfault) within seconds under a page's burst of tile requests. In a subprocess: a crash
    here must not take the test run with it."""
    paths = [str(p) for p in four_tiles(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", HAMMER, *paths], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, f"exit status {done.returncode}: {done.stderr[-2000:]}"
    counts, last = [line.split() for line in done.stdout.splitlines()]
    assert last == ["done"] and len(counts) == 8
    assert all(int(found) > 100 for found in counts)  # every thread looked files up, and found them
