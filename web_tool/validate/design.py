"""The sampling design: how many points each map class gets, and which pixels they are.

Olofsson et al. (2014, section 5.1.2) recommend stratified random sampling with the map classes as
strata: proportional allocation gives rare classes too few points for their user's accuracy,
equal allocation gives the common ones too few for area, so rare classes get a minimum and the
rest is shared in proportion to mapped area. `allocate` does that; `draw` picks the pixels, each
pixel of a class equally likely, reading the class map window by window (two passes, memory of one
window whatever the map's size).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.io import DatasetReader
from rasterio.warp import transform as transform_points
from rasterio.windows import Window

from web_tool.errors import RequestError
from web_tool.geometry import WGS84, Grid
from web_tool.mapping.export import NODATA, ClassStats, row_areas_km2

#: points of a validation sample unless the user says otherwise (HASTE and most studies: ~200)
DEFAULT_TOTAL = 200
#: fewest points a mapped class gets (the paper suggests 50-100 for rare classes when the budget
#: allows; 20 leaves a 200-point sample room for the common classes' areas)
DEFAULT_MIN_PER_CLASS = 20
#: side of the windows a class map is read in
WINDOW_PX = 2048


class DesignError(RequestError):
    """The sample asked for cannot be drawn from this map (too small a total, an empty map): a 400."""


@dataclass(frozen=True)
class MapStrata:
    """A class map's strata: pixels and km² per class, and the grid it lies on."""

    classes: list[dict[str, Any]]
    pixels: list[int]
    km2: list[float]
    grid: Grid

    @property
    def weights(self) -> np.ndarray:
        """Each class's share of the mapped area (W_i)."""
        km2 = np.asarray(self.km2, dtype=np.float64)
        return km2 / km2.sum() if km2.sum() > 0 else km2


def allocate(pixels: list[int], total: int, minimum: int) -> list[int]:
    """Points per class: at least `minimum` (or all pixels of a smaller class), the rest in
    proportion to `pixels`, summing to `total` (or to every mapped pixel, if fewer)."""
    mapped = [k for k, p in enumerate(pixels) if p > 0]
    if not mapped:
        raise DesignError("the map has no classified pixel to sample")
    if minimum < 2:
        raise DesignError("min_per_class must be at least 2 (a class needs two points for an interval)")
    floor = sum(min(minimum, pixels[k]) for k in mapped)
    if total < floor:
        raise DesignError(
            f"a total of {total} points cannot give each of the {len(mapped)} mapped classes"
            f" {minimum}: ask for at least {floor} points or a smaller minimum per class"
        )
    fixed: dict[int, int] = {}  # classes held at their floor (the minimum) or ceiling (all pixels)
    while True:
        free = [k for k in mapped if k not in fixed]
        left = total - sum(fixed.values())
        share = _shares(left, [pixels[k] for k in free])
        floors = {k: min(minimum, pixels[k]) for k in free}
        newly = {k: floors[k] for k, s in zip(free, share, strict=True) if s < floors[k]}
        newly |= {k: pixels[k] for k, s in zip(free, share, strict=True) if s > pixels[k]}
        if not newly:
            break
        fixed |= newly
    points = [0] * len(pixels)
    for k, n in fixed.items():
        points[k] = n
    for k, s in zip(free, _integers(share, left), strict=True):
        points[k] = s
    return points


def _shares(total: int, sizes: list[int]) -> list[float]:
    whole = sum(sizes)
    return [total * s / whole for s in sizes] if whole else []


def _integers(shares: list[float], total: int) -> list[int]:
    """Round `shares` to integers that sum to `total` (largest remainders first)."""
    floors = [math.floor(s) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: floors[i] - shares[i])
    for i in order[: max(0, total - sum(floors))]:
        floors[i] += 1
    return floors


def windows(height: int, width: int, side: int | None = None) -> Iterator[Window]:
    """The map's windows in a fixed order (rows of windows, top to bottom, left to right)."""
    side = side or WINDOW_PX
    for row in range(0, height, side):
        for col in range(0, width, side):
            yield Window(col, row, min(side, width - col), min(side, height - row))


def grid_of(src: DatasetReader) -> Grid:
    return Grid(src.crs, src.transform, src.width, src.height)


def map_strata(src: DatasetReader, classes: list[dict[str, Any]]) -> MapStrata:
    """Count the pixels and km² of each class of the class map `src` (an open dataset)."""
    grid = grid_of(src)
    stats = ClassStats(classes)
    for window in windows(src.height, src.width):
        block = src.read(1, window=window)
        stats.add(block, row_areas_km2(grid, int(window.row_off), int(window.height)))
    return MapStrata(classes, [int(p) for p in stats.pixels], [float(a) for a in stats.km2], grid)


