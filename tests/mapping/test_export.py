"""export: COG validity and contents, preview, statistics, and pixel areas right for each kind of CRS."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box

from web_tool.DataLoader import DataLoader
from web_tool.geometry import WEB_MERCATOR, WGS84, Grid
from web_tool.imagery.datasets import DEFAULT_CLASSES, DatasetConfig
from web_tool.mapping import export
from web_tool.mapping.pipeline import AOI, ClassMapWriter, export_all, outputs_beside, plan_map, render_map

UTM = CRS.from_epsg(32618)
GEOD = pyproj.Geod(ellps="WGS84")


def geodesic_km2(lon0, lat0, lon1, lat1) -> float:
    """Area of a lon/lat box (edges densified so they follow the parallels)."""
    lons = np.r_[np.linspace(lon0, lon1, 200), np.linspace(lon1, lon0, 200)]
    lats = np.r_[np.full(200, lat0), np.full(200, lat1)]
    return abs(GEOD.polygon_area_perimeter(lons, lats)[0]) / 1e6


def test_projected_pixel_area_comes_from_the_transform_in_metres():
    grid = Grid(UTM, Affine(2.0, 0, 500_000, 0, -0.5, 4_300_000), 10, 7)
    assert export.row_areas_km2(grid) == pytest.approx(np.full(7, 1e-6))
    feet = CRS.from_epsg(2263)  # NY Long Island, US survey feet
    grid_ft = Grid(feet, Affine(1.0, 0, 1_000_000, 0, -1.0, 200_000), 4, 4)
    assert export.row_areas_km2(grid_ft)[0] == pytest.approx(0.3048006**2 / 1e6, rel=1e-5)


@pytest.mark.parametrize("lat", [0.0, 38.8, 71.5, -45.0])
def test_geographic_row_areas_match_the_ellipsoid(lat):
    res = 0.001
    grid = Grid(WGS84, Affine(res, 0, -75.0, 0, -res, lat + 0.05), 100, 100)
    rows = export.row_areas_km2(grid)
    assert rows.sum() * grid.width == pytest.approx(
        geodesic_km2(-75.0, lat - 0.05, -74.9, lat + 0.05), rel=1e-4
    )
    assert rows[0] != rows[-1] or lat == 0.0  # the area changes with latitude


def test_web_mercator_row_areas_are_ground_areas_not_projected_ones():
    # 100 m web-mercator pixels at 60°N cover about 50 m x 50 m of ground: 4 km² projected, ~1 km² real
    lat = 60.0
    x0, y0 = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(10.0, lat)
    grid = Grid(WEB_MERCATOR, Affine(100.0, 0, x0, 0, -100.0, y0), 20, 20)
    lon1, lat1 = pyproj.Transformer.from_crs(3857, 4326, always_xy=True).transform(x0 + 2000, y0 - 2000)
    total = export.row_areas_km2(grid).sum() * grid.width
    assert total == pytest.approx(geodesic_km2(10.0, lat1, lon1, lat), rel=1e-4)
    assert total == pytest.approx(4.0 * np.cos(np.radians(lat)) ** 2, rel=0.01)


def test_class_stats_count_pixels_and_km2_and_ignore_nodata():
    stats = export.ClassStats(DEFAULT_CLASSES)
    window = np.array([[0, 1, 255], [1, 1, 3]], dtype=np.uint8)
    stats.add(window, np.array([1.0, 2.0]))
    rows = stats.rows()
    assert [r["pixels"] for r in rows] == [1, 3, 0, 1]
    assert [r["km2"] for r in rows] == pytest.approx([1.0, 5.0, 0.0, 2.0])
    assert sum(r["percent"] for r in rows) == pytest.approx(100)
    table = list(csv.DictReader(io.StringIO(stats.to_csv())))
    assert [r["name"] for r in table] == ["Water", "Forest", "Field", "Built"] and table[1]["pixels"] == "3"


def test_overview_levels_reach_small_sizes_and_are_at_least_one():
    assert export.overview_levels(100, 60) == 1
    assert export.overview_levels(4000, 3000) == 4  # 4000 / 2**4 = 250
    assert export.overview_levels(1, 1) == 1


def write_class_tif(path, grid, data):
    with ClassMapWriter(path, grid, DEFAULT_CLASSES, block_px=64) as writer:
        writer.write(rasterio.windows.Window(0, 0, grid.width, grid.height), data)
    return writer.stats


def test_cog_is_valid_with_colour_map_overviews_nodata_crs_and_transform(tmp_path):
    grid = Grid(UTM, Affine(1.0, 0, 500_000, 0, -1.0, 4_301_000), 700, 500)
    data = (np.arange(700)[None, :] // 100 % 4).repeat(500, 0).astype(np.uint8)
    data[:50] = export.NODATA
    stats = write_class_tif(tmp_path / "classes.tif", grid, data)
    outputs = outputs_beside(tmp_path / "out" / "map.tif")
    export_all(tmp_path / "classes.tif", outputs, DEFAULT_CLASSES, stats, grid)
    valid, errors, warnings = cog_validate(str(outputs["cog"]))
    assert valid and not errors, errors
    with rasterio.open(outputs["cog"]) as src:
        assert src.crs == UTM and src.transform == grid.transform and src.nodata == 255
        assert src.overviews(1) == [2, 4] and src.is_tiled
        assert src.colormap(1)[3] == (128, 96, 96, 255) and src.colormap(1)[255][3] == 0
        assert json.loads(src.tags()["CLASSES"]) == ["Water", "Forest", "Field", "Built"]
        assert (src.read(1) == data).all()
    saved = json.loads(outputs["stats_json"].read_text())
    assert saved["total_pixels"] == 700 * 450 and saved["crs"] == "EPSG:32618"
    assert sorted(p.name for p in outputs["cog"].parent.iterdir()) == [
        "map.png",
        "map.qml",
        "map.tif",
        "map.tif.aux.xml",
        "map_stats.csv",
        "map_stats.json",
    ]


def test_preview_is_small_rgba_and_transparent_on_nodata(tmp_path):
    grid = Grid(UTM, Affine(1.0, 0, 500_000, 0, -1.0, 4_303_000), 3000, 1500)
    data = np.full((1500, 3000), 2, dtype=np.uint8)
    data[:, :1500] = export.NODATA
    write_class_tif(tmp_path / "classes.tif", grid, data)
    with rasterio.open(tmp_path / "classes.tif") as src:
        export.write_cog(src, tmp_path / "map.tif", DEFAULT_CLASSES)
    with rasterio.open(tmp_path / "map.tif") as cog:
        rgba = export.preview_rgba(cog, DEFAULT_CLASSES)
    assert rgba.shape == (512, 1024, 4)
    assert (rgba[:, :500, 3] == 0).all() and (rgba[:, 520:] == (128, 255, 128, 255)).all()


def test_geographic_dataset_statistics_give_ellipsoidal_km2(tmp_path, geotiff_factory):
    # 0.01° x 0.01° tiles at 60°N, 0.0001° pixels; the AOI is a pixel-aligned box inside
    path = geotiff_factory("geo.tif", (10.0, 60.0, 10.01, 60.01), crs=4326, size=(100, 100))
    loader = DataLoader(DatasetConfig("geo", [str(path)]))

    class Uniform:
        padding, classes, n_classes = 2, DEFAULT_CLASSES, 4

        def predict(self, image):
            probs = np.zeros((*image.shape[:2], 4), np.float32)
            probs[..., 1] = 1
            return probs

    aoi = AOI(box(10.002, 60.001, 10.008, 60.009), WGS84)
    plan = plan_map(loader, aoi, window_px=32)
    from web_tool.mapping.pipeline import serial_results

    stats = render_map(
        plan,
        serial_results(loader, Uniform(), plan),
        outputs_beside(tmp_path / "geo_map.tif"),
        DEFAULT_CLASSES,
    )
    expected = geodesic_km2(10.002, 60.001, 10.008, 60.009)
    assert stats.pixels[1] == 60 * 80
    assert stats.km2.sum() == pytest.approx(expected, rel=1e-4)
    assert stats.rows()[1]["percent"] == pytest.approx(100)
