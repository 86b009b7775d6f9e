"""Turn a finished class map into what a user downloads: a COG, a PNG preview and class statistics.

Nothing here predicts or reads imagery: the inputs are a tiled GeoTIFF of class indices (written
window by window by `mapping`) and the per-class totals accumulated while it was written.

* `write_cog` — uint8 class indices, nodata 255, the classes' colour map, internal overviews, and in
  its tags the class names and what made it (model, checkpoint, dataset, date: `tags`);
* `write_preview` — a small RGBA PNG read from the COG's overviews (never the full raster), and
  `write_overlay`, the same in EPSG:3857 for a web map (its bounds are in the statistics);
* beside them, optional by output key: GDAL's `.aux.xml` (class names, attribute table) and a QGIS
  `.qml` style (`export_styles`), class polygons as GeoPackage and GeoJSON (`vectorize`);
* `ClassStats` — pixel counts and ground areas per class; areas come from `row_areas_km2`, which
  is exact per row for geographic and Mercator grids (pixels are lat/lon rectangles there, whose
  area on the ellipsoid has a closed form) and planar (transform x units) for other projections.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject
from rasterio.warp import transform as transform_points
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from web_tool import db
from web_tool.geometry import WEB_MERCATOR, WGS84, Extent, Grid
from web_tool.rendering.images import hex_to_rgb, png_bytes

#: class index written where there is no prediction (outside the AOI, no imagery)
NODATA = 255
#: internal tile size of the exported COG
COG_BLOCK_PX = 256
#: overviews are added until the smallest is at most this many pixels on its long side
OVERVIEW_MIN_PX = 256
#: long side of the PNG preview, in pixels (at most)
PREVIEW_MAX_PX = 1024
#: map projection methods whose pixels are lat/lon rectangles (area computed on the ellipsoid)
CYLINDRICAL_METHODS = (
    "Popular Visualisation Pseudo Mercator",
    "Mercator (variant A)",
    "Mercator (variant B)",
)


# --------------------------------------------------------------------------------------------
# ground area of pixels


@lru_cache(maxsize=32)
def _crs_facts(wkt: str) -> tuple[float, float, str]:
    """(semi-major axis m, inverse flattening, projection method name) of a CRS."""
    import pyproj

    crs = pyproj.CRS.from_wkt(wkt)
    method = ""
    if crs.is_projected and crs.coordinate_operation is not None:
        method = crs.coordinate_operation.method_name
    ellipsoid = crs.ellipsoid
    if ellipsoid is None:  # a local (engineering) CRS: row_areas_km2 measures it in the plane
        return math.nan, math.nan, method
    return ellipsoid.semi_major_metre, ellipsoid.inverse_flattening, method


def zone_area_m2(lat_a: np.ndarray, lat_b: np.ndarray, dlon_deg: float, a: float, inv_f: float) -> np.ndarray:
    """Area (m²) on the ellipsoid between latitudes `lat_a` and `lat_b` (degrees), `dlon_deg` wide."""
    f = 1.0 / inv_f if inv_f else 0.0
    b2 = (a * (1 - f)) ** 2
    e = math.sqrt(f * (2 - f))

    def q(lat: np.ndarray) -> np.ndarray:
        s: np.ndarray = np.sin(np.radians(lat))
        if e == 0:
            return 2 * s
        return s / (1 - (e * s) ** 2) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)

    area: np.ndarray = np.abs(q(lat_a) - q(lat_b)) * b2 * math.radians(abs(dlon_deg)) / 2
    return area


def row_areas_km2(grid: Grid, row0: int = 0, nrows: int | None = None) -> np.ndarray:
    """Ground area (km²) of one pixel in each of rows `row0 .. row0+nrows` of a north-up `grid`."""
    nrows = grid.height - row0 if nrows is None else nrows
    t = grid.transform
    y_edges = t.f + t.e * (row0 + np.arange(nrows + 1, dtype=np.float64))
    a, inv_f, method = _crs_facts(grid.crs.to_wkt())
    if grid.crs.is_geographic:
        return zone_area_m2(y_edges[:-1], y_edges[1:], t.a, a, inv_f) / 1e6
    if method in CYLINDRICAL_METHODS:  # a pixel is a lat/lon rectangle: exact on the ellipsoid
        x0 = t.c + t.a * grid.width / 2
        lons, lats = transform_points(grid.crs, WGS84, [x0, x0 + t.a] * (nrows + 1), np.repeat(y_edges, 2))
        lats, dlon = np.asarray(lats)[::2], lons[1] - lons[0]
        return zone_area_m2(lats[:-1], lats[1:], dlon, a, inv_f) / 1e6
    unit = grid.crs.linear_units_factor[1]
    return np.full(nrows, abs(t.a * t.e - t.b * t.d) * unit * unit / 1e6)


# --------------------------------------------------------------------------------------------
# statistics


#: unit in which class areas are summed (1 mm² in km²): integers add up the same in any order
AREA_UNIT_KM2 = 1e-12


@dataclass
class ClassStats:
    """Per-class pixel counts and km², accumulated window by window (in any order, same result)."""

    classes: list[dict[str, Any]]
    pixels: np.ndarray = field(init=False)
    area_units: list[int] = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = np.zeros(len(self.classes), dtype=np.int64)
        self.area_units = [0] * len(self.classes)

    @property
    def km2(self) -> np.ndarray:
        return np.array(self.area_units, dtype=np.float64) * AREA_UNIT_KM2

    def add(self, class_map: np.ndarray, row_km2: np.ndarray) -> None:
        """Count an HxW window of class indices (NODATA ignored); `row_km2` = pixel area per row."""
        n = len(self.classes)
        flat = class_map.ravel()
        weights = np.broadcast_to(row_km2[:, None], class_map.shape).ravel()
        self.pixels += np.bincount(flat, minlength=256)[:n]
        km2 = np.bincount(flat, weights=weights, minlength=256)[:n]
        for i, value in enumerate(km2):
            self.area_units[i] += round(value / AREA_UNIT_KM2)

    def rows(self) -> list[dict[str, Any]]:
        km2 = self.km2
        total = km2.sum()
        return [
            {
                "index": i,
                "name": c["name"],
                "color": c["color"],
                "pixels": int(self.pixels[i]),
                "percent": float(100 * km2[i] / total) if total > 0 else 0.0,
                "km2": float(km2[i]),
            }
            for i, c in enumerate(self.classes)
        ]

    def to_dict(self, grid: Grid) -> dict[str, Any]:
        return {
            "classes": self.rows(),
            "total_pixels": int(self.pixels.sum()),
            "total_km2": float(self.km2.sum()),
            "crs": grid.crs.to_string(),
            "resolution": list(grid.res),
            "bounds_4326": list(overlay_extent(grid.extent).to_crs(WGS84).bounds),
        }

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["index", "name", "color", "pixels", "percent", "km2"])
        writer.writeheader()
        for row in self.rows():
            writer.writerow({**row, "percent": f"{row['percent']:.4f}", "km2": f"{row['km2']:.6f}"})
        return buf.getvalue()


def write_stats(stats: ClassStats, grid: Grid, json_path: Path, csv_path: Path) -> None:
    """The statistics as JSON and CSV files, each written atomically."""
    db.atomic_write(json_path, json.dumps(stats.to_dict(grid), indent=2).encode())
    db.atomic_write(csv_path, stats.to_csv().encode())


# --------------------------------------------------------------------------------------------
# COG and preview


def colormap(classes: list[dict[str, Any]]) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table: each class's colour, transparent black for NODATA."""
    table = {i: (*hex_to_rgb(c["color"]), 255) for i, c in enumerate(classes)}
    table[NODATA] = (0, 0, 0, 0)
    return table


