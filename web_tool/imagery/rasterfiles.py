"""What each raster file of a dataset is: its grid, bands, masks and footprint, learnt once at start-up.

`scan(paths)` opens every file once. A file that cannot serve (unreadable, no CRS, a VRT whose
sources are missing, entirely beyond the latitudes a web map shows) is skipped with a warning that
names it and says why. Footprints are kept in EPSG:3857 as a web map sees them: a file across the
antimeridian extends beyond x = 180° (unwrapped, so west < east) and is also indexed one world to
the west; a polar file is cut at the web map's ±85.05° latitude.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import mercantile
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window

from web_tool.errors import ExtentError
from web_tool.geometry import (
    MAX_LATITUDE,
    WEB_MERCATOR,
    WORLD_X,
    Extent,
    center_latitude,
    lonlat_bounds,
    metres_per_unit,
)
from web_tool.imagery.gdal_env import is_remote, open_raster

log = logging.getLogger(__name__)

#: files at most this many pixels a side read fast enough at any zoom without overviews
SMALL_FILE_PX = 2048

#: what tells one version of a file from the next: (path, size, mtime in ns), or (path,) when remote
Stamp = tuple[str] | tuple[str, int, int]


@dataclass(frozen=True)
class RasterFile:
    """What the index and the reader need to know of one raster file."""

    path: str
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    #: colour interpretation of each band ("red", "nir", "alpha", "undefined", ...)
    colorinterp: tuple[str, ...]
    nodata: float | None
    #: GDAL's dataset mask says which pixels are missing (nodata, an alpha band, an internal mask);
    #: not a band tagged alpha that holds image values (it is read as a band)
    masked: bool
    has_overviews: bool
    #: (rows, cols) of the file's internal blocks
    block: tuple[int, int]
    #: (west, south, east, north) in degrees; east beyond 180 when the file crosses the antimeridian
    lonlat: tuple[float, float, float, float]
    #: (min, max) of each band as the file declares them (STATISTICS_MINIMUM/MAXIMUM), or None
    statistics: tuple[tuple[float, float] | None, ...] = ()
    #: an alpha band that GDAL does not take as the mask (the reader applies it)
    extra_alpha: int | None = None
    #: pixels that are 0 in every band are missing: the file has black borders and declares no mask
    black_fill: bool = False

    def valid_mask(
        self,
        src: DatasetReader,
        data: np.ndarray,
        window: Window | None,
        shape: tuple[int, int],
        nodata: float | None = None,
    ) -> np.ndarray:
        """HxW uint8 (255 valid, 0 missing) for `data`, read from `src` at `window` into `shape`:
        the file's own mask, its alpha band, and pixels equal to its missing value in every band."""
        mask = (
            src.dataset_mask(window=window, out_shape=shape) if self.masked else np.full(shape, 255, np.uint8)
        )
        if self.extra_alpha is not None:
            alpha = src.read(self.extra_alpha, window=window, out_shape=shape, resampling=Resampling.nearest)
            mask[alpha == 0] = 0
        missing = self.missing_value(nodata)
        if missing is not None:
            mask[(data == missing).all(axis=0)] = 0
        return mask

    def all_valid(self, nodata: float | None = None) -> bool:
        """Whether `valid_mask` is all valid whatever is read: no mask, alpha or missing value."""
        return not self.masked and self.extra_alpha is None and self.missing_value(nodata) is None

    def missing_value(self, configured: float | None) -> float | None:
        """The value that, in every band, marks a missing pixel beyond what the file masks itself:
        the dataset's `nodata` for a file that declares none, else 0 for a file with black borders."""
        if configured is not None and self.nodata is None:
            return configured
        return 0 if self.black_fill else None

    @property
    def extent_3857(self) -> Extent:
        """The footprint as a web map sees it (x beyond the world's edge across the antimeridian)."""
        west, south, east, north = self.lonlat
        (x0, y0), (x1, y1) = mercantile.xy(west, south), mercantile.xy(east, north)
        return Extent(x0, y0, x1, y1, crs=WEB_MERCATOR)

    def boxes_3857(self) -> list[tuple[float, float, float, float]]:
        """The footprint, and its copy one world to the west or east when it crosses the world's edge."""
        box = self.extent_3857.bounds
        copies = [box]
        for shift, beyond in ((-2 * WORLD_X, box[2] > WORLD_X), (2 * WORLD_X, box[0] < -WORLD_X)):
            if beyond:
                copies.append((box[0] + shift, box[1], box[2] + shift, box[3]))
        return copies

    @property
    def alpha_band(self) -> int | None:
        """The band that is alpha (a mask), if any."""
        return next((i + 1 for i, c in enumerate(self.colorinterp) if c == "alpha"), None)

    @property
    def resolution_m(self) -> float:
        lat = center_latitude(self.extent_3857)
        return abs(self.transform.a) * metres_per_unit(self.crs, lat)

    @property
    def needs_overviews(self) -> bool:
        """Zoomed-out reads of this file must read every pixel (no overviews, and large)."""
        return not self.has_overviews and max(self.width, self.height) > SMALL_FILE_PX

    def band_list(self) -> str:
        """The bands as a message shows them: "1 red, 2 green, 3 blue, 4 alpha"."""
        return ", ".join(f"{i + 1} {c}" for i, c in enumerate(self.colorinterp))


