"""A map against a reference someone else made: a label raster compared on every pixel of the map's
grid (a census), or reference points with a class looked up in the map (a sample).

Reference values become the map's class indices through `codes` ({"1": "Water", "2": 1, "15":
null}: a class name or index, null to ignore); without codes a value is the class index itself (or,
for points, a class name). Values that name no class are left out and counted in the notes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import transform as transform_points

from web_tool.DataLoader import DataLoader, read_into
from web_tool.errors import ClassIndexError, NoImageryError, RequestError
from web_tool.geometry import Grid, parse_crs
from web_tool.mapping.export import NODATA, row_areas_km2
from web_tool.validate.design import grid_of, windows

#: (codes HxW, valid HxW) of the reference over a grid
Reader = Callable[[Grid], tuple[np.ndarray, np.ndarray]]
#: most reference points one report may take
MAX_REFERENCE_POINTS = 100_000
#: property of a GeoJSON point that holds its reference class, unless the user names another
DEFAULT_PROPERTY = "class"


def class_index(value: object, classes: list[dict[str, Any]]) -> int | None:
    """The class a reference value names: an index, a class name (any case) or a number in text."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        named = [i for i, c in enumerate(classes) if c["name"].lower() == text.lower()]
        if named:
            return named[0]
        value = int(text) if text.lstrip("-").isdigit() else None
    if isinstance(value, int) and 0 <= value < len(classes):
        return value
    return None


def code_key(value: object) -> str:
    """How a reference value is looked up in `codes`: 3, 3.0 and "3" alike."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def check_codes(
    codes: Mapping[str, int | str | None] | None, classes: list[dict[str, Any]]
) -> dict[str, int | None] | None:
    """`codes` with every target resolved to a class index (None: ignore); ClassIndexError naming a
    target that is no class."""
    if codes is None:
        return None
    resolved: dict[str, int | None] = {}
    for key, target in codes.items():
        index = None if target is None else class_index(target, classes)
        if target is not None and index is None:
            names = ", ".join(c["name"] for c in classes)
            raise ClassIndexError(
                f"codes: {key!r} maps to {target!r}, which is no class of the map ({names})"
            )
        resolved[code_key(key)] = index
    return resolved


def reference_class(
    value: object, classes: list[dict[str, Any]], codes: dict[str, int | None] | None
) -> int | None:
    if codes is not None:
        return codes.get(code_key(value))
    return class_index(value, classes)


def lookup_table(
    values: np.ndarray, classes: list[dict[str, Any]], codes: dict[str, int | None] | None
) -> np.ndarray:
    """Class index (-1: none) of each reference value in `values` (an array of unique codes)."""
    return np.array([_or_none(reference_class(v.item(), classes, codes)) for v in values], dtype=np.int64)


def reference_classes(
    values: np.ndarray,
    classes: list[dict[str, Any]],
    codes: dict[str, int | None] | None,
    byte_table: np.ndarray,
) -> np.ndarray:
    """Class index (-1: none) of every reference value in the array `values`."""
    if values.dtype == np.uint8:
        looked_up: np.ndarray = byte_table[values]
        return looked_up
    unique, inverse = np.unique(values, return_inverse=True)
    return lookup_table(unique, classes, codes)[inverse.reshape(values.shape)]


def _or_none(index: int | None) -> int:
    return -1 if index is None else index


# --------------------------------------------------------------------------------------------
# on every pixel


def census(
    src: DatasetReader, read: Reader, classes: list[dict[str, Any]], codes: dict[str, int | None] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pixels, km²) K x K matrices (map rows, reference columns) over the pixels of the class map
    `src` where both the map and the reference (`read`) have a class; and the notes."""
    k = len(classes)
    grid = grid_of(src)
    pixels = np.zeros(k * k, dtype=np.int64)
    km2 = np.zeros(k * k, dtype=np.float64)
    mapped = unclassified = 0
    byte_table = lookup_table(np.arange(256, dtype=np.uint8), classes, codes)  # most label rasters are uint8
    for window in windows(src.height, src.width):
        block = src.read(1, window=window).astype(np.int64)
        wgrid = Grid(grid.crs, src.window_transform(window), int(window.width), int(window.height))
        codes_block, valid = read(wgrid)
        on_map = (block != NODATA) & (block < k)
        mapped += int(on_map.sum())
        ref = reference_classes(codes_block, classes, codes, byte_table)
        unclassified += int((on_map & valid & (ref < 0)).sum())
        both = on_map & valid & (ref >= 0)
        cell = block[both] * k + ref[both]
        area = np.broadcast_to(
            row_areas_km2(grid, int(window.row_off), int(window.height))[:, None], block.shape
        )
        pixels += np.bincount(cell, minlength=k * k)
        km2 += np.bincount(cell, weights=area[both], minlength=k * k)
    compared = int(pixels.sum())
    if not compared:
        raise NoImageryError(
            "the reference has no class anywhere on the map: does it cover the map's area"
            " (and do its values name the map's classes; see `codes`)?"
        )
    notes = [
        f"census: every pixel compared where both have a class, {compared} of the map's {mapped} pixels"
        f" ({100 * compared / max(mapped, 1):.1f} %); no sampling error"
    ]
    if unclassified:
        notes.append(f"{unclassified} pixels of the reference hold a value that names no class (left out)")
    return pixels.reshape(k, k), km2.reshape(k, k), notes