def overview_levels(width: int, height: int) -> int:
    """How many 2x overviews bring the long side to at most OVERVIEW_MIN_PX (at least one)."""
    longest, levels = max(width, height), 0
    while longest / 2**levels > OVERVIEW_MIN_PX:
        levels += 1
    return max(1, min(levels, int(math.log2(max(longest, 2)))))


def write_cog(
    src: DatasetReader, dst_path: Path, classes: list[dict[str, Any]], tags: dict[str, Any] | None = None
) -> Path:
    """Copy the open class-index dataset `src` to a COG at `dst_path` (atomically), with `tags`."""
    metadata = {
        "CLASSES": json.dumps([c["name"] for c in classes]),
        **{f"CLASS_{i}": c["name"] for i, c in enumerate(classes)},
        **{k.upper(): str(v) for k, v in (tags or {}).items() if v is not None},
    }
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=COG_BLOCK_PX, blockysize=COG_BLOCK_PX, BIGTIFF="IF_SAFER")

    def translate(tmp: str) -> None:
        with warnings.catch_warnings():  # rio-cogeo announces that a colour map implies a palette
            warnings.filterwarnings("ignore", message="Dataset color interpretation was set to")
            cog_translate(
                src,
                tmp,
                profile,
                nodata=NODATA,
                overview_level=overview_levels(src.width, src.height),
                overview_resampling="nearest",
                colormap=colormap(classes),
                in_memory=False,
                quiet=True,
                additional_cog_metadata=metadata,
            )

    return db.atomic_write(dst_path, translate)


