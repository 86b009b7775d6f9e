"""What a finished map carries for GIS software: class names GDAL reads (category names and an
attribute table), the model and checkpoint in its tags, a QGIS style, a web-map overlay, and class
polygons (GeoPackage and GeoJSON) with their areas."""

from __future__ import annotations

import ctypes
import glob
import json
import os
import xml.etree.ElementTree as ET

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely import from_wkb

from web_tool.geometry import Grid
from web_tool.mapping import export
from web_tool.mapping.pipeline import ClassMapWriter, export_all, outputs_beside

UTM = CRS.from_epsg(32618)
CLASSES = [
    {"name": "Water", "color": "#0000FF"},
    {"name": "Forest", "color": "#008000"},
    {"name": "Field", "color": "#80FF80"},
    {"name": "Built", "color": "#806060"},
]


def gdal():
    """The GDAL library rasterio itself runs on (its wheel bundles one), for what rasterio does not
    expose: category names and attribute tables."""
    import rasterio._base  # noqa: F401  (loads the library)

    found = glob.glob(os.path.join(os.path.dirname(rasterio.__file__), "..", "rasterio.libs", "libgdal-*"))
    if not found:
        pytest.skip("rasterio's bundled GDAL library not found (rasterio not from a wheel)")
    lib = ctypes.CDLL(found[0])
    lib.GDALOpen.restype, lib.GDALOpen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    lib.GDALGetRasterBand.restype, lib.GDALGetRasterBand.argtypes = (
        ctypes.c_void_p,
        [ctypes.c_void_p, ctypes.c_int],
    )
    lib.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    lib.GDALGetDefaultRAT.restype, lib.GDALGetDefaultRAT.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    lib.GDALRATGetRowCount.argtypes = [ctypes.c_void_p]
    lib.GDALRATGetValueAsString.restype = ctypes.c_char_p
    lib.GDALRATGetValueAsString.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALGetMetadataItem.restype = ctypes.c_char_p
    lib.GDALGetMetadataItem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.GDALAllRegister()
    return lib


def make_map(tmp_path, vector=True, overlay=True, tags=None):
    grid = Grid(UTM, Affine(1.0, 0, 500_000, 0, -1.0, 4_301_000), 400, 300)
    data = (np.arange(400)[None, :] // 100 % 4).repeat(300, 0).astype(np.uint8)
    data[:100, :100] = export.NODATA
    data[150:152, 250:252] = 0  # a 4 px speck of Water inside Field
    with ClassMapWriter(tmp_path / "classes.tif", grid, CLASSES) as writer:
        writer.write(rasterio.windows.Window(0, 0, grid.width, grid.height), data)
    outputs = outputs_beside(tmp_path / "out" / "demo_20250131_base.tif", vector=vector, overlay=overlay)
    export_all(tmp_path / "classes.tif", outputs, CLASSES, writer.stats, grid, tags)
    return outputs, writer.stats, grid


def test_gdal_reads_the_class_names_and_attribute_table_of_the_geotiff(tmp_path):
    outputs, stats, _ = make_map(tmp_path, vector=False)
    lib = gdal()
    ds = lib.GDALOpen(str(outputs["cog"]).encode(), 0)
    try:
        assert lib.GDALGetMetadataItem(ds, b"CLASS_0", None) == b"Water"  # (also loads the .aux.xml)
        band = lib.GDALGetRasterBand(ds, 1)
        names = lib.GDALGetRasterCategoryNames(band)
        got = []
        while names[len(got)]:
            got.append(names[len(got)].decode())
        assert got == ["Water", "Forest", "Field", "Built"]
        rat = lib.GDALGetDefaultRAT(band)
        assert rat and lib.GDALRATGetRowCount(rat) == 4
        row = [lib.GDALRATGetValueAsString(rat, 3, col).decode() for col in range(6)]
        assert row == ["3", "Built", "128", "96", "96", str(stats.rows()[3]["pixels"])]
    finally:
        lib.GDALClose(ds)


def test_the_geotiff_tags_name_the_model_checkpoint_dataset_and_classes(tmp_path):
    tags = {
        "model": "nips_hr",
        "model_file": "demo_model.keras",
        "checkpoint": "0123456789abcdef",
        "dataset": "demo",
        "created": "2025-01-31T12:00:00Z",
        "session": None,
    }
    outputs, _, _ = make_map(tmp_path, vector=False, tags=tags)
    with rasterio.open(outputs["cog"]) as src:
        t = src.tags()
    assert t["MODEL"] == "nips_hr" and t["CHECKPOINT"] == "0123456789abcdef" and t["DATASET"] == "demo"
    assert t["MODEL_FILE"] == "demo_model.keras" and "SESSION" not in t
    assert t["CLASS_2"] == "Field" and json.loads(t["CLASSES"])[0] == "Water"


def test_qgis_style_lists_each_class_colour_and_name(tmp_path):
    outputs, _, _ = make_map(tmp_path, vector=False)
    assert outputs["qml"].name == "demo_20250131_base.qml"  # QGIS finds it beside the .tif
    root = ET.fromstring(outputs["qml"].read_text().split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("color"), e.get("label")) for e in renderer.iter("paletteEntry")]
    assert entries == [
        ("0", "#0000ff", "Water"),
        ("1", "#008000", "Forest"),
        ("2", "#80ff80", "Field"),
        ("3", "#806060", "Built"),
    ]


