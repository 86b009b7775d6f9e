"""DataLoader: find the rasters that cover an extent and read them into a requested grid.

An rtree index of every file's footprint (in EPSG:3857) is built once; a read finds the files
that intersect the target grid, reads each at about the grid's resolution (decimated reads use
overviews) and warps it into the grid, first file first. Pixels no file covers are invalid.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import rtree
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning
from rasterio.warp import reproject
from rasterio.windows import Window, from_bounds
from shapely.geometry import box
from shapely.ops import unary_union

from web_tool.datasets import DatasetConfig
from web_tool.errors import NoImageryError, NotFoundError, TooLargeError
from web_tool.gdal_env import open_raster
from web_tool.geometry import (
    WEB_MERCATOR,
    WGS84,
    Extent,
    Grid,
    center_latitude,
    ground_resolution_in,
    metres_per_unit,
)

log = logging.getLogger(__name__)

# A nodata value beside an alpha band: nodata wins, as rasterio documents; nothing to warn about.
# (Set once here: warnings.catch_warnings() around each read is not thread-safe.)
warnings.filterwarnings("ignore", category=NodataShadowWarning)
# reproject() builds in-memory datasets that briefly have no transform before it sets the one we
# pass; rasterio silences the warning with catch_warnings(), which concurrent threads undo.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")

#: Largest patch (in output pixels, padding excluded) that one request may read.
MAX_PATCH_PIXELS = 2048 * 2048
#: Longest side of such a patch, in pixels (a thin strip fits the pixel cap, but not a PNG).
MAX_PATCH_SIDE = 16384


@dataclass(frozen=True)
class RasterFile:
    """What the index needs to know of one raster file."""

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    extent_3857: Extent

    @property
    def resolution_m(self) -> float:
        lat = center_latitude(self.extent_3857)
        return abs(self.transform.a) * metres_per_unit(self.crs, lat)


@dataclass
class Patch:
    """Pixels read into a grid: `data` is HxWxB, `valid` HxW (False where no file covers)."""

    grid: Grid
    data: np.ndarray
    valid: np.ndarray


def scan(paths: list[str]) -> list[RasterFile]:
    """Open each file once to learn its footprint; unreadable files are skipped with a warning."""
    files = []
    for path in paths:
        try:
            with open_raster(path) as src:
                if src.crs is None:
                    raise ValueError("it has no CRS")
                ext = Extent(*src.bounds, crs=src.crs).to_crs(WEB_MERCATOR)
                files.append(RasterFile(path, src.crs, src.transform, src.width, src.height,
                                        src.count, ext))  # fmt: skip
        except Exception as exc:
            log.warning("skipping %s: cannot read it as a georeferenced raster (%s)", path, exc)
    return files


def source_window(src, extent: Extent, margin: int = 2) -> Window | None:
    """The window of `src` that holds `extent` (in src's CRS), grown by `margin`; None if empty."""
    window = from_bounds(*extent.bounds, transform=src.transform)
    col0 = max(0, math.floor(window.col_off) - margin)
    row0 = max(0, math.floor(window.row_off) - margin)
    col1 = min(src.width, math.ceil(window.col_off + window.width) + margin)
    row1 = min(src.height, math.ceil(window.row_off + window.height) + margin)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_into(src, grid: Grid, bands: list[int], resampling: Resampling):
    """Warp `bands` of the open dataset `src` into the part of `grid` it covers.

    Returns ((B,h,w) array, hxw valid mask, (row slice, col slice) of that part in `grid`), or
    None when `src` does not reach into the grid. The source is read at about the grid's
    resolution (so zoomed-out reads stay cheap), and only the covered part of the grid is warped.
    """
    extent = grid.extent.to_crs(src.crs)
    window = source_window(src, extent)
    if window is None:
        return None
    step = (extent.xmax - extent.xmin) / grid.width / abs(src.transform.a)  # source px per grid px
    cropped = grid.crop_to(Extent(*src.window_bounds(window), crs=src.crs))
    if cropped is None:
        return None
    grid, slices = cropped
    factor = max(1, int(step))
    shape = (max(1, math.ceil(window.height / factor)), max(1, math.ceil(window.width / factor)))
    read_resampling = Resampling.average if resampling != Resampling.nearest else resampling
    data = src.read(bands, window=window, out_shape=(len(bands), *shape),
                    resampling=read_resampling if factor > 1 else Resampling.nearest)  # fmt: skip
    mask = src.dataset_mask(window=window, out_shape=shape)
    transform = src.window_transform(window) @ Affine.scale(window.width / shape[1], window.height / shape[0])
    out = np.zeros((len(bands), grid.height, grid.width), dtype=data.dtype)
    out_mask = np.zeros((grid.height, grid.width), dtype=np.uint8)
    common = dict(src_transform=transform, src_crs=src.crs, dst_transform=grid.transform,
                  dst_crs=grid.crs)  # fmt: skip
    reproject(data, out, resampling=resampling, **common)
    reproject(mask, out_mask, resampling=Resampling.nearest, **common)
    return out, out_mask > 0, slices


class DataLoader:
    """The rasters of one dataset, indexed by footprint, read into any grid on request."""

    def __init__(self, config: DatasetConfig, max_pixels: int = MAX_PATCH_PIXELS):
        self.config = config
        self.name = config.name
        self.max_pixels = max_pixels
        self.files = scan(config.paths)
        if not self.files:
            raise NotFoundError(
                f"dataset {config.name!r} has no readable rasters"
                f" (looked at {len(config.paths)} path(s)); for the demo run `make demo` first"
            )
        self.label_files = scan(config.label_paths)
        self.index = self._build_index(self.files)
        self.label_index = self._build_index(self.label_files)
        self.footprint = unary_union([box(*f.extent_3857.bounds) for f in self.files])
        self.resolution_m = float(np.median([f.resolution_m for f in self.files]))
        self.crs = self.files[0].crs

    @staticmethod
    def _build_index(files: list[RasterFile]) -> rtree.index.Index:
        index = rtree.index.Index()
        for i, f in enumerate(files):
            index.insert(i, f.extent_3857.bounds)
        return index

    @property
    def extent_3857(self) -> Extent:
        return Extent(*self.footprint.bounds, crs=WEB_MERCATOR)

    @property
    def classes(self) -> list[dict]:
        return self.config.classes

    def describe(self) -> dict:
        """The dataset as `GET /datasets` lists it."""
        ext = self.extent_3857
        return {
            "name": self.name,
            "default": self.config.default,
            "crs": self.crs.to_string(),
            "resolution": round(self.resolution_m, 3),
            "bounds_3857": list(ext.bounds),
            "bounds_4326": list(ext.to_crs(WGS84).bounds),
            "classes": self.classes,
            "files": len(self.files),
            "has_labels": bool(self.label_files),
        }

    def files_for(self, extent: Extent, labels: bool = False) -> list[RasterFile]:
        """The files whose footprint intersects `extent`, in configuration order."""
        files, index = (self.label_files, self.label_index) if labels else (self.files, self.index)
        hits = index.intersection(extent.to_crs(WEB_MERCATOR).bounds)
        return [files[i] for i in sorted(hits)]

    def grid_for(self, extent: Extent) -> Grid:
        """The EPSG:3857 grid at about native resolution that covers `extent` exactly.

        Raises TooLargeError before anything is read when it holds more than `max_pixels`.
        """
        ext = extent.to_crs(WEB_MERCATOR)
        res = ground_resolution_in(WEB_MERCATOR, self.resolution_m, center_latitude(ext))
        # the sizes Grid.covering will give (at least a pixel each way: a sliver is still a column)
        width = max(1, round((ext.xmax - ext.xmin) / res))
        height = max(1, round((ext.ymax - ext.ymin) / res))
        if width * height > self.max_pixels:
            side = int(math.sqrt(self.max_pixels) * self.resolution_m)
            raise TooLargeError(
                f"extent is about {width} x {height} px at the dataset's"
                f" {self.resolution_m:g} m resolution; the limit is {self.max_pixels} px"
                f" (about {side} m x {side} m): request a smaller extent or use /predTile"
            )
        if max(width, height) > MAX_PATCH_SIDE:
            raise TooLargeError(
                f"extent is about {width} x {height} px at the dataset's {self.resolution_m:g} m"
                f" resolution; the limit is {MAX_PATCH_SIDE} px a side: request a squarer extent"
            )
        return Grid.covering(ext, res)

    def native_grid(self, extent: Extent) -> Grid:
        """A grid in the CRS of the first file under `extent`, on that file's own pixel lattice."""
        files = self.files_for(extent) or self.files
        f = files[0]
        ext = extent.to_crs(f.crs)
        inv = ~f.transform
        c0, r0 = inv @ (ext.xmin, ext.ymax)
        c1, r1 = inv @ (ext.xmax, ext.ymin)
        (c0, c1), (r0, r1) = sorted((c0, c1)), sorted((r0, r1))
        c0, r0, c1, r1 = math.floor(c0), math.floor(r0), math.ceil(c1), math.ceil(r1)
        transform = f.transform @ Affine.translation(c0, r0)
        return Grid(f.crs, transform, max(1, c1 - c0), max(1, r1 - r0))

    def read(self, grid: Grid, labels: bool = False) -> Patch:
        """Mosaic every file under `grid` into it; NoImageryError if none reaches it."""
        files = self.files_for(grid.extent, labels=labels)
        bands = [1] if labels else self.config.bands
        resampling = Resampling.nearest if labels else Resampling.bilinear
        data = np.zeros((grid.height, grid.width, len(bands)), dtype=np.uint8)
        valid = np.zeros(grid.shape, dtype=bool)
        for f in files:
            with open_raster(f.path) as src:
                result = read_into(src, grid, bands, resampling)
            if result is None:
                continue
            part, part_valid, (rows, cols) = result
            region, region_valid = data[rows, cols], valid[rows, cols]  # views into the mosaic
            fill = part_valid & ~region_valid
            region[fill] = np.moveaxis(part, 0, -1)[fill]
            region_valid |= fill
        if not valid.any():
            what = "label rasters" if labels else "imagery"
            bounds = ", ".join(f"{v:.1f}" for v in self.extent_3857.bounds)
            raise NoImageryError(
                f"no {what} of dataset {self.name!r} covers the requested extent; the dataset"
                f" covers EPSG:3857 [{bounds}] (see GET /datasets)"
            )
        return Patch(grid, data, valid)
