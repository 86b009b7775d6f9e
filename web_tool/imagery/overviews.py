"""Zoomed-out reads stay cheap: a low-resolution copy of a dataset, built once in the background.

A zoomed-out map tile reads a large area at low resolution. Files with overviews answer that from
them; a large file without overviews would have every pixel read (tens of seconds per tile), and a
dataset of many files would have all of them opened. Such a dataset gets a *low-resolution copy*:
one GeoTIFF in the state folder (`<state_dir>/imagery/lowres-<key>.tif`) holding the dataset's
bands mosaicked at `factor` times its native pixel size, with internal overviews and a mask. Reads
at that factor or coarser come from it. It is built once, in a background thread, and found again
at the next start while the files are unchanged. Until it is ready, zoomed-out reads of a file
without overviews sample whole blocks of it, MAX_SAMPLED_PX pixels at most (coarser, but bounded).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from web_tool.geometry import Extent, Grid
from web_tool.imagery.datasets import DatasetConfig
from web_tool.imagery.rasterfiles import RasterFile, describe_file, file_stamp

log = logging.getLogger(__name__)

#: a dataset of more files than this gets a low-resolution mosaic
MANY_FILES = 16
#: longest side of the copy, in pixels (its factor grows to keep it there)
MAX_SIDE = 8192
#: the copy's pixels are at least this many times the dataset's
MIN_FACTOR = 2
#: source pixels (a side) read per window while building
WINDOW_SRC_PX = 3072
#: pixels a zoomed-out read of a large file without overviews may decompress while there is no
#: copy (256 blocks of 256 x 256 px)
MAX_SAMPLED_PX = 2**24
VERSION = 1


@dataclass(frozen=True)
class LowRes:
    """A built copy: the file (bands 1..B are the dataset's bands in order) and its factor."""

    file: RasterFile
    factor: float

    @property
    def bands(self) -> list[int]:
        return list(range(1, self.file.count + 1))


class Loader(Protocol):
    """What of a DataLoader (which imports this module) the copy is built from and given to."""

    name: str
    config: DatasetConfig
    files: list[RasterFile]
    bands: list[int]
    crs: CRS
    dtype: np.dtype[Any]
    lowres: LowRes | None
    lowres_state: str | None

    def files_for(self, extent: Extent, labels: bool = False) -> list[RasterFile]: ...

    def mosaic(
        self,
        grid: Grid,
        files: list[RasterFile],
        bands: list[int],
        resampling: Resampling,
        dtype: np.dtype[Any],
        max_px: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


def reason_for(loader: Loader) -> str | None:
    """Why `loader`'s dataset needs a copy (files without overviews, or many files), or None."""
    bare = [f for f in loader.files if f.needs_overviews]
    if bare:
        f = bare[0]
        return (
            f"{len(bare)} large file(s) without overviews (e.g. {f.path}, {f.width} x {f.height} px;"
            f" `gdaladdo -r average {f.path}` would add them)"
        )
    if len(loader.files) > MANY_FILES:
        return f"{len(loader.files)} files (a zoomed-out tile would open many of them)"
    return None


def copy_grid(loader: Loader) -> tuple[Grid, float]:
    """(the copy's grid in the dataset's CRS, its factor) over all of the dataset's files."""
    crs, res = loader.crs, abs(loader.files[0].transform.a)
    boxes = np.array([transform_bounds(f.crs, crs, *f_bounds(f)) for f in loader.files])
    left, bottom = boxes[:, :2].min(axis=0)
    right, top = boxes[:, 2:].max(axis=0)
    side = max(right - left, top - bottom) / res
    factor = float(max(MIN_FACTOR, math.ceil(side / MAX_SIDE)))
    size = res * factor
    width, height = max(1, math.ceil((right - left) / size)), max(1, math.ceil((top - bottom) / size))
    return Grid(crs, Affine(size, 0, left, 0, -size, top), width, height), factor


def f_bounds(f: RasterFile) -> tuple[float, float, float, float]:
    x0, y0 = f.transform * (0, 0)
    x1, y1 = f.transform * (f.width, f.height)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def cache_path(loader: Loader, cache_dir: Path, factor: float) -> Path:
    stamp = [file_stamp(f.path) for f in loader.files]
    text = json.dumps([VERSION, loader.bands, factor, loader.config.nodata, stamp])
    return cache_dir / f"lowres-{hashlib.sha256(text.encode()).hexdigest()[:24]}.tif"


def windows_of(grid: Grid, step: int) -> Iterator[Window]:
    for row in range(0, grid.height, step):
        for col in range(0, grid.width, step):
            yield Window(col, row, min(step, grid.width - col), min(step, grid.height - row))


def write_copy(loader: Loader, grid: Grid, factor: float, path: Path) -> None:
    """Mosaic the dataset into `grid` window by window (memory stays one window), with a mask and
    internal overviews."""
    step = max(256, int(WINDOW_SRC_PX / factor) // 256 * 256)
    profile = dict(
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=len(loader.bands),
        dtype=loader.dtype,
        crs=grid.crs,
        transform=grid.transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        bigtiff="IF_SAFER",
        photometric="MINISBLACK",
    )
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        for window in windows_of(grid, step):
            sub = Grid(
                grid.crs,
                rasterio.windows.transform(window, grid.transform),
                int(window.width),
                int(window.height),
            )
            raw, valid = loader.mosaic(
                sub, loader.files_for(sub.extent), loader.bands, Resampling.average, loader.dtype
            )
            dst.write(np.moveaxis(raw, -1, 0), window=window)
            dst.write_mask(valid.astype(np.uint8) * 255, window=window)
        levels = [2**i for i in range(1, 16) if max(grid.width, grid.height) / 2**i >= 256]
        if levels:
            dst.build_overviews(levels, Resampling.average)


def open_copy(path: Path, factor: float) -> LowRes:
    with rasterio.open(path) as src:
        return LowRes(describe_file(src, str(path)), factor)


def build(loader: Loader, path: Path, grid: Grid, factor: float) -> None:
    """Write the copy next to `path`, move it into place, and let `loader` read from it."""
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.partial.tif")
    try:
        write_copy(loader, grid, factor, tmp)
        os.replace(tmp, path)
        loader.lowres = open_copy(path, factor)
        loader.lowres_state = "ready"
        log.info("dataset %r: low-resolution copy ready (%s)", loader.name, path)
    except Exception as exc:
        loader.lowres_state = "failed"
        log.warning(
            "dataset %r: could not build its low-resolution copy in %s (%s); zoomed-out tiles stay"
            " coarse until it can",
            loader.name,
            path.parent,
            exc,
        )
    finally:
        tmp.unlink(missing_ok=True)


def prepare(loader: Loader, cache_dir: Path, background: bool = True) -> threading.Thread | None:
    """Give `loader` its low-resolution copy if it needs one: the cached one at once, else built
    (in a background thread unless `background` is False). Returns the thread, if any."""
    reason = reason_for(loader)
    if reason is None:
        return None
    grid, factor = copy_grid(loader)
    path = cache_path(loader, cache_dir, factor)
    if path.is_file():
        try:
            loader.lowres, loader.lowres_state = open_copy(path, factor), "ready"
            return None
        except rasterio.errors.RasterioError:
            log.warning("dataset %r: rebuilding its damaged low-resolution copy %s", loader.name, path)
    log.warning(
        "dataset %r has %s: zoomed-out tiles come from a coarse sample until a low-resolution copy"
        " (%d x %d px) is built once, in the background, in %s",
        loader.name,
        reason,
        grid.width,
        grid.height,
        cache_dir,
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    loader.lowres_state = "building"
    if not background:
        build(loader, path, grid, factor)
        return None
    thread = threading.Thread(
        target=build, args=(loader, path, grid, factor), daemon=True, name=f"lowres-{loader.name}"
    )
    thread.start()
    return thread