def labels_reader(loader: DataLoader) -> Reader:
    """The dataset's own label rasters (datasets.json `labels`) read on any grid."""
    if not loader.label_files:
        raise RequestError(f"dataset {loader.name!r} has no label rasters (`labels` in datasets.json)")

    def read(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        try:
            patch = loader.read(grid, labels=True)
        except NoImageryError:
            return np.zeros(grid.shape, np.uint8), np.zeros(grid.shape, bool)
        return patch.data[..., 0], patch.valid

    return read


def raster_reader(src: DatasetReader) -> Reader:
    """Band 1 of an open reference raster (any CRS and grid), warped onto any grid by nearest value."""
    if src.crs is None:
        raise RequestError("the reference raster has no CRS: send a georeferenced GeoTIFF")

    def read(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
        codes = np.zeros(grid.shape, dtype=src.dtypes[0])
        valid = np.zeros(grid.shape, dtype=bool)
        try:
            part = read_into(src, grid, [1], Resampling.nearest)
        except RasterioIOError as exc:
            raise RequestError(f"the reference raster cannot be read (damaged?): {exc}") from None
        if part is not None:
            data, part_valid, (rows, cols) = part
            codes[rows, cols], valid[rows, cols] = data[0], part_valid
        return codes, valid

    return read


# --------------------------------------------------------------------------------------------
# at points


def points_from_geojson(obj: object, prop: str = DEFAULT_PROPERTY) -> tuple[np.ndarray, list[object]]:
    """(N x 2 coordinates, reference values) of the Point (and MultiPoint) features of a GeoJSON
    FeatureCollection (or Feature); RequestError saying what is wrong."""
    features = _features(obj)
    xy, values = [], []
    for f in features:
        geometry = f.get("geometry") if isinstance(f, dict) else None
        properties = f.get("properties") if isinstance(f, dict) else None
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Point", "MultiPoint"):
            continue
        kind, coords = geometry["type"], geometry.get("coordinates")
        for c in [coords] if kind == "Point" else coords if isinstance(coords, list) else []:
            if not (isinstance(c, list) and len(c) >= 2 and all(_finite(v) for v in c[:2])):
                raise RequestError(f"a point has coordinates {str(c)[:60]}: expected [x, y] numbers")
            xy.append((float(c[0]), float(c[1])))
            values.append((properties or {}).get(prop) if isinstance(properties, dict) else None)
        if len(xy) > MAX_REFERENCE_POINTS:
            raise RequestError(f"more than {MAX_REFERENCE_POINTS} reference points: send fewer")
    if not xy:
        raise RequestError("the GeoJSON holds no Point features: send a FeatureCollection of points")
    return np.array(xy, dtype=np.float64), values


def _features(obj: object) -> list[object]:
    if (
        isinstance(obj, dict)
        and obj.get("type") == "FeatureCollection"
        and isinstance(obj.get("features"), list)
    ):
        features: list[object] = obj["features"]
        return features
    if isinstance(obj, dict) and obj.get("type") == "Feature":
        return [obj]
    raise RequestError("points must be a GeoJSON FeatureCollection (or Feature) of Point features")


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def point_counts(
    src: DatasetReader,
    xy: np.ndarray,
    crs_code: int | str,
    values: Iterable[object],
    classes: list[dict[str, Any]],
    codes: dict[str, int | None] | None,
) -> tuple[np.ndarray, list[str]]:
    """K x K counts (map rows, reference columns) of the points: each point's map class is the
    class map's pixel under it; points off the map, on no class or with no reference class are
    left out (and counted in the notes)."""
    k = len(classes)
    xs, ys = transform_points(parse_crs(crs_code), src.crs, xy[:, 0].tolist(), xy[:, 1].tolist())
    inv = ~src.transform
    cols, rows = (np.floor(np.asarray(v)).astype(np.int64) for v in inv * (np.asarray(xs), np.asarray(ys)))
    inside = (rows >= 0) & (rows < src.height) & (cols >= 0) & (cols < src.width)
    mapped = np.full(len(xy), -1, dtype=np.int64)
    for window in windows(src.height, src.width):  # each window that holds points is read once
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        here = inside & (rows >= r0) & (rows < r0 + h) & (cols >= c0) & (cols < c0 + w)
        if here.any():
            mapped[here] = src.read(1, window=window)[rows[here] - r0, cols[here] - c0]
    mapped[mapped >= k] = -1  # NODATA: no class there
    reference = np.array([_or_none(reference_class(v, classes, codes)) for v in values], dtype=np.int64)
    used = (mapped >= 0) & (reference >= 0)
    counts = np.bincount(mapped[used] * k + reference[used], minlength=k * k).reshape(k, k)
    notes = []
    off_map, unclassified = int((mapped < 0).sum()), int(((mapped >= 0) & (reference < 0)).sum())
    if off_map:
        notes.append(f"{off_map} points lie off the map or where it has no class (left out)")
    if unclassified:
        notes.append(f"{unclassified} points have no reference class (left out)")
    notes.append(
        "the intervals assume the points are a probability sample of the map's area (simple random,"
        " systematic, or stratified by this map's classes)"
    )
    return counts, notes
