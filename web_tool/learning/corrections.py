"""Corrections: the native-grid pixels an area labels, and the imagery needed to learn from them.

A correction is one `/recordCorrection`: an area (a box or a GeoJSON polygon, in any CRS) and a
class. It labels every pixel of the dataset's own lattice (`DataLoader.native_grid`) whose centre
lies inside the area (a box too small to hold a centre labels the pixel under its centre), and
keeps the native-grid imagery around those pixels, `context` pixels wider on every side, so
features can be recomputed at any time without going back to the dataset.

It also keeps the map the user saw there when correcting (`seen`: the session model's classes
where learning reads them, its anchor and sampled pixels, NO_CLASS elsewhere; corrections stored
by earlier versions hold it over the whole window) and how far that map was to be trusted
(`seen_trust`): what the user left alone around a correction is taken as accepted, so learning
keeps it (see training_data.py, "anchors").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from web_tool.DataLoader import DataLoader
from web_tool.errors import ExtentError, NoImageryError, TooLargeError
from web_tool.geometry import Extent, Grid

#: Largest box of native pixels (width x height) one correction may span.
MAX_CORRECTION_PIXELS = 512 * 512
#: Vertices added along each edge before reprojecting, so straight edges bend as they should.
DENSIFY = 16
#: `seen` value where the user saw no map
NO_CLASS = 255


@dataclass
class Correction:
    """One labelled area: its pixels (centres in `crs`, positions in `image`) and their class."""

    dataset: str
    crs: str
    value: int
    rows: np.ndarray
    cols: np.ndarray
    image: np.ndarray
    #: of `image`'s grid in `crs` (the first six terms of an Affine)
    transform: tuple[float, ...]
    id: int | None = None
    #: HxW classes of the map the user saw over `image` (NO_CLASS where there was none, or where
    #: learning does not read it)
    seen: np.ndarray | None = None
    #: the seen map's estimated accuracy (None: it was the base model's, judged when learning)
    seen_trust: float | None = None

    @property
    def count(self) -> int:
        return int(self.rows.size)

    @cached_property
    def seed(self) -> int:
        """The seed of the correction's random draws (its sampled pixels, anchors and thinning):
        a hash of what it labels, so the same clicks learn the same model whichever session, server
        or order they come in (the correction's id counts over the whole server). Hashed once: what
        a correction labels never changes (a largest box takes 12 ms, read at every retrain)."""
        h = hashlib.blake2b(digest_size=8)
        for part in (self.dataset, self.crs, str(self.value), repr(tuple(self.transform))):
            h.update(part.encode() + b"\0")
        h.update(np.ascontiguousarray(self.rows, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.cols, dtype=np.int64).tobytes())
        return int.from_bytes(h.digest(), "little")

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(xs, ys) in `crs` of its pixels' centres (computed: they follow from rows, cols and the
        transform, and would take twice the memory of both)."""
        cols: Any = self.cols + 0.5  # arrays in, arrays out (affine's types say floats)
        rows: Any = self.rows + 0.5
        xs, ys = Affine(*self.transform[:6]) @ (cols, rows)
        return np.asarray(xs), np.asarray(ys)

    @property
    def nbytes(self) -> int:
        """Memory it holds: its pixels and the imagery around them (the map the user saw there,
        a byte per pixel of `image`, counted before it is known)."""
        arrays = (self.rows, self.cols, self.image)
        height, width = self.image.shape[:2]
        return sum(int(a.nbytes) for a in arrays) + int(height) * int(width)


def area_in(geom: BaseGeometry, crs: CRS, target: CRS) -> BaseGeometry:
    """`geom` (in `crs`) in `target`, its edges densified first."""
    if crs == target:
        return geom
    minx, miny, maxx, maxy = geom.bounds
    dense = shapely.segmentize(geom, max(maxx - minx, maxy - miny) / DENSIFY)
    try:
        return shape(transform_geom(crs, target, mapping(dense)))
    except Exception as exc:
        raise ExtentError(f"geometry cannot be transformed to {target}: {exc}") from None


def pixel_centres(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """HxW arrays of the x and y of every pixel centre of `grid`."""
    cols, rows = np.meshgrid(np.arange(grid.width) + 0.5, np.arange(grid.height) + 0.5)
    xs, ys = grid.transform @ (cols, rows)  # arrays in, arrays out (affine's types say floats)
    return np.asarray(xs), np.asarray(ys)


def labelled_pixels(loader: DataLoader, geom: BaseGeometry, crs: CRS) -> tuple[Grid, np.ndarray, np.ndarray]:
    """(native grid around the area, rows, cols) of the pixels whose centre lies inside `geom`."""
    grid = loader.native_grid(Extent(*geom.bounds, crs=crs))
    if grid.width * grid.height > MAX_CORRECTION_PIXELS:
        raise TooLargeError(
            f"the area spans {grid.width} x {grid.height} native pixels; one correction may span at most"
            f" {MAX_CORRECTION_PIXELS} pixels: send smaller areas"
        )
    native = area_in(geom, crs, grid.crs)
    xs, ys = pixel_centres(grid)
    inside = shapely.contains_xy(native, xs, ys)
    if not inside.any():  # a click smaller than a pixel: the pixel under the area's centre
        centre = native.representative_point() if native.area > 0 else native.centroid
        col, row = ~grid.transform @ (centre.x, centre.y)
        row, col = min(max(int(row), 0), grid.height - 1), min(max(int(col), 0), grid.width - 1)
        inside[row, col] = True
    rows, cols = np.nonzero(inside)
    return grid, rows, cols


def record(loader: DataLoader, geom: BaseGeometry, crs: CRS, value: int, context: int) -> Correction:
    """The correction that labels `geom` (in `crs`) as class `value` on `loader`'s dataset.

    NoImageryError when none of the labelled pixels has imagery.
    """
    grid, rows, cols = labelled_pixels(loader, geom, crs)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    window = Grid(grid.crs, grid.transform @ Affine.translation(c0, r0), int(c1 - c0), int(r1 - r0))
    patch = loader.read(window.padded(context))
    rows, cols = rows - r0 + context, cols - c0 + context
    keep = patch.valid[rows, cols]
    if not keep.any():
        raise NoImageryError(f"no imagery of dataset {loader.name!r} under the corrected area")
    rows, cols = rows[keep], cols[keep]
    t = patch.grid.transform
    return Correction(
        dataset=loader.name,
        crs=grid.crs.to_string(),
        value=value,
        rows=rows.astype(np.int32),
        cols=cols.astype(np.int32),
        image=patch.data,
        transform=tuple(t)[:6],
    )


def sample_pixels(c: Correction, limit: int) -> np.ndarray:
    """Indices of at most `limit` of the correction's pixels (a fixed draw per correction)."""
    if c.count <= limit:
        return np.arange(c.count)
    rng = np.random.default_rng(c.seed)
    return np.sort(rng.choice(c.count, size=limit, replace=False))


def pixels_inside(c: Correction, geom: BaseGeometry, crs: CRS) -> np.ndarray:
    """Which of the correction's pixels have their centre inside `geom` (in `crs`)."""
    native = area_in(geom, crs, CRS.from_string(c.crs))
    return shapely.contains_xy(native, *c.centres())


def without(c: Correction, drop: np.ndarray) -> Correction:
    """The correction less the pixels `drop` marks (a new correction: no id yet)."""
    keep = ~drop
    return Correction(
        dataset=c.dataset,
        crs=c.crs,
        value=c.value,
        rows=c.rows[keep],
        cols=c.cols[keep],
        image=c.image,
        transform=c.transform,
        seen=c.seen,
        seen_trust=c.seen_trust,
    )


def anchor_pixels(c: Correction, n: int, margin: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of up to `n` pixels of the window around the correction that it does not label,
    at least `margin` pixels inside the window (so they have that much context), and where the map
    the user saw is known (a fixed draw per correction).

    Before that map is known (`seen` None), the draw is among the pixels with imagery: where a map
    is computed, at these very pixels (training_data.FeatureSource.seen_maps), so the same ones are
    drawn once it is known. A map of the whole window (NO_CLASS exactly where there is no imagery)
    gives the same draw too."""
    known = c.image.any(axis=-1) if c.seen is None else c.seen != NO_CLASS
    free = np.zeros(known.shape, dtype=bool)
    free[margin : free.shape[0] - margin, margin : free.shape[1] - margin] = True
    free &= known
    free[c.rows, c.cols] = False
    rows, cols = np.nonzero(free)
    if rows.size > n:
        keep = np.sort(np.random.default_rng([c.seed, 1]).choice(rows.size, size=n, replace=False))
        rows, cols = rows[keep], cols[keep]
    return rows, cols