def file_stamp(path: str) -> Stamp:
    """What tells one version of a file from the next, for caches: its size and modification time
    (a remote file: its path only)."""
    if is_remote(path):
        return (path,)
    stat = os.stat(path)
    return (path, stat.st_size, stat.st_mtime_ns)


def file_lonlat(src: DatasetReader) -> tuple[float, float, float, float]:
    """(west, south, east, north) of `src` in degrees, unwrapped across the antimeridian and cut to
    the latitudes of a web map; ValueError when nothing of it is left."""
    try:
        return lonlat_bounds(Extent.from_bounds(src.bounds, src.crs))
    except ExtentError:
        raise ValueError(
            f"it lies beyond {MAX_LATITUDE:.2f}° latitude, which web maps (EPSG:3857) cannot show"
        ) from None


def missing_vrt_sources(src: DatasetReader) -> list[str]:
    """The local files a VRT refers to that do not exist."""
    if src.driver != "VRT":
        return []
    return [f for f in src.files[1:] if not f.startswith("/vsi") and not os.path.exists(f)]


def has_black_fill(src: DatasetReader) -> bool:
    """Whether a file has a pixel that is 0 in every band at a corner: the black border of a
    reprojected or clipped image (four one-pixel reads)."""
    corners = [(0, 0), (0, src.width - 1), (src.height - 1, 0), (src.height - 1, src.width - 1)]
    return any(not src.read(window=Window(col, row, 1, 1)).any() for row, col in corners)


def declared_statistics(src: DatasetReader, band: int) -> tuple[float, float] | None:
    """(min, max) of `band` from the file's own statistics (GDAL metadata or .aux.xml), if any."""
    tags = src.tags(band)
    try:
        return float(tags["STATISTICS_MINIMUM"]), float(tags["STATISTICS_MAXIMUM"])
    except (KeyError, ValueError):
        return None


