"""Extents, CRS codes and pixel grids: the geometry every other stage speaks.

A *grid* is where pixels live: a CRS, an affine transform and a shape. Requests arrive as
extents; `DataLoader` fills grids; renderers and writers read grids back out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import mercantile
import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError as RasterioCRSError
from rasterio.warp import transform_bounds
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from web_tool.errors import CRSError, ExtentError, TooLargeError

WEB_MERCATOR = CRS.from_epsg(3857)
WGS84 = CRS.from_epsg(4326)
#: the latitudes a web-mercator map shows (±85.05°), and its x at longitude 180°
MAX_LATITUDE = 85.0511287798066
WORLD_X = 20037508.342789244
#: largest coordinate magnitude accepted in any CRS: far beyond any real one (the Earth is 4e7 m
#: around), and PROJ spins for minutes wrapping longitudes of boxes much larger than this
MAX_COORD = 1e10
#: most vertices of a GeoJSON area the server accepts (--max_vertices; the batch CLI has no cap)
MAX_VERTICES = 20_000
#: most places where an invalid polygon's edges may meet (other than at their shared corners) for it
#: to be repaired: repair work grows with them, so a polygon over this is refused, saying so
MAX_CROSSINGS = 5_000
#: boundary segments tested against the others at a time while counting crossings (bounds memory)
CROSSING_CHUNK = 64


def parse_crs(code: int | str) -> CRS:
    """A CRS from an EPSG code (int or "EPSG:N"); CRSError naming the code if PROJ lacks it."""
    try:
        epsg = int(str(code).upper().removeprefix("EPSG:"))
        return CRS.from_epsg(epsg)
    except (ValueError, RasterioCRSError):
        raise CRSError(
            f"unknown CRS code {code!r}: give an EPSG code that PROJ knows, e.g. 3857 or 4326"
        ) from None


@dataclass(frozen=True)
class Extent:
    """An axis-aligned box in a CRS."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crs: CRS = WEB_MERCATOR

    def __post_init__(self) -> None:
        values = (self.xmin, self.ymin, self.xmax, self.ymax)
        if not all(math.isfinite(v) for v in values):
            raise ExtentError(f"extent has a non-finite coordinate: {values}")
        if any(abs(v) > MAX_COORD for v in values):
            raise ExtentError(
                f"extent has a coordinate beyond ±{MAX_COORD:g}, which no CRS reaches: {values}"
            )
        if not (self.xmin < self.xmax and self.ymin < self.ymax):
            raise ExtentError(
                f"extent needs xmin < xmax and ymin < ymax, got x {self.xmin}..{self.xmax},"
                f" y {self.ymin}..{self.ymax}"
            )

    @classmethod
    def from_bounds(cls, bounds: Sequence[float], crs: CRS) -> Extent:
        """The box of (xmin, ymin, xmax, ymax) `bounds` (rasterio's or shapely's) in `crs`."""
        xmin, ymin, xmax, ymax = bounds
        return cls(xmin, ymin, xmax, ymax, crs)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    def to_crs(self, crs: CRS) -> Extent:
        """The smallest box in `crs` holding this one (edges densified)."""
        if crs == self.crs:
            return self
        if crs == WEB_MERCATOR:
            return self.to_web_mercator()
        try:
            bounds: tuple[float, float, float, float] = transform_bounds(
                self.crs, crs, *self.bounds, densify_pts=21
            )
        except Exception as exc:  # PROJ raises assorted errors for impossible boxes
            raise ExtentError(f"extent cannot be transformed to {crs}: {exc}") from None
        if not all(math.isfinite(v) for v in bounds):
            raise ExtentError(f"extent {self.bounds} lies outside the valid area of {crs}")
        if crs.is_geographic and bounds[0] > bounds[2]:  # across the antimeridian: east beyond 180°
            bounds = (bounds[0], bounds[1], bounds[2] + 360, bounds[3])
        return Extent(*bounds, crs=crs)

    def to_web_mercator(self) -> Extent:
        """The box in EPSG:3857 through longitude and latitude: across the antimeridian its east
        edge lies beyond the world's (x > 180°), as web maps draw it; ExtentError beyond ±85.05°."""
        west, south, east, north = self.to_crs(WGS84).bounds
        if south < -MAX_LATITUDE - 1e-9 or north > MAX_LATITUDE + 1e-9:
            raise ExtentError(beyond_web_map(self))
        (x0, y0), (x1, y1) = mercantile.xy(west, south), mercantile.xy(east, north)
        return Extent(x0, y0, x1, y1, crs=WEB_MERCATOR)

    def shifted_near(self, x: float) -> Extent:
        """This box moved by whole worlds (360° in degrees, 2 x WORLD_X in EPSG:3857) so that its
        centre is nearest to `x`: the copy on the same side of the antimeridian as `x`."""
        world = 360.0 if self.crs.is_geographic else 2 * WORLD_X
        shift = round((x - (self.xmin + self.xmax) / 2) / world) * world
        return Extent(self.xmin + shift, self.ymin, self.xmax + shift, self.ymax, crs=self.crs)


