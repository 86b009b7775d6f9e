"""Extents, CRS codes and grids: validation and round trips."""

import math

import mercantile
import pytest
from hypothesis import given
from hypothesis import strategies as st

from web_tool.errors import CRSError, ExtentError
from web_tool.geometry import WEB_MERCATOR, WGS84, Extent, Grid, ground_resolution_in, parse_crs
from web_tool.rendering.imagery_tiles import tile_grid


def test_parse_crs_accepts_ints_and_epsg_strings():
    assert parse_crs(3857) == WEB_MERCATOR
    assert parse_crs("EPSG:4326") == WGS84


@pytest.mark.parametrize("code", [999999, "nonsense", -1])
def test_parse_crs_names_the_unknown_code(code):
    with pytest.raises(CRSError, match=str(code)):
        parse_crs(code)


@pytest.mark.parametrize(
    "bounds", [(1, 0, 0, 1), (0, 1, 1, 0), (0, 0, 0, 1), (math.nan, 0, 1, 1), (0, 0, math.inf, 1)]
)
def test_extent_rejects_empty_inverted_or_non_finite_boxes(bounds):
    with pytest.raises(ExtentError):
        Extent(*bounds)


def test_extent_transforms_between_crs_and_contains_the_original():
    ext = Extent(-8573500, 4705000, -8573000, 4705500)
    geo = ext.to_crs(WGS84)
    assert -77.02 < geo.xmin < geo.xmax < -77.01
    back = geo.to_crs(WEB_MERCATOR)
    assert back.xmin <= ext.xmin + 1e-6 and back.xmax >= ext.xmax - 1e-6


def test_web_mercator_resolution_is_stretched_by_latitude():
    assert ground_resolution_in(WEB_MERCATOR, 1.0, 0) == pytest.approx(1.0)
    assert ground_resolution_in(WEB_MERCATOR, 1.0, 60) == pytest.approx(2.0)


coords = st.floats(-1e6, 1e6, allow_nan=False)
sizes = st.floats(1, 5e3, allow_nan=False)


@given(x=coords, y=coords, w=sizes, h=sizes, res=st.floats(0.1, 50))
def test_grid_covering_spans_the_extent_exactly(x, y, w, h, res):
    ext = Extent(x, y, x + w, y + h)
    grid = Grid.covering(ext, res)
    assert grid.extent.bounds == pytest.approx(ext.bounds, abs=1e-6 * max(1, abs(x), abs(y)))
    # counted on the extent's own width: x + w - x is not always w in floating point
    width, height = ext.xmax - ext.xmin, ext.ymax - ext.ymin
    assert grid.width == max(1, round(width / res)) and grid.height == max(1, round(height / res))


@given(pad=st.integers(0, 100))
def test_padding_grows_a_grid_symmetrically(pad):
    grid = Grid.covering(Extent(0, 0, 100, 50), 1.0)
    padded = grid.padded(pad)
    assert padded.extent.bounds == pytest.approx((-pad, -pad, 100 + pad, 50 + pad))
    assert padded.res == grid.res


@given(z=st.integers(0, 20), data=st.data())
def test_tile_grid_matches_mercantile_bounds(z, data):
    x = data.draw(st.integers(0, 2**z - 1))
    y = data.draw(st.integers(0, 2**z - 1))
    b = mercantile.xy_bounds(x, y, z)
    grid = tile_grid(z, x, y)
    assert grid.shape == (256, 256)
    assert grid.extent.bounds == pytest.approx((b.left, b.bottom, b.right, b.top), rel=1e-9, abs=1e-6)


def test_tile_grid_rejects_tiles_that_do_not_exist():
    with pytest.raises(ExtentError):
        tile_grid(3, 8, 0)


def test_overlapping_parts_of_a_multipolygon_are_joined_like_a_brush_stroke():
    from shapely.geometry import MultiPolygon, Point, box, mapping

    from web_tool.geometry import polygon_from_geojson

    stroke = MultiPolygon([box(0, 0, 2, 1), box(1, 0, 3, 1), Point(3, 0.5).buffer(0.5)])
    assert not stroke.is_valid
    joined = polygon_from_geojson(mapping(stroke))
    assert joined.is_valid and joined.area == pytest.approx(3 + 0.5 * stroke.geoms[2].area, rel=1e-3)


@pytest.mark.parametrize("kind", [[], {}, ["Polygon"]])
def test_a_geojson_type_that_is_not_a_string_is_named_not_a_crash(kind):
    from web_tool.geometry import polygon_from_geojson

    with pytest.raises(ExtentError, match="GeoJSON Polygon or MultiPolygon"):
        polygon_from_geojson(
            {"type": kind, "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, max_vertices=100
        )


@pytest.mark.parametrize("features", [5, "abc", {"type": "Feature"}, None])
def test_a_feature_collection_whose_features_are_not_a_list_is_named_not_a_crash(features):
    from web_tool.geometry import polygon_from_geojson

    with pytest.raises(ExtentError, match="must be a list of GeoJSON Features"):
        polygon_from_geojson({"type": "FeatureCollection", "features": features}, max_vertices=100)
