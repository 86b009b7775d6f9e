"""A map against a reference: a label raster on every pixel (census), with codes and in another
CRS, and reference points from GeoJSON (in any order)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.warp import transform as transform_points

from tests.validate.test_design import CLASSES, class_map
from web_tool.errors import ClassIndexError, NoImageryError, RequestError
from web_tool.mapping.export import NODATA
from web_tool.validate.design import map_strata
from web_tool.validate.reference import census, check_codes, point_counts, points_from_geojson, raster_reader
from web_tool.validate.report import census_report, sample_report


def stripes(h=60, w=80) -> np.ndarray:
    """Four vertical bands of classes 0..3, nodata in the last row."""
    data = np.repeat(np.repeat(np.arange(4, dtype=np.uint8)[None, :], w // 4, axis=1), h, axis=0)
    data[-1] = NODATA
    return data


def compare(mapped: np.ndarray, reference: np.ndarray, codes=None, **reference_kwargs):
    with (
        class_map(mapped) as m,
        m.open() as src,
        class_map(reference, **reference_kwargs) as r,
        r.open() as ref,
    ):
        return census(src, raster_reader(ref), CLASSES, check_codes(codes, CLASSES))


def test_a_map_against_itself_is_all_diagonal():
    data = stripes()
    pixels, km2, notes = compare(data, data)
    expected = np.bincount(data[data != NODATA], minlength=4)
    assert np.array_equal(pixels, np.diag(expected)) and km2 == pytest.approx(np.diag(expected) * 1e-6)
    report = census_report(CLASSES, pixels, km2, notes)
    assert report["overall"] == {"value": 1.0, "se": 0.0, "ci95": 0.0} and report["kind"] == "census"
    assert "no sampling error" in notes[0]


def test_disagreements_land_in_their_cell_of_the_matrix():
    mapped = stripes()
    reference = mapped.copy()
    reference[10:20, 25:35] = 2  # 100 pixels the map calls Forest (1) are Field (2)
    pixels, km2, notes = compare(mapped, reference)
    assert pixels[1, 2] == 100 and pixels[1, 1] == 59 * 20 - 100 and pixels.sum() == 59 * 80
    report = census_report(CLASSES, pixels, km2, notes)
    forest = report["classes"][1]
    assert forest["users"]["value"] == pytest.approx(1 - 100 / 1180)
    assert forest["estimated_km2"]["value"] == pytest.approx(1080e-6)
    assert forest["mapped_km2"] == pytest.approx(1180e-6)


def test_codes_map_reference_values_to_classes_and_unnamed_values_are_left_out():
    mapped = stripes()
    reference = np.choose(np.where(mapped == NODATA, 4, mapped), [11, 12, 13, 14, 15]).astype(np.uint8)
    codes = {"11": "water", "12": 1, "13": "Field", "14": None}
    pixels, km2, notes = compare(mapped, reference, codes)
    assert np.array_equal(np.diag(pixels)[:3], [59 * 20] * 3) and pixels[3].sum() == 0
    assert any("names no class" in n for n in notes)
    with pytest.raises(ClassIndexError, match="Wetland"):
        check_codes({"5": "Wetland"}, CLASSES)


def test_reference_values_beyond_a_byte_are_looked_up_too():
    mapped = stripes()
    reference = np.where(mapped == NODATA, 0, mapped.astype(np.uint16) + 1000)
    codes = {"1000": "Water", "1001": "Forest", "1002": "Field", "1003": "Built"}
    pixels, _, _ = compare(mapped, reference, codes, dtype="uint16")
    assert np.array_equal(pixels, np.diag([59 * 20] * 4))


def test_a_reference_on_another_grid_and_crs_is_warped_onto_the_map():
    mapped = stripes(200, 200)
    # the same stripes, in web mercator at 0.5 m (mercator units), covering the map
    from web_tool.geometry import Extent

    ext = Extent(500_000, 4_299_800, 500_200, 4_300_000, crs="EPSG:32618").to_crs("EPSG:3857")
    w, h = int((ext.xmax - ext.xmin) / 0.5), int((ext.ymax - ext.ymin) / 0.5)
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = transform_points(
        "EPSG:3857", "EPSG:32618", (ext.xmin + cols * 0.5).ravel(), (ext.ymax - rows * 0.5).ravel()
    )
    utm_col = np.floor(np.asarray(xs) - 500_000).reshape(h, w).astype(int)
    reference = np.clip(utm_col // 50, 0, 3).astype(np.uint8)
    pixels, _, _ = compare(mapped, reference, crs="EPSG:3857", res=0.5, origin=(ext.xmin, ext.ymax))
    assert np.trace(pixels) / pixels.sum() > 0.98  # only pixels at the stripes' edges may differ


def test_a_reference_that_misses_the_map_says_so():
    with pytest.raises(NoImageryError, match="no class anywhere"):
        compare(stripes(), stripes(), origin=(600_000, 4_300_000))


# --------------------------------------------------------------------------- points


def feature(lon, lat, value, key="class"):
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {key: value},
    }


def pixel_lonlat(row, col):
    lon, lat = transform_points("EPSG:32618", "EPSG:4326", [500_000 + col + 0.5], [4_300_000 - row - 0.5])
    return lon[0], lat[0]


POINTS = [
    ((5, 5), "Water"),  # map 0, right
    ((5, 25), 1),  # map 1, right
    ((6, 26), "Field"),  # map 1, wrong
    ((5, 45), "2"),  # map 2, right
    ((5, 65), 3.0),  # map 3, right
    ((7, 66), "unsure"),  # no reference class
    ((59, 5), "Water"),  # the nodata row: no map class
    ((500, 500), "Water"),  # off the map
]


def test_points_are_counted_where_the_map_and_the_reference_both_have_a_class():
    collection = {
        "type": "FeatureCollection",
        "features": [feature(*pixel_lonlat(*rc), v) for rc, v in POINTS],
    }
    xy, values = points_from_geojson(collection)
    with class_map(stripes()) as m, m.open() as src:
        counts, notes = point_counts(src, xy, 4326, values, CLASSES, None)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[1, 1] = expected[1, 2] = expected[2, 2] = expected[3, 3] = 1
    assert np.array_equal(counts, expected)
    assert any("2 points lie off the map" in n for n in notes) and any("1 points have no" in n for n in notes)


@settings(max_examples=50, deadline=None)
@given(order=st.permutations(range(60)), seed=st.integers(0, 1000))
def test_a_points_report_does_not_depend_on_the_order_of_the_points(order, seed):
    rng = np.random.default_rng(seed)
    cells = [(int(rng.integers(0, 59)), int(rng.integers(0, 80)), int(rng.integers(0, 4))) for _ in range(60)]
    features = [feature(*pixel_lonlat(r, c), k) for r, c, k in cells]
    reports = []
    with class_map(stripes()) as m, m.open() as src:
        strata = map_strata(src, CLASSES)
        for feats in (features, [features[i] for i in order]):
            xy, values = points_from_geojson({"type": "FeatureCollection", "features": feats})
            counts, notes = point_counts(src, xy, 4326, values, CLASSES, None)
            reports.append(sample_report(CLASSES, strata.pixels, strata.km2, counts, "points", notes))
    assert reports[0] == reports[1]


@pytest.mark.parametrize(
    "obj,words",
    [
        ({"type": "Point", "coordinates": [0, 0]}, "FeatureCollection"),
        ({"type": "FeatureCollection", "features": []}, "no Point"),
        ({"type": "FeatureCollection", "features": [feature("x", 1, 0)]}, "coordinates"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": None}]}, "no Point"),
        ([], "FeatureCollection"),
    ],
)
def test_bad_points_say_what_is_wrong(obj, words):
    with pytest.raises(RequestError, match=words):
        points_from_geojson(obj)
