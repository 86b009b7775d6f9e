"""Corrections as a map layer: each correction's labelled pixels as GeoJSON in EPSG:4326.

A correction of a few pixels is a Point (a click: the page draws a marker, which a pixel-sized
square would not be); a larger one is the (Multi)Polygon of its pixel squares, merged. Corrections
never change once recorded, so each shape is computed once and kept (by correction id).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import rasterio.features
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import MultiPolygon, Point, mapping, shape
from shapely.geometry.base import BaseGeometry

from web_tool.geometry import WGS84
from web_tool.learning.corrections import Correction

#: corrections of at most this many pixels are drawn as a point
POINT_PIXELS = 4
#: shapes kept in memory (a few hundred bytes to a few kB each)
MAX_CACHED_SHAPES = 20_000
#: most corrections one GET /corrections returns (the newest)
MAX_FEATURES = 5000

_cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def pixel_shape(c: Correction) -> BaseGeometry:
    """The correction's pixels in its own CRS: a Point (centroid) or the union of pixel squares."""
    t = Affine(*c.transform)
    if c.count <= POINT_PIXELS:
        x, y = t @ (float(c.cols.mean()) + 0.5, float(c.rows.mean()) + 0.5)
        return Point(x, y)
    r0, c0 = int(c.rows.min()), int(c.cols.min())
    mask = np.zeros((int(c.rows.max()) - r0 + 1, int(c.cols.max()) - c0 + 1), np.uint8)
    mask[c.rows - r0, c.cols - c0] = 1
    found = rasterio.features.shapes(mask, mask=mask.astype(bool), transform=t * Affine.translation(c0, r0))
    polygons = [shape(g) for g, v in found if v]  # Polygons (the stubs' shape() says BaseGeometry)
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)  # type: ignore[arg-type]


def feature(c: Correction) -> dict[str, Any]:
    """GeoJSON Feature (EPSG:4326) of correction `c`, with its id, class index and pixel count."""
    with _lock:
        if c.id is not None and c.id in _cache:
            _cache.move_to_end(c.id)
            return _cache[c.id]
    geometry = transform_geom(CRS.from_string(c.crs), WGS84, mapping(pixel_shape(c)), precision=7)
    out = {
        "type": "Feature",
        "id": c.id,
        "geometry": geometry,
        "properties": {"id": c.id, "value": c.value, "pixels": c.count},
    }
    if c.id is not None:
        with _lock:
            _cache[c.id] = out
            while len(_cache) > MAX_CACHED_SHAPES:
                _cache.popitem(last=False)
    return out


def collection(corrections: list[Correction], dataset: str, after: int = 0) -> dict[str, Any]:
    """The corrections of `dataset` with an id above `after`, newest MAX_FEATURES, as a FeatureCollection;
    `counts` gives corrections and pixels per class over all of them."""
    mine = [c for c in corrections if c.dataset == dataset]
    counts: dict[int, dict[str, int]] = {}
    for c in mine:
        entry = counts.setdefault(c.value, {"corrections": 0, "pixels": 0})
        entry["corrections"] += 1
        entry["pixels"] += c.count
    wanted = [c for c in mine if (c.id or 0) > after]
    return {
        "type": "FeatureCollection",
        "features": [feature(c) for c in wanted[-MAX_FEATURES:]],
        "truncated": len(wanted) > MAX_FEATURES,
        "counts": {str(k): v for k, v in sorted(counts.items())},
    }
