"""DataLoader on tiny generated rasters: mosaics, nodata, CRSs, coverage, limits, corrupt files."""

import numpy as np
import pytest
import rasterio
import rasterio.warp

from tests.conftest import four_tiles, make_geotiff
from web_tool.DataLoader import DataLoader
from web_tool.errors import ConfigError, NoImageryError, TooLargeError
from web_tool.geometry import Extent, Grid, parse_crs
from web_tool.imagery.datasets import DatasetConfig, expand_paths

UTM = parse_crs(32618)


def loader_for(paths, **kwargs):
    return DataLoader(DatasetConfig(name="t", paths=[str(p) for p in paths]), **kwargs)


def read_native(paths, grid):
    """What the files hold on `grid` when it lies on their own lattice (no resampling)."""
    out = np.zeros((*grid.shape, 4), np.uint8)
    for p in paths:
        with rasterio.open(p) as src:
            win = rasterio.windows.from_bounds(*grid.extent.bounds, transform=src.transform)
            data = src.read(window=win.round_offsets().round_lengths(), boundless=True, fill_value=0)
            out = np.where(out == 0, np.moveaxis(data, 0, -1), out)
    return out


def test_a_read_across_four_tiles_mosaics_them_seamlessly(tmp_path):
    paths = four_tiles(tmp_path)  # 2x2 tiles of 64 m, corner at (500064, 4300064)
    loader = loader_for(paths)
    grid = Grid.covering(Extent(500_032, 4_300_032, 500_096, 4_300_096, crs=UTM), 1.0)
    patch = loader.read(grid)
    assert patch.valid.all()
    np.testing.assert_array_equal(patch.data, read_native(paths, grid))
    assert len(loader.files_for(grid.extent)) == 4


def test_reading_into_web_mercator_covers_the_extent_at_native_resolution(tmp_path):
    loader = loader_for(four_tiles(tmp_path))
    ext = Extent(500_020, 4_300_020, 500_100, 4_300_100, crs=UTM).to_crs(parse_crs(3857))
    grid = loader.grid_for(ext)
    # 80 m on the ground at 1 m: about 80 px each way, whatever the mercator stretch
    assert 75 <= grid.width <= 90 and 75 <= grid.height <= 90
    patch = loader.read(grid)
    assert patch.data.shape == (grid.height, grid.width, 4)
    assert patch.valid.mean() > 0.95


def test_nodata_pixels_are_invalid(tmp_path):
    data = np.full((4, 32, 32), 120, np.uint8)
    data[:, :, :16] = 0
    path = make_geotiff(
        tmp_path / "nd.tif", (500_000, 4_300_000, 500_032, 4_300_032), nodata=0, data=data, size=(32, 32)
    )
    loader = loader_for([path])
    patch = loader.read(Grid.covering(Extent(500_000, 4_300_000, 500_032, 4_300_032, crs=UTM), 1.0))
    assert not patch.valid[:, :15].any()
    assert patch.valid[:, 17:].all()
    assert (patch.data[:, 17:] == 120).all()


def test_geographic_rasters_are_read_and_reported_in_metres(tmp_path):
    # 0.001 degree pixels at ~45 N: about 111 m x 79 m
    path = make_geotiff(tmp_path / "geo.tif", (-90.0, 45.0, -89.9, 45.1), crs=4326, size=(100, 100))
    loader = loader_for([path])
    assert 70 < loader.resolution_m < 120
    ext = Extent(-89.99, 45.01, -89.95, 45.05, crs=parse_crs(4326))
    patch = loader.read(loader.grid_for(ext))
    assert patch.valid.all()
    assert loader.describe()["crs"] == "EPSG:4326"


def test_out_of_coverage_raises_no_imagery_with_the_coverage(tmp_path):
    loader = loader_for(four_tiles(tmp_path))
    far = Extent(0, 0, 100, 100, crs=parse_crs(3857))
    with pytest.raises(NoImageryError, match="here: it covers latitudes"):
        loader.read(loader.grid_for(far))