def beyond_web_map(extent: Extent) -> str:
    """The message for an extent that reaches latitudes a web map cannot show."""
    return (
        f"the extent {tuple(round(v, 6) for v in extent.bounds)} reaches beyond {MAX_LATITUDE:.2f}° latitude:"
        " web maps (EPSG:3857), and this server's responses, stop there; ask for an area nearer the equator"
    )


def lonlat_bounds(extent: Extent) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees: east beyond 180° across the antimeridian (so that
    west < east), latitudes cut at the web map's ±85.05°; ExtentError when nothing is left."""
    west, south, east, north = extent.to_crs(WGS84).bounds
    south, north = max(south, -MAX_LATITUDE), min(north, MAX_LATITUDE)
    if south >= north:
        raise ExtentError(beyond_web_map(extent))
    return west, south, east, north


def web_map_bounds(extent: Extent) -> tuple[float, float, float, float]:
    """The part of `extent` a web map shows, in EPSG:3857 (x beyond the world's edge across 180°)."""
    if extent.crs == WEB_MERCATOR:
        return extent.xmin, max(extent.ymin, -WORLD_X), extent.xmax, min(extent.ymax, WORLD_X)
    west, south, east, north = lonlat_bounds(extent)
    (x0, y0), (x1, y1) = mercantile.xy(west, south), mercantile.xy(east, north)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, affine transform (north up) and size in pixels."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        return (self.transform.a, -self.transform.e)

    @property
    def extent(self) -> Extent:
        x0, y0 = self.transform.c, self.transform.f
        x1, y1 = self.transform @ (self.width, self.height)
        return Extent(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), crs=self.crs)

    def padded(self, pad: int) -> Grid:
        """The same grid grown by `pad` pixels on every side."""
        transform = self.transform @ Affine.translation(-pad, -pad)
        return Grid(self.crs, transform, self.width + 2 * pad, self.height + 2 * pad)

    def inside_padded(self, pad: int) -> tuple[slice, slice]:
        """(rows, cols) of this grid inside `self.padded(pad)`."""
        return slice(pad, pad + self.height), slice(pad, pad + self.width)

    def crop_to(self, extent: Extent) -> tuple[Grid, tuple[slice, slice]] | None:
        """The part of this grid that `extent` (any CRS) touches, grown by a pixel, and its slices.

        None when the extent misses the grid.
        """
        ext = extent.to_crs(self.crs)
        if self.crs == WEB_MERCATOR or self.crs.is_geographic:  # the copy on this grid's side of 180°
            ext = ext.shifted_near((self.extent.xmin + self.extent.xmax) / 2)
        inv = ~self.transform
        (c0, r0), (c1, r1) = inv @ (ext.xmin, ext.ymax), inv @ (ext.xmax, ext.ymin)
        col0, col1 = max(0, math.floor(min(c0, c1)) - 1), min(self.width, math.ceil(max(c0, c1)) + 1)
        row0, row1 = max(0, math.floor(min(r0, r1)) - 1), min(self.height, math.ceil(max(r0, r1)) + 1)
        if col1 <= col0 or row1 <= row0:
            return None
        sub = Grid(self.crs, self.transform @ Affine.translation(col0, row0), col1 - col0, row1 - row0)
        return sub, (slice(row0, row1), slice(col0, col1))

    @classmethod
    def covering(cls, extent: Extent, res: float) -> Grid:
        """A grid of about `res` units per pixel covering `extent` exactly."""
        width = max(1, round((extent.xmax - extent.xmin) / res))
        height = max(1, round((extent.ymax - extent.ymin) / res))
        transform = Affine(
            (extent.xmax - extent.xmin) / width,
            0,
            extent.xmin,
            0,
            -(extent.ymax - extent.ymin) / height,
            extent.ymax,
        )
        return cls(extent.crs, transform, width, height)


def ground_resolution_in(crs: CRS, metres: float, latitude: float) -> float:
    """Units of `crs` that span `metres` on the ground at `latitude` (web mercator stretches)."""
    if crs.is_geographic:
        return metres / 111_320.0
    if crs == WEB_MERCATOR:
        return metres / max(math.cos(math.radians(latitude)), 1e-6)
    unit_metres: float = crs.linear_units_factor[1]  # rasterio ships no types
    return metres / unit_metres


def metres_per_unit(crs: CRS, latitude: float) -> float:
    """Ground metres covered by one unit of `crs` (inverse of `ground_resolution_in`)."""
    return 1.0 / ground_resolution_in(crs, 1.0, latitude)


def center_latitude(extent: Extent) -> float:
    geo = extent.to_crs(WGS84)
    return (geo.ymin + geo.ymax) / 2