def preview_rgba(
    src: DatasetReader, classes: list[dict[str, Any]], max_px: int = PREVIEW_MAX_PX
) -> np.ndarray:
    """HxWx4 RGBA of the class map in `src`, decimated (from overviews) to at most `max_px` a side."""
    scale = max(1.0, max(src.width, src.height) / max_px)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    return class_rgba(src.read(1, out_shape=shape, resampling=Resampling.nearest), classes)


def class_rgba(index: np.ndarray, classes: list[dict[str, Any]]) -> np.ndarray:
    """HxWx4 RGBA of class indices: each class's colour, NODATA transparent."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    for i, rgba in colormap(classes).items():
        lut[i] = rgba
    image: np.ndarray = lut[index]
    return image


def write_preview(src: DatasetReader, dst_path: Path, classes: list[dict[str, Any]]) -> Path:
    return db.atomic_write(dst_path, png_bytes(preview_rgba(src, classes)))


def overlay_extent(extent: Extent) -> Extent:
    """The EPSG:3857 box an overlay of `extent` covers (a lat/lon box too: Mercator is separable)."""
    return extent.to_crs(WEB_MERCATOR)


def write_overlay(
    src: DatasetReader, dst_path: Path, classes: list[dict[str, Any]], max_px: int = PREVIEW_MAX_PX
) -> Path:
    """The class map as an RGBA PNG in EPSG:3857 (at most `max_px` a side), read from overviews:
    a web map shows it on the lat/lon box `overlay_extent` gives (statistics: `bounds_4326`)."""
    scale = max(1.0, max(src.width, src.height) / max_px)
    shape = (max(1, round(src.height / scale)), max(1, round(src.width / scale)))
    index = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    transform = src.transform * rasterio.Affine.scale(src.width / shape[1], src.height / shape[0])
    ext = overlay_extent(Extent.from_bounds(src.bounds, src.crs))
    grid = Grid.covering(ext, max(ext.xmax - ext.xmin, ext.ymax - ext.ymin) / max_px)
    out = np.full(grid.shape, NODATA, np.uint8)
    reproject(
        index,
        out,
        src_transform=transform,
        src_crs=src.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=Resampling.nearest,
        src_nodata=NODATA,
        dst_nodata=NODATA,
    )
    return db.atomic_write(dst_path, png_bytes(class_rgba(out, classes)))