def test_partly_covered_extent_marks_the_rest_invalid(tmp_path):
    loader = loader_for(four_tiles(tmp_path))
    grid = Grid.covering(Extent(499_968, 4_300_000, 500_064, 4_300_064, crs=UTM), 1.0)
    patch = loader.read(grid)
    assert patch.valid[:, 40:].all() and not patch.valid[:, :28].any()


def test_too_large_extent_is_refused_before_reading(tmp_path):
    loader = loader_for(four_tiles(tmp_path), max_pixels=1000)
    ext = Extent(500_000, 4_300_000, 500_100, 4_300_100, crs=UTM)
    with pytest.raises(TooLargeError, match="limit is 1000 px"):
        loader.grid_for(ext)


def test_corrupt_files_are_skipped_with_a_warning(tmp_path, caplog):
    paths = four_tiles(tmp_path)
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"II*\x00 this is not a tiff")
    loader = loader_for([*paths, bad])
    assert len(loader.files) == 4
    assert "corrupt.tif" in caplog.text


def test_a_dataset_with_no_readable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(b"nothing")
    with pytest.raises(ConfigError, match="no readable rasters"):
        loader_for([bad])


def test_native_grid_lies_on_the_file_lattice(tmp_path):
    loader = loader_for(four_tiles(tmp_path))
    grid = loader.native_grid(Extent(500_010.3, 4_300_010.7, 500_012.2, 4_300_011.1, crs=UTM))
    assert grid.crs == UTM
    assert grid.transform.c == 500_010 and grid.transform.f == 4_300_012
    assert grid.shape == (2, 3)


def test_expand_paths_takes_files_folders_and_globs(tmp_path):
    paths = four_tiles(tmp_path)
    assert expand_paths(tmp_path) == sorted(map(str, paths))
    assert expand_paths(str(tmp_path / "t_0*.tif")) == sorted(map(str, paths[:2]))
    assert expand_paths(paths[0]) == [str(paths[0])]
    assert expand_paths(tmp_path / "missing.tif") == []


@pytest.mark.parametrize("x0", [500_020, 500_040, 500_050])
def test_reads_across_tile_edges_match_the_ground_truth_pattern(tmp_path, x0):
    loader = loader_for(four_tiles(tmp_path))
    grid = Grid.covering(Extent(x0, 4_300_040, x0 + 50, 4_300_090, crs=UTM), 1.0)
    cols, rows = np.meshgrid(np.arange(grid.width), np.arange(grid.height))
    xs, ys = grid.transform.c + cols + 0.5, grid.transform.f - rows - 0.5
    truth = np.stack([(xs * 7 + ys * 3 + 40 * b) % 250 + 1 for b in range(4)], -1).astype(np.uint8)
    np.testing.assert_array_equal(loader.read(grid).data, truth)


def test_the_map_opens_on_imagery_when_the_files_lie_far_apart(tmp_path):
    """Two patches 10 km apart: the middle of their bounds is empty, so the map opens on the one
    nearer to it; one patch: on its middle."""
    west = make_geotiff(tmp_path / "w.tif", (500000, 4100000, 500640, 4100640))
    east = make_geotiff(tmp_path / "e.tif", (510000, 4100000, 510960, 4100960))
    loader = DataLoader(DatasetConfig("apart", [str(west), str(east)]))
    lng, lat = loader.describe()["start_4326"]
    (x,), (y,) = rasterio.warp.transform("EPSG:4326", loader.crs, [lng], [lat])
    assert 510000 < x < 510960 and 4100000 < y < 4100960  # inside the larger patch, the nearer one
    lng, lat = DataLoader(DatasetConfig("one", [str(west)])).describe()["start_4326"]
    (x,), (y,) = rasterio.warp.transform("EPSG:4326", loader.crs, [lng], [lat])
    assert x == pytest.approx(500320, abs=1) and y == pytest.approx(4100320, abs=1)
