"""Zoomed-out reads: a large file without overviews, and a folder of many files, get a low-resolution
copy in the state folder, built once; until then reads of the bare file are a bounded sample."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from tests.conftest import UTM18, make_geotiff
from web_tool.DataLoader import DataLoader
from web_tool.geometry import Extent, Grid
from web_tool.imagery import overviews
from web_tool.imagery.datasets import DatasetConfig
from web_tool.imagery.rasterfiles import SMALL_FILE_PX

X0, Y0 = 500_000, 4_300_000
SIDE = SMALL_FILE_PX + 512  # large enough to need overviews


def smooth(side: int, bands: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    return np.stack(
        [(np.sin(xx / (60 + 9 * b)) + np.cos(yy / 45) + 2) * 60 + 8 for b in range(bands)]
    ).astype(np.uint8)


@pytest.fixture(scope="module")
def bare_file(tmp_path_factory):
    """A 2560 px GeoTIFF of 128 px blocks (20 x 20 of them) without overviews."""
    from rasterio.transform import from_origin

    path = tmp_path_factory.mktemp("bare") / "bare.tif"
    profile = dict(
        driver="GTiff",
        width=SIDE,
        height=SIDE,
        count=4,
        dtype="uint8",
        crs=UTM18,
        transform=from_origin(X0, Y0 + SIDE, 1, 1),
        tiled=True,
        blockxsize=128,
        blockysize=128,
        compress="deflate",
        photometric="MINISBLACK",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(smooth(SIDE))
    return path


def coarse_grid(factor: int = 8, side: int = SIDE) -> Grid:
    """A grid over the whole file `factor` times coarser than it (a zoomed-out tile)."""
    return Grid.covering(Extent(X0, Y0, X0 + side, Y0 + side, crs=UTM18), float(factor))


def loader_for(paths) -> DataLoader:
    return DataLoader(DatasetConfig("d", [str(p) for p in paths]))


def true_average(factor: int = 8) -> np.ndarray:
    return np.moveaxis(
        smooth(SIDE).reshape(4, SIDE // factor, factor, SIDE // factor, factor).mean(axis=(2, 4)), 0, -1
    )


def test_a_bounded_read_touches_at_most_the_blocks_it_may():
    from rasterio.windows import Window

    from web_tool.DataLoader import bounded_shape

    window = Window(0, 0, 20_000, 20_000)  # a whole 20000 px file of 512 px blocks: 40 x 40 blocks
    shape, cut = bounded_shape((256, 256), window, (512, 512), 256)
    assert cut and shape[0] * shape[1] <= 256
    assert bounded_shape((256, 256), Window(0, 0, 1024, 1024), (512, 512), 256) == ((256, 256), False)
    shape, cut = bounded_shape((64, 640), Window(0, 0, 5120, 51200), (512, 512), 256)
    assert cut and min(shape[0], 10) * min(shape[1], 100) <= 256


def test_a_large_file_without_overviews_is_sampled_within_a_pixel_budget(bare_file):
    from rasterio.enums import Resampling

    loader = loader_for([bare_file])
    assert overviews.reason_for(loader).startswith("1 large file(s) without overviews")
    grid, budget = coarse_grid(), 16 * 128 * 128  # 16 of the file's 400 blocks
    raw, valid = loader.mosaic(grid, loader.files, loader.bands, Resampling.bilinear, loader.dtype, budget)
    assert valid.all()
    assert np.abs(raw.astype(float) - true_average()).mean() > 1  # a sample, not the exact average
    assert smooth(SIDE).min() <= raw.min() and raw.max() <= smooth(SIDE).max()
    within = loader.read(grid)  # the whole file is within the default budget: read in full
    assert np.abs(within.data.astype(float) - true_average()).mean() < 1.5
    fine = loader.read(Grid.covering(Extent(X0, Y0, X0 + 64, Y0 + 64, crs=UTM18), 1.0))
    np.testing.assert_array_equal(fine.data, np.moveaxis(smooth(SIDE)[:, -64:, :64], 0, -1))


def test_the_copy_is_built_in_the_state_folder_and_serves_zoomed_out_reads(bare_file, tmp_path):
    loader = loader_for([bare_file])
    overviews.prepare(loader, tmp_path, background=False)
    assert loader.lowres_state == "ready" and loader.describe()["lowres_cache"] == "ready"
    (copy,) = tmp_path.glob("lowres-*.tif")
    grid = coarse_grid()
    from_copy = loader.read(grid).data.astype(int)
    assert np.abs(from_copy - true_average()).mean() < 1.5  # a faithful average, not a sample
    # served from the copy: it works without the original file, while native reads need it
    hidden = bare_file.with_suffix(".hidden")
    bare_file.rename(hidden)
    try:
        np.testing.assert_array_equal(loader.read(grid).data, from_copy)
    finally:
        hidden.rename(bare_file)
    again = loader_for([bare_file])
    assert overviews.prepare(again, tmp_path) is None and again.lowres_state == "ready"  # found, not rebuilt
    assert list(tmp_path.glob("lowres-*.tif")) == [copy]


def test_a_folder_of_many_files_serves_low_zooms_from_one_mosaic(tmp_path):
    data = smooth(640)
    paths = []
    for r in range(5):
        for c in range(5):  # 25 files of 128 x 128 px
            tile = data[:, r * 128 : (r + 1) * 128, c * 128 : (c + 1) * 128]
            left, top = X0 + c * 128, Y0 + 640 - r * 128
            paths.append(
                make_geotiff(
                    tmp_path / "tiles" / f"t{r}{c}.tif",
                    (left, top - 128, left + 128, top),
                    size=(128, 128),
                    data=tile,
                )
            )
    loader = loader_for(paths)
    assert overviews.reason_for(loader) == "25 files (a zoomed-out tile would open many of them)"
    grid = coarse_grid(4, 640)
    direct = loader.read(grid).data.astype(int)
    overviews.prepare(loader, tmp_path / "cache", background=False)
    assert loader.lowres.file.path.startswith(str(tmp_path / "cache"))
    mosaic = loader.read(grid)
    assert mosaic.valid.all() and np.abs(mosaic.data.astype(int) - direct).mean() < 3


def test_small_datasets_need_no_copy(tiny_dataset_dir, tmp_path):
    loader = loader_for(sorted(tiny_dataset_dir.glob("*.tif")))
    assert overviews.prepare(loader, tmp_path) is None and loader.lowres_state is None
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_the_server_warns_and_builds_the_copy_in_the_background(bare_file, tmp_path, caplog):
    from tests.test_startup import save, small_network, start

    model = save(small_network(), tmp_path / "m.keras")
    srv = start(tmp_path, model, specs=[f"bare={bare_file.parent}"])
    try:
        assert "has 1 large file(s) without overviews" in caplog.text and "gdaladdo" in caplog.text
        threads = [t for t in __import__("threading").enumerate() if t.name == "lowres-bare"]
        for t in threads:
            t.join(120)
        assert srv.config.loaders["bare"].lowres_state == "ready"
        assert list((tmp_path / "state" / "imagery").glob("lowres-*.tif"))
    finally:
        srv.close()
