"""DataLoader: find the rasters that cover an extent and read them into a requested grid.

An rtree index of every file's footprint (in EPSG:3857) is built once; a read finds the files
that intersect the target grid, reads each at about the grid's resolution (decimated reads use
overviews) and warps it into the grid, first file first. Pixels no file covers are invalid.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rtree
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader
from rasterio.warp import reproject
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window, from_bounds
from shapely.geometry import box
from shapely.ops import unary_union

from web_tool.errors import ConfigError, ExtentError, NoImageryError, TooLargeError
from web_tool.geometry import (
    WEB_MERCATOR,
    WGS84,
    WORLD_X,
    Extent,
    Grid,
    beyond_web_map,
    center_latitude,
    ground_resolution_in,
    metres_per_unit,
    web_map_bounds,
)
from web_tool.imagery.bands import choose_bands
from web_tool.imagery.datasets import DatasetConfig
from web_tool.imagery.overviews import MAX_SAMPLED_PX, MIN_FACTOR, LowRes
from web_tool.imagery.raster_pool import POOL
from web_tool.imagery.rasterfiles import RasterFile, scan
from web_tool.imagery.stretch import Scaling

log = logging.getLogger(__name__)

# A nodata value beside an alpha band: nodata wins, as rasterio documents; nothing to warn about.
# (Set once here: warnings.catch_warnings() around each read is not thread-safe.)
warnings.filterwarnings("ignore", category=NodataShadowWarning)
# reproject() builds in-memory datasets that briefly have no transform before it sets the one we
# pass; rasterio silences the warning with catch_warnings(), which concurrent threads undo.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")

#: resamplings that write the destination pixels whose centre falls on the source, as nearest does
CENTRE_SAMPLED = (Resampling.nearest, Resampling.bilinear)
#: Largest patch (in output pixels, padding excluded) that one request may read.
MAX_PATCH_PIXELS = 2048 * 2048
#: Longest side of such a patch, in pixels (a thin strip fits the pixel cap, but not a PNG).
MAX_PATCH_SIDE = 16384

#: what read_into gives for one file: ((B,h,w) values, hxw valid, (rows, cols) of that part in the grid)
FilePart = tuple[np.ndarray, np.ndarray, tuple[slice, slice]]


@dataclass
class Patch:
    """Pixels read into a grid: `data` is HxWxB uint8 model input, `valid` HxW (False where no file
    covers), `rgb` HxWx3 uint8 as the map shows the imagery (None: the first bands of `data`)."""

    grid: Grid
    data: np.ndarray
    valid: np.ndarray
    rgb: np.ndarray | None = None

    @property
    def display(self) -> np.ndarray:
        """HxWx3 uint8 for the eye: `rgb`, else the first three bands (one band: grey)."""
        if self.rgb is not None:
            return self.rgb
        return self.data[..., :3] if self.data.shape[-1] >= 3 else np.repeat(self.data[..., :1], 3, axis=-1)

    def crop(self, grid: Grid, rows: slice, cols: slice) -> Patch:
        """The part of this patch at `rows`, `cols`, which is `grid`."""
        rgb = None if self.rgb is None else self.rgb[rows, cols]
        return Patch(grid, self.data[rows, cols], self.valid[rows, cols], rgb)


def source_window(src: DatasetReader, extent: Extent, margin: int = 2) -> Window | None:
    """The window of `src` that holds `extent` (in src's CRS), grown by `margin`; None if empty."""
    window = from_bounds(*extent.bounds, transform=src.transform)
    col0 = max(0, math.floor(window.col_off) - margin)
    row0 = max(0, math.floor(window.row_off) - margin)
    col1 = min(src.width, math.ceil(window.col_off + window.width) + margin)
    row1 = min(src.height, math.ceil(window.row_off + window.height) + margin)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)