def count_vertices(obj: object) -> int:
    """Positions in a GeoJSON (Multi)Polygon, Feature or FeatureCollection, counted without building
    anything (malformed parts count as nothing: building them reports what is wrong)."""
    if not isinstance(obj, dict):
        return 0
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        return sum(count_vertices(f) for f in features) if isinstance(features, list) else 0
    if kind == "Feature":
        return count_vertices(obj.get("geometry"))
    coordinates = obj.get("coordinates")
    polygons = [coordinates] if kind == "Polygon" else coordinates if kind == "MultiPolygon" else None
    if not isinstance(polygons, list):
        return 0
    rings = [ring for rings in polygons if isinstance(rings, list) for ring in rings]
    return sum(len(ring) for ring in rings if isinstance(ring, list))


def count_crossings(geom: BaseGeometry, limit: int) -> int:
    """Places where the rings of `geom` meet besides their own corners (crossings, touches, overlaps),
    counted until more than `limit` are found."""
    parts: list[np.ndarray] = []
    for ring in shapely.get_rings(shapely.get_parts(geom)):
        xy = shapely.get_coordinates(ring)
        parts.append(np.asarray(shapely.linestrings(np.stack([xy[:-1], xy[1:]], axis=1))))
    segments = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    tree, meetings = shapely.STRtree(segments), 0
    for start in range(0, len(segments), CROSSING_CHUNK):
        ours, others = tree.query(segments[start : start + CROSSING_CHUNK], predicate="intersects")
        meetings += int(np.count_nonzero(ours + start < others))
        if meetings - len(segments) > limit:  # each segment meets its successor at a corner
            break
    return max(0, meetings - len(segments))


def make_valid(geom: BaseGeometry, max_crossings: int = MAX_CROSSINGS) -> BaseGeometry:
    """`geom` repaired (the union of what its rings enclose), under a budget: ExtentError saying why
    when its edges meet in more than `max_crossings` places (repair time grows with them)."""
    crossings = count_crossings(geom, max_crossings)
    if crossings > max_crossings:
        reason = shapely.is_valid_reason(geom)
        raise ExtentError(
            f"the polygon is not valid ({reason}) and its edges cross each other in more than"
            f" {max_crossings} places, too many to repair: send it without crossing edges (in QGIS:"
            " Vector > Geometry Tools > Fix Geometries) or simplified"
        )
    return shapely.make_valid(geom, method="structure", keep_collapsed=False)


def polygonal(geom: BaseGeometry) -> BaseGeometry:
    """The polygonal part of `geom`, made valid; ExtentError when nothing with an area is left."""
    if not geom.is_valid:
        geom = make_valid(geom)
    if isinstance(geom, shapely.GeometryCollection):
        geom = shapely.union_all([g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    if geom.is_empty or geom.area <= 0 or geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ExtentError("the geometry encloses no area: send a Polygon or MultiPolygon with an inside")
    return geom


def polygon_from_geojson(obj: dict[str, Any], max_vertices: int | None = None) -> BaseGeometry:
    """A valid (Multi)Polygon from GeoJSON: a Polygon or MultiPolygon, or a Feature or
    FeatureCollection of them; ExtentError saying what is wrong, TooLargeError beyond `max_vertices`
    (checked before anything is built)."""
    if max_vertices is not None and (n := count_vertices(obj)) > max_vertices:
        raise TooLargeError(
            f"the geometry has {n} vertices; the limit is {max_vertices} (the server's --max_vertices):"
            " simplify it, or map large areas offline with `python -m web_tool.batch`"
        )
    return polygonal(_polygon_parts(obj))


def _polygon_parts(obj: object) -> BaseGeometry:
    """The (Multi)Polygon a GeoJSON object holds, as given (parts may overlap, rings may cross)."""
    if not isinstance(obj, dict):
        raise ExtentError("geometry must be a GeoJSON object")
    kind = obj.get("type")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise ExtentError('a FeatureCollection\'s "features" must be a list of GeoJSON Features')
        parts = [_polygon_parts(f) for f in features]
        if not parts:
            raise ExtentError("the FeatureCollection holds no features")
        # one MultiPolygon of all the parts (overlaps are merged when made valid); the stubs cannot tell
        # that a 1-D array of polygons gives one geometry, not an array
        return shapely.multipolygons(shapely.get_parts(parts))  # type: ignore[return-value]
    if kind == "Feature":
        return _polygon_parts(obj.get("geometry"))
    if kind not in ("Polygon", "MultiPolygon"):
        raise ExtentError(f"geometry must be a GeoJSON Polygon or MultiPolygon, got type {kind!r}")
    try:
        geom = shape(obj)
        coords = shapely.get_coordinates(geom)
    except Exception as exc:  # shapely raises assorted errors for malformed coordinates
        raise ExtentError(f"geometry is not a valid GeoJSON {kind}: {exc}") from None
    if not np.isfinite(coords).all():
        raise ExtentError("geometry has a non-finite coordinate")
    if coords.size and np.abs(coords).max() > MAX_COORD:
        raise ExtentError(f"geometry has a coordinate beyond ±{MAX_COORD:g}, which no CRS reaches")
    return geom