def sample_band(src: DatasetReader, band: int) -> np.ndarray:
    """Some values of `band`, cheaply: a small decimated read, or a few blocks of a large file
    without overviews."""
    if src.overviews(band) or max(src.width, src.height) <= SMALL_FILE_PX:
        small: np.ndarray = src.read(band, out_shape=(64, 64), resampling=Resampling.nearest)
        return small
    rows, cols = src.block_shapes[band - 1]
    spots = [
        (src.height // 2, src.width // 2),
        (src.height // 4, src.width // 4),
        (0, 0),
        (3 * src.height // 4, 3 * src.width // 4),
        (src.height - 1, src.width - 1),
    ]
    windows = [Window(c // cols * cols, r // rows * rows, cols, rows) for r, c in spots]
    full = Window(0, 0, src.width, src.height)
    return np.concatenate([src.read(band, window=w.intersection(full)).ravel() for w in windows])


def alpha_holds_data(src: DatasetReader, band: int) -> bool:
    """Whether a band tagged alpha holds image values rather than a mask (0 and full opacity only).

    GDAL tags the 4th band of every 4-band 8-bit GeoTIFF written with its defaults as alpha, so
    RGBN imagery often carries the tag on its NIR band.
    """
    opaque = {1, 255, 65535, np.iinfo(src.dtypes[band - 1]).max if src.dtypes[band - 1] != "float32" else 1}
    values = np.unique(sample_band(src, band))
    return not set(values.tolist()) <= {0, *opaque}


def band_roles(src: DatasetReader) -> tuple[tuple[str, ...], bool, int | None]:
    """(colour interpretation of each band, whether GDAL's dataset mask says which pixels are
    missing, an alpha band GDAL does not use as the mask). A band tagged alpha that holds image
    values becomes "undefined": a band, not a mask."""
    colorinterp = [c.name for c in src.colorinterp]
    flags = src.mask_flag_enums
    own_mask = any(MaskFlags.per_dataset in f and MaskFlags.alpha not in f for f in flags)
    gdal_alpha = any(MaskFlags.alpha in f for f in flags)
    alpha = colorinterp.index("alpha") + 1 if "alpha" in colorinterp else None
    if alpha is not None and alpha_holds_data(src, alpha):
        log.debug("%s: band %d is tagged alpha but holds image values: read as a band", src.name, alpha)
        colorinterp[alpha - 1] = "undefined"
        return tuple(colorinterp), src.nodata is not None or own_mask, None
    masked = src.nodata is not None or own_mask or gdal_alpha
    return tuple(colorinterp), masked, None if gdal_alpha else alpha


def describe_file(src: DatasetReader, path: str, imagery: bool = True) -> RasterFile:
    """A RasterFile from an open dataset; ValueError saying why it cannot serve. Black borders are
    looked for in `imagery` only (in a label raster, 0 is a class)."""
    if src.crs is None:
        raise ValueError("it has no CRS (no georeferencing): give it one, e.g. gdal_edit.py -a_srs EPSG:XXXX")
    missing = missing_vrt_sources(src)
    if missing:
        raise ValueError(f"its source file(s) {', '.join(missing[:3])} do not exist: fix the VRT's paths")
    colorinterp, masked, extra_alpha = band_roles(src)
    return RasterFile(
        path=path,
        crs=src.crs,
        transform=src.transform,
        width=src.width,
        height=src.height,
        count=src.count,
        dtype=src.dtypes[0],
        colorinterp=colorinterp,
        nodata=src.nodata,
        masked=masked,
        has_overviews=bool(src.overviews(1)),
        block=tuple(src.block_shapes[0]),
        lonlat=file_lonlat(src),
        statistics=tuple(declared_statistics(src, b) for b in src.indexes),
        extra_alpha=extra_alpha,
        black_fill=imagery and not masked and extra_alpha is None and has_black_fill(src),
    )


def scan(paths: list[str], imagery: bool = True) -> list[RasterFile]:
    """Open each file once to learn what it is; files that cannot serve are skipped with a warning."""
    files = []
    for path in paths:
        try:
            with open_raster(path) as src:
                files.append(describe_file(src, path, imagery))
        except Exception as exc:
            log.warning("skipping %s: %s", path, reason(exc))
    return files


def reason(exc: BaseException) -> str:
    """Why a file cannot serve, in a line: our own ValueErrors as they are, GDAL's with a prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ValueError) and type(exc) is ValueError:
        return text
    return f"cannot read it as a georeferenced raster ({text})"