def read_into(
    src: DatasetReader,
    grid: Grid,
    bands: list[int],
    resampling: Resampling,
    f: RasterFile | None = None,
    nodata: float | None = None,
    max_px: int | None = None,
) -> FilePart | None:
    """Warp `bands` of the open dataset `src` into the part of `grid` it covers.

    Returns ((B,h,w) array in the file's own data type, hxw valid mask, (row slice, col slice) of
    that part in `grid`), or None when `src` does not reach into the grid. The source is read at
    about the grid's resolution (so zoomed-out reads stay cheap), and only the covered part of the
    grid is warped; a grid on the file's own pixel lattice is read as it is, without a warp. Pixels
    the file masks are invalid: its dataset mask, or with `f` (what start-up learnt of the file) as
    `f.valid_mask` says, with `nodata` for a file that declares none. With `max_px`, a large file
    without overviews is sampled (nearest) at a resolution that touches blocks of at most that many
    pixels in all: coarser, but bounded.
    """
    offset = lattice_offset(src, grid)
    if offset is not None:
        return read_on_lattice(src, grid, offset, bands, f, nodata)
    extent = grid.extent.to_crs(src.crs)
    if src.crs.is_geographic:  # the copy of the extent on the file's side of the antimeridian
        extent = extent.shifted_near((src.bounds.left + src.bounds.right) / 2)
    window = source_window(src, extent)
    if window is None:
        return None
    step = (extent.xmax - extent.xmin) / grid.width / abs(src.transform.a)  # source px per grid px
    cropped = grid.crop_to(Extent.from_bounds(src.window_bounds(window), src.crs))
    if cropped is None:
        return None
    grid, slices = cropped
    factor = max(1, int(step))
    shape = (max(1, math.ceil(window.height / factor)), max(1, math.ceil(window.width / factor)))
    read_resampling = Resampling.average if resampling != Resampling.nearest else resampling
    if max_px is not None and f is not None and f.needs_overviews:
        shape, sampled = bounded_shape(shape, window, f.block, max(16, max_px // (f.block[0] * f.block[1])))
        read_resampling = Resampling.nearest if sampled else read_resampling
    data = src.read(
        bands,
        window=window,
        out_shape=(len(bands), *shape),
        resampling=read_resampling if factor > 1 else Resampling.nearest,
    )
    all_valid = f is not None and f.all_valid(nodata) and resampling in CENTRE_SAMPLED
    mask = None if all_valid else file_mask(src, data, window, shape, f, nodata)
    transform = src.window_transform(window) @ Affine.scale(window.width / shape[1], window.height / shape[0])
    out, valid = warp(data, mask, transform, src.crs, grid, resampling)
    return out, valid, slices


def file_mask(
    src: DatasetReader,
    data: np.ndarray,
    window: Window,
    shape: tuple[int, int],
    f: RasterFile | None,
    nodata: float | None,
) -> np.ndarray:
    """HxW uint8 mask (255 valid) of `data`, read at `window` into `shape`: the dataset mask, or with
    `f` as `f.valid_mask` says."""
    if f is None:
        mask: np.ndarray = src.dataset_mask(window=window, out_shape=shape)
        return mask
    return f.valid_mask(src, data, window, shape, nodata)


def warp(
    data: np.ndarray, mask: np.ndarray | None, transform: Affine, crs: CRS, grid: Grid, resampling: Resampling
) -> tuple[np.ndarray, np.ndarray]:
    """((B,H,W) `data` warped into `grid`, HxW valid) from `data` on `transform` in `crs` and its
    `mask` (warped nearest); mask None: every pixel is valid (`resampling` is CENTRE_SAMPLED)."""
    common = dict(src_transform=transform, src_crs=crs, dst_transform=grid.transform, dst_crs=grid.crs)
    if mask is None:
        # a band of ones warped with the data lands on exactly the pixels a warp of an all-valid
        # mask would (GDAL writes the pixels whose centre falls on the source, with nearest as with
        # bilinear): one warp, not two
        data = np.concatenate([data, np.ones((1, *data.shape[1:]), data.dtype)])
    out = np.zeros((len(data), grid.height, grid.width), dtype=data.dtype)
    reproject(data, out, resampling=resampling, num_threads=2, **common)
    if mask is None:
        return out[:-1], out[-1] > 0
    out_mask = np.zeros((grid.height, grid.width), dtype=np.uint8)
    reproject(mask, out_mask, resampling=Resampling.nearest, **common)
    return out, out_mask > 0


def lattice_offset(src: DatasetReader, grid: Grid) -> tuple[int, int] | None:
    """(row, col) of `grid`'s first pixel among `src`'s pixels when `grid` lies on the file's own
    pixel lattice (same CRS, same pixel size, a whole number of pixels away), else None. Not for
    files in degrees: a grid there may be a copy one world away, which only the warp finds."""
    t, g = src.transform, grid.transform
    if (t.b, t.d, g.b, g.d) != (0, 0, 0, 0) or not (math.isclose(t.a, g.a) and math.isclose(t.e, g.e)):
        return None
    col, row = ~t * (g.c, g.f)
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    if src.crs.is_geographic or grid.crs != src.crs:
        return None
    return round(row), round(col)


def read_on_lattice(
    src: DatasetReader,
    grid: Grid,
    offset: tuple[int, int],
    bands: list[int],
    f: RasterFile | None,
    nodata: float | None,
) -> FilePart | None:
    """read_into for a `grid` on the file's own lattice, `offset` (row, col) pixels into it: the
    pixels as they are (what a warp gives there, without its cost)."""
    row, col = offset
    row0, col0 = max(0, row), max(0, col)
    row1, col1 = min(src.height, row + grid.height), min(src.width, col + grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    window = Window(col0, row0, col1 - col0, row1 - row0)
    shape = (row1 - row0, col1 - col0)
    data = src.read(bands, window=window)
    slices = (slice(row0 - row, row1 - row), slice(col0 - col, col1 - col))
    return data, file_mask(src, data, window, shape, f, nodata) > 0, slices


def bounded_shape(
    shape: tuple[int, int], window: Window, block: tuple[int, int], max_blocks: int
) -> tuple[tuple[int, int], bool]:
    """(read shape, whether it was cut) so that a nearest read of `window` touches at most
    `max_blocks` blocks: one sampled row (column) per block row (column) at most."""
    rows = min(shape[0], math.ceil(window.height / block[0]))
    cols = min(shape[1], math.ceil(window.width / block[1]))
    if rows * cols <= max_blocks:
        return shape, False
    k = math.sqrt(max_blocks / (rows * cols))
    return (max(1, int(rows * k)), max(1, int(cols * k))), True


def mosaic_dtype(files: list[RasterFile]) -> np.dtype:
    """A data type that holds the values of every file (float32 for mixed or 64-bit types)."""
    dtype = np.result_type(*{f.dtype for f in files})
    return dtype if dtype.itemsize <= 4 and dtype.kind in "uif" else np.dtype(np.float32)


#: a configured resolution may be at most this many times finer than the files' own
MAX_UPSAMPLING = 4


class DataLoader:
    """The rasters of one dataset, indexed by footprint, read into any grid on request.

    `n_bands` is how many inputs the model takes (None: any), which decides the default bands;
    `cache_dir` keeps what start-up computes (band statistics) for the next start.
    """

    def __init__(
        self,
        config: DatasetConfig,
        max_pixels: int = MAX_PATCH_PIXELS,
        n_bands: int | None = None,
        cache_dir: str | Path | None = None,
    ):
        self.config = config
        self.name = config.name
        self.max_pixels = max_pixels
        files = scan(config.paths)
        if not files:
            raise ConfigError(
                f"dataset {config.name!r} has no readable rasters (looked at {len(config.paths)} file(s):"
                f" {', '.join(config.paths[:3])}{' …' * (len(config.paths) > 3)}; see the warnings above)"
            )
        self.bands, self.files = choose_bands(config.name, config.bands, files, n_bands)
        self.scaling = Scaling.for_dataset(
            self.files, self.bands, config.scale, config.nodata, Path(cache_dir) if cache_dir else None
        )
        self.dtype = mosaic_dtype(self.files)
        self.label_files = scan(config.label_paths, imagery=False)
        self.index = self._build_index(self.files)
        self.label_index = self._build_index(self.label_files)
        #: libspatialindex is not thread-safe, not even for queries (they share its memory pool):
        #: the server's threads query the indexes one at a time (a query takes microseconds)
        self._index_lock = threading.Lock()
        self.footprint = unary_union([box(*b) for f in self.files for b in f.boxes_3857()])
        #: the files' own ground metres per pixel (their median)
        self.files_resolution_m = own = float(np.median([f.resolution_m for f in self.files]))
        if config.resolution is not None and config.resolution < own / MAX_UPSAMPLING:
            raise ConfigError(
                f"dataset {config.name!r}: resolution {config.resolution:g} m is more than"
                f" {MAX_UPSAMPLING}x finer than its files' own {own:.2f} m: that adds no detail and"
                f" multiplies every request's work by {(own / config.resolution) ** 2:.0f}; give"
                f" {own / MAX_UPSAMPLING:.2f} m or coarser"
            )
        #: ground metres per pixel of every grid this dataset is read on: the files' own, or the
        #: configured one (a model trained at 1 m fed 0.6 m imagery would see every object too large)
        self.resolution_m = config.resolution or own
        self.crs = self.files[0].crs
        #: files that failed to read at request time (moved, deleted, damaged): left out from then on
        self.broken: set[str] = set()
        #: the low-resolution copy zoomed-out reads come from (overviews.py), and where it stands
        self.lowres: LowRes | None = None
        self.lowres_state: str | None = None

    @staticmethod
    def _build_index(files: list[RasterFile]) -> rtree.index.Index:
        index = rtree.index.Index()
        for i, f in enumerate(files):
            for bounds in f.boxes_3857():
                index.insert(i, bounds)
        return index

    @property
    def extent_3857(self) -> Extent:
        """The dataset's bounds as a web map sees them (x beyond 180° across the antimeridian)."""
        boxes = np.array([f.extent_3857.bounds for f in self.files])
        return Extent.from_bounds([*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0)], WEB_MERCATOR)

    @property
    def lonlat(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in degrees; east beyond 180 across the antimeridian."""
        boxes = np.array([f.lonlat for f in self.files])
        return (*boxes[:, :2].min(axis=0), *boxes[:, 2:].max(axis=0))

    @property
    def classes(self) -> list[dict[str, Any]]:
        return self.config.classes

    @property
    def start_4326(self) -> tuple[float, float]:
        """(lng, lat) where a map of the dataset opens: the middle of its bounds when there is imagery
        there, else the middle of the imagery nearest to it (files may lie far apart)."""
        centre = box(*self.extent_3857.bounds).centroid
        if not self.footprint.contains(centre):
            part = min(getattr(self.footprint, "geoms", [self.footprint]), key=centre.distance)
            centre = part.centroid if part.contains(part.centroid) else part.representative_point()
        (lng,), (lat,) = warp_transform(WEB_MERCATOR, WGS84, [centre.x], [centre.y])
        return float(lng), float(lat)

    def describe(self) -> dict[str, Any]:
        """The dataset as `GET /datasets` lists it."""
        return {
            "name": self.name,
            "default": self.config.default,
            "crs": self.crs.to_string(),
            "resolution": round(self.resolution_m, 3),
            "bounds_3857": [float(v) for v in self.extent_3857.bounds],
            "bounds_4326": [float(v) for v in self.lonlat],
            "start_4326": list(self.start_4326),
            "classes": self.classes,
            "files": len(self.files),
            "bands": self.bands,
            "has_labels": bool(self.label_files),
            "lowres_cache": self.lowres_state,
        }

    def files_for(self, extent: Extent, labels: bool = False) -> list[RasterFile]:
        """The files whose footprint intersects `extent`, in configuration order."""
        files, index = (self.label_files, self.label_index) if labels else (self.files, self.index)
        try:
            bounds = web_map_bounds(extent)
        except ExtentError:  # wholly beyond the web map's latitudes, where no file is indexed
            return []
        with self._index_lock:
            hits = list(index.intersection(bounds))
        return [files[i] for i in sorted(set(hits)) if files[i].path not in self.broken]

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
                f" (about {side} m x {side} m): ask for a smaller area, or export it as a map"
            )
        if max(width, height) > MAX_PATCH_SIDE:
            raise TooLargeError(
                f"extent is about {width} x {height} px at the dataset's {self.resolution_m:g} m"
                f" resolution; the limit is {MAX_PATCH_SIDE} px a side: request a squarer extent"
            )
        if ext.ymin < -WORLD_X or ext.ymax > WORLD_X:
            raise ExtentError(beyond_web_map(extent))
        return Grid.covering(ext, res)

    def native_grid(self, extent: Extent) -> Grid:
        """A grid in the CRS of the first file under `extent`, on that file's own pixel lattice (with
        a configured resolution, a lattice of that pixel size from the file's origin)."""
        files = self.files_for(extent) or self.files
        f = files[0]
        ext = extent.to_crs(f.crs)
        lattice = f.transform
        if self.config.resolution is not None:
            lattice = lattice @ Affine.scale(self.config.resolution / f.resolution_m)
        inv = ~lattice
        c0, r0 = inv @ (ext.xmin, ext.ymax)
        c1, r1 = inv @ (ext.xmax, ext.ymin)
        (c0, c1), (r0, r1) = sorted((c0, c1)), sorted((r0, r1))
        c0, r0, c1, r1 = math.floor(c0), math.floor(r0), math.ceil(c1), math.ceil(r1)
        transform = lattice @ Affine.translation(c0, r0)
        return Grid(f.crs, transform, max(1, c1 - c0), max(1, r1 - r0))

    def _read_file(
        self, f: RasterFile, grid: Grid, bands: list[int], resampling: Resampling, max_px: int | None = None
    ) -> FilePart | None:
        """read_into for one file; a file that fails (moved, damaged) is logged and left out."""
        try:
            with POOL.open(f.path) as src:
                return read_into(src, grid, bands, resampling, f, self.config.nodata, max_px)
        except (RasterioError, OSError) as exc:
            log.error("dataset %r: leaving out %s, which cannot be read any more: %s", self.name, f.path, exc)
            self.broken.add(f.path)
            return None

    def mosaic(
        self,
        grid: Grid,
        files: list[RasterFile],
        bands: list[int],
        resampling: Resampling,
        dtype: np.dtype,
        max_px: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(HxWxB raw values, HxW valid) of `files` warped into `grid`, first file first."""
        data = np.zeros((grid.height, grid.width, len(bands)), dtype=dtype)
        valid = np.zeros(grid.shape, dtype=bool)
        for f in files:
            result = self._read_file(f, grid, bands, resampling, max_px)
            if result is None:
                continue
            part, part_valid, (rows, cols) = result
            region, region_valid = data[rows, cols], valid[rows, cols]  # views into the mosaic
            fill = part_valid & ~region_valid
            for band in range(len(bands)):  # band by band: 15x faster than a boolean gather
                np.copyto(region[..., band], part[band], where=fill, casting="unsafe")
            region_valid |= fill
        return data, valid

    def read(self, grid: Grid, labels: bool = False) -> Patch:
        """Mosaic every file under `grid` into it; NoImageryError if none reaches it.

        Imagery comes out scaled to the model's 0..255 input, with `rgb` as the map shows it.
        """
        files = self.files_for(grid.extent, labels=labels)
        if labels:
            data, valid = self.mosaic(grid, files, [1], Resampling.nearest, np.dtype(np.uint8))
            rgb = None
        else:
            raw, valid = self.read_imagery(grid, files)
            data, rgb = self.scale(raw, valid)
        if not valid.any():
            what = "label rasters" if labels else "imagery"
            w, s, e, n = self.extent_3857.to_crs(WGS84).bounds
            raise NoImageryError(
                f"no {what} of dataset {self.name!r} here: it covers latitudes {s:.5f} to {n:.5f}"
                f" and longitudes {w:.5f} to {e:.5f}"
            )
        return Patch(grid, data, valid, rgb)

    def read_padded(self, grid: Grid, pad: int) -> tuple[Patch, Patch]:
        """(`grid` read with `pad` px of context on every side, the part of it that is `grid`): what a
        model needs to predict the edges of `grid` as well as its middle. NoImageryError as `read`."""
        padded = self.read(grid.padded(pad))
        return padded, padded.crop(grid, *grid.inside_padded(pad))

    def decimation(self, grid: Grid) -> float:
        """How many of the dataset's pixels (a side) make one pixel of `grid`."""
        metres = abs(grid.transform.a) * metres_per_unit(grid.crs, center_latitude(grid.extent))
        return metres / self.resolution_m

    def read_imagery(self, grid: Grid, files: list[RasterFile]) -> tuple[np.ndarray, np.ndarray]:
        """(HxWxB raw values, HxW valid) under `grid`: zoomed out, from the low-resolution copy
        when there is one, else with a bounded sample of files that lack overviews."""
        lowres = self.lowres
        coarse = files and self.decimation(grid) >= (lowres.factor if lowres else MIN_FACTOR)
        if coarse and lowres is not None:
            return self.mosaic(grid, [lowres.file], lowres.bands, Resampling.bilinear, self.dtype)
        return self.mosaic(
            grid, files, self.bands, Resampling.bilinear, self.dtype, MAX_SAMPLED_PX if coarse else None
        )

    def scale(self, raw: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(HxWxB uint8 model input, HxWx3 display or None) of raw values; missing pixels are 0."""
        data, rgb = self.scaling.model_input(raw), self.scaling.rgb(raw)
        for array in (data, rgb):
            if array is not None and array is not raw:
                array[~valid] = 0
        return data, rgb