def draw(
    src: DatasetReader, points: list[int], pixels: list[int], rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """(row, col, class) of `points[k]` of the `pixels[k]` pixels of each class k of `src` (as
    `map_strata` counted them), drawn at random without replacement (every pixel of a class equally
    likely), in a random order across classes."""
    n_classes = len(points)
    counts = pixels
    if any(p > c for p, c in zip(points, counts, strict=True)):
        raise DesignError("the sample asks for more points of a class than the map has pixels of it")
    ranks = [
        np.sort(rng.choice(int(c), size=p, replace=False)) if p else np.zeros(0, np.int64)
        for p, c in zip(points, counts, strict=True)
    ]
    chosen: list[tuple[int, int, int]] = []
    seen = np.zeros(n_classes, dtype=np.int64)  # pixels of each class before this window
    for window in windows(src.height, src.width):
        block = src.read(1, window=window)
        for k in range(n_classes):
            if not ranks[k].size:
                continue
            where = np.flatnonzero(block.ravel() == k)
            lo, hi = np.searchsorted(ranks[k], [seen[k], seen[k] + where.size])
            for flat in where[ranks[k][lo:hi] - seen[k]]:
                row, col = divmod(int(flat), int(window.width))
                chosen.append((int(window.row_off) + row, int(window.col_off) + col, k))
            seen[k] += where.size
    order = rng.permutation(len(chosen))
    return [chosen[i] for i in order]


def map_classes(src: DatasetReader) -> list[dict[str, Any]]:
    """The classes of an exported class map: names from its CLASSES tag, colours from its colour map
    (a map without the tag: one class per value up to the largest value the map holds)."""
    try:
        names = [str(n) for n in json.loads(src.tags().get("CLASSES", "[]"))]
    except ValueError:
        names = []
    try:
        colormap = src.colormap(1)
    except ValueError:  # no colour map
        colormap = {}
    if not names:
        largest = max((int(b.max()) for b in _blocks(src) if (b != NODATA).any()), default=-1)
        names = [f"class {k}" for k in range(largest + 1)]
    if not names:
        raise DesignError("the class map holds no classified pixel")
    grey = (128, 128, 128)
    return [
        {"name": name, "color": "#{:02x}{:02x}{:02x}".format(*colormap.get(k, grey)[:3])}
        for k, name in enumerate(names)
    ]


def _blocks(src: DatasetReader) -> Iterator[np.ndarray]:
    for window in windows(src.height, src.width):
        block = src.read(1, window=window)
        yield np.where(block == NODATA, 0, block)


def locate(grid: Grid, drawn: list[tuple[int, int, int]]) -> list[dict[str, Any]]:
    """Each drawn (row, col, class) as a point: the pixel centre in the map's CRS and in lon/lat,
    and the pixel's outline in lon/lat (to draw on a web map)."""
    if not drawn:
        return []
    rows, cols, classes = (np.array(v, dtype=np.float64) for v in zip(*drawn, strict=True))
    t = grid.transform
    xs, ys = t.c + t.a * (cols + 0.5) + t.b * (rows + 0.5), t.f + t.d * (cols + 0.5) + t.e * (rows + 0.5)
    lon, lat = transform_points(grid.crs, WGS84, xs, ys)
    corner_cols = cols[:, None] + np.array([0, 1, 1, 0, 0])
    corner_rows = rows[:, None] + np.array([0, 0, 1, 1, 0])
    cx = t.c + t.a * corner_cols + t.b * corner_rows
    cy = t.f + t.d * corner_cols + t.e * corner_rows
    clon, clat = transform_points(grid.crs, WGS84, cx.ravel(), cy.ravel())
    clon, clat = np.reshape(clon, cx.shape), np.reshape(clat, cy.shape)
    return [
        {
            "x": float(xs[i]),
            "y": float(ys[i]),
            "lon": float(lon[i]),
            "lat": float(lat[i]),
            "outline": [
                [round(float(a), 8), round(float(b), 8)] for a, b in zip(clon[i], clat[i], strict=True)
            ],
            "map_class": int(classes[i]),
        }
        for i in range(len(drawn))
    ]


def sample_map(
    src: DatasetReader, classes: list[dict[str, Any]], total: int, minimum: int, seed: int
) -> tuple[MapStrata, dict[str, Any], list[dict[str, Any]]]:
    """Allocate and draw a stratified random sample of the class map `src` (an open dataset):
    (strata, design: seed, total, min_per_class and points per class, the points)."""
    strata = map_strata(src, classes)
    points = allocate(strata.pixels, total, minimum)
    drawn = draw(src, points, strata.pixels, np.random.default_rng(seed))
    design = {"seed": seed, "total": sum(points), "min_per_class": minimum, "points": points}
    return strata, design, locate(strata.grid, drawn)