def test_overlay_is_web_mercator_on_the_bounds_the_statistics_give(tmp_path):
    outputs, stats, grid = make_map(tmp_path, vector=False)
    saved = json.loads(outputs["stats_json"].read_text())
    w, s, e, n = saved["bounds_4326"]
    assert -75.01 < w < e < -74.99 and 38.8 < s < n < 38.9
    import cv2

    image = cv2.imread(str(outputs["overlay"]), cv2.IMREAD_UNCHANGED)
    assert image.shape[2] == 4 and max(image.shape[:2]) <= export.PREVIEW_MAX_PX
    assert image[..., 3].min() == 0 and image[..., 3].max() == 255  # no data is transparent


def test_class_polygons_as_geopackage_and_geojson_with_areas(tmp_path):
    outputs, stats, _ = make_map(tmp_path)
    info = pyogrio.read_info(outputs["gpkg"])
    assert info["geometry_type"] == "Polygon" and list(info["fields"]) == [
        "class_index",
        "class_name",
        "area_m2",
        "area_ha",
    ]
    assert CRS.from_user_input(info["crs"]) == UTM
    meta, _, geoms, fields = pyogrio.raw.read(outputs["gpkg"])
    classes, names, area_m2, area_ha = fields
    assert set(names) == {"Water", "Forest", "Field", "Built"}
    assert len(geoms) == 4 + 0  # the 4 px speck was merged into the Field around it (sieved)
    for index, name in zip(classes, names, strict=True):
        assert CLASSES[index]["name"] == name
    total = {r["index"]: r["km2"] * 1e6 for r in stats.rows()}
    for index, area in zip(classes, area_m2, strict=True):
        assert area == pytest.approx(total[index], rel=0.02)  # geodesic area of the polygon
    assert area_ha == pytest.approx(area_m2 / 1e4, rel=1e-3)
    assert from_wkb(geoms[0]).is_valid
    collection = json.loads(outputs["geojson"].read_text())
    assert len(collection["features"]) == 4 and "crs" not in collection  # RFC 7946: EPSG:4326
    lng, lat = collection["features"][0]["geometry"]["coordinates"][0][0]
    assert -75.01 < lng < -74.99 and 38.8 < lat < 38.9
    assert {f["properties"]["class_name"] for f in collection["features"]} == set(names)


def test_vectors_of_a_map_without_any_class_are_empty_layers(tmp_path):
    grid = Grid(UTM, Affine(1.0, 0, 500_000, 0, -1.0, 4_301_000), 64, 64)
    with ClassMapWriter(tmp_path / "classes.tif", grid, CLASSES) as writer:
        writer.write(rasterio.windows.Window(0, 0, 64, 64), np.full((64, 64), export.NODATA, np.uint8))
    outputs = outputs_beside(tmp_path / "empty.tif", vector=True)
    export_all(tmp_path / "classes.tif", outputs, CLASSES, writer.stats, grid)
    assert pyogrio.read_info(outputs["gpkg"])["features"] == 0
    assert json.loads(outputs["geojson"].read_text())["features"] == []
