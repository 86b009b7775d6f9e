"""Pixel values of any type → the model's 0..255 input, and the map's display, band by band.

8-bit imagery feeds the model as it is. Deeper data (uint16, int16, float) is scaled linearly so
that each band's minimum becomes 0 and its maximum 255: the files' own statistics when every file
declares them (STATISTICS_MINIMUM/MAXIMUM, as `gdalinfo -stats` writes), else statistics computed
once at start-up from overviews (or a bounded sample of blocks) and cached. `scale` in datasets.json
overrides this with per-band `min`/`max` or `percentiles`.

The display follows QGIS's defaults: 8-bit RGB as it is, deeper data stretched by a 2–98 %
cumulative count cut.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.enums import Resampling
from rasterio.windows import Window

from web_tool import db
from web_tool.errors import ConfigError
from web_tool.imagery.gdal_env import open_raster
from web_tool.imagery.rasterfiles import RasterFile, file_stamp

log = logging.getLogger(__name__)

#: percentiles kept per band (min = 0, max = 100); any other is interpolated
PERCENTILES = np.linspace(0, 100, 201)
#: the display's cumulative count cut, as QGIS does it
DISPLAY_PERCENTILES = (2.0, 98.0)
#: files sampled for statistics at most (evenly spread over the dataset)
MAX_STATS_FILES = 32
#: long side of the decimated read of a file that has overviews (or is small)
SAMPLE_PX = 512
#: blocks read from a large file without overviews (so start-up never reads a whole file)
SAMPLE_BLOCKS = 64
#: values per band kept for the percentiles
MAX_SAMPLES = 1_000_000
STATS_VERSION = 1


@dataclass(frozen=True)
class Stretch:
    """Per band: `low` becomes 0 and `high` 255, linearly, clipped."""

    low: np.ndarray
    high: np.ndarray

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """HxWxB values → HxWxB uint8."""
        span = np.maximum(self.high - self.low, np.finfo(np.float32).tiny).astype(np.float32)
        out = raw.astype(np.float32)
        out -= self.low.astype(np.float32)
        out *= 255.0 / span
        out += 0.5
        np.clip(out, 0, 255, out=out)
        return out.astype(np.uint8)

    def describe(self) -> str:
        return ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(self.low, self.high, strict=True))


# --------------------------------------------------------------------------------------------
# statistics


def sample_windows(f: RasterFile) -> list[tuple[Window | None, tuple[int, int] | None]]:
    """(window, out_shape) reads that sample `f` cheaply: the whole file decimated (overviews make
    it cheap), or, for a large file without overviews, up to SAMPLE_BLOCKS whole blocks spread over it."""
    if not f.needs_overviews:
        factor = max(1, max(f.width, f.height) / SAMPLE_PX)
        return [(None, (max(1, round(f.height / factor)), max(1, round(f.width / factor))))]
    rows, cols = -(-f.height // f.block[0]), -(-f.width // f.block[1])
    side = max(1, int(np.sqrt(SAMPLE_BLOCKS)))
    picks = {(r * rows // side, c * cols // side) for r in range(side) for c in range(side)}
    return [
        (
            Window(c * f.block[1], r * f.block[0], f.block[1], f.block[0]).intersection(
                Window(0, 0, f.width, f.height)
            ),
            None,
        )
        for r, c in sorted(picks)
    ]


def sample_file(f: RasterFile, bands: list[int], nodata: float | None) -> np.ndarray:
    """N x B valid values of `bands` of `f` from a bounded read."""
    parts = []
    with open_raster(f.path) as src:
        for window, shape in sample_windows(f):
            out_shape = (len(bands), *shape) if shape else None
            data = src.read(bands, window=window, out_shape=out_shape, resampling=Resampling.nearest)
            valid = f.valid_mask(src, data, window, data.shape[1:], nodata) > 0
            parts.append(data[:, valid].T)
    return np.concatenate(parts) if parts else np.empty((0, len(bands)))


def spread(files: list[RasterFile], n: int) -> list[RasterFile]:
    """At most `n` of `files`, evenly spread."""
    if len(files) <= n:
        return files
    return [files[i * len(files) // n] for i in range(n)]


def compute_percentiles(files: list[RasterFile], bands: list[int], nodata: float | None) -> np.ndarray:
    """B x len(PERCENTILES) percentiles of the valid values of `bands` over a sample of `files`."""
    values = np.concatenate([sample_file(f, bands, nodata) for f in files])
    if len(values) == 0:
        raise ConfigError(
            f"no valid pixel found in {files[0].path} and the other files sampled: all missing?"
        )
    if len(values) > MAX_SAMPLES:
        values = values[np.random.default_rng(0).choice(len(values), MAX_SAMPLES, replace=False)]
    return np.percentile(values.astype(np.float64), PERCENTILES, axis=0).T


def cache_key(files: list[RasterFile], bands: list[int], nodata: float | None) -> str:
    stamp = [file_stamp(f.path) for f in files]
    text = json.dumps([STATS_VERSION, bands, nodata, stamp])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def band_percentiles(
    files: list[RasterFile], bands: list[int], nodata: float | None, cache_dir: Path | None
) -> np.ndarray:
    """Percentiles of each band (B x len(PERCENTILES)), computed once and kept in `cache_dir`."""
    sampled = spread(files, MAX_STATS_FILES)
    path = cache_dir / f"stats-{cache_key(sampled, bands, nodata)}.json" if cache_dir else None
    if path is not None and path.is_file():
        try:
            return np.array(json.loads(path.read_text())["percentiles"], dtype=np.float64)
        except (OSError, ValueError, KeyError):
            log.warning("recomputing the statistics cached in %s: cannot read them", path)
    values = compute_percentiles(sampled, bands, nodata)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        db.atomic_write(path, json.dumps({"bands": bands, "percentiles": values.tolist()}).encode())
    return values


def at(percentiles: np.ndarray, p: float) -> np.ndarray:
    """Each band's value at percentile `p` (interpolated between the kept ones)."""
    return np.array([np.interp(p, PERCENTILES, row) for row in percentiles])


def declared_range(files: list[RasterFile], bands: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(min, max) per band from the files' own statistics, when every file declares them."""
    ranges = [[f.statistics[b - 1] for b in bands] for f in files]
    if any(r is None for per_file in ranges for r in per_file):
        return None
    array = np.array(ranges, dtype=np.float64)  # files x bands x 2
    return array[..., 0].min(axis=0), array[..., 1].max(axis=0)


# --------------------------------------------------------------------------------------------
# the dataset's scaling


def per_band(values: list[float], n: int, what: str) -> np.ndarray:
    if len(values) == 1:
        return np.full(n, values[0], dtype=np.float64)
    if len(values) != n:
        raise ConfigError(
            f"scale.{what} has {len(values)} values but the dataset feeds {n} bands: give one per band"
        )
    return np.array(values, dtype=np.float64)


def model_stretch(
    scale: dict[str, Any] | None,
    files: list[RasterFile],
    bands: list[int],
    percentiles: Callable[[], np.ndarray],
) -> tuple[Stretch | None, str]:
    """(how raw values become the model's 0..255, where that came from): `scale` if set, else
    8-bit as it is, else the files' own min/max, else the sampled min/max."""
    n = len(bands)
    if scale and "min" in scale:
        low, high = per_band(scale["min"], n, "min"), per_band(scale["max"], n, "max")
        if (high <= low).any():
            raise ConfigError(
                f"scale: each max must be above its min, got min {scale['min']}, max {scale['max']}"
            )
        return Stretch(low, high), "datasets.json scale min/max"
    if scale:
        lo, hi = scale["percentiles"]
        return Stretch(
            at(percentiles(), lo), at(percentiles(), hi)
        ), f"the {lo:g}–{hi:g} percentiles of its values"
    if all(f.dtype == "uint8" for f in files):
        return None, "8-bit, as it is"
    declared = declared_range(files, bands)
    if declared is not None:
        return Stretch(*declared), "the files' own statistics (min/max)"
    return Stretch(at(percentiles(), 0), at(percentiles(), 100)), "min/max of a sample of its values"


@dataclass
class Scaling:
    """How a dataset's raw values become the model's input (`model`) and the map's (`display`);
    None means as they are (8-bit)."""

    model: Stretch | None
    display: Stretch | None
    #: where the model's scaling came from, for the start-up log
    source: str

    @classmethod
    def for_dataset(
        cls,
        files: list[RasterFile],
        bands: list[int],
        scale: dict[str, Any] | None,
        nodata: float | None,
        cache_dir: Path | None,
    ) -> Scaling:
        """The scaling of a dataset; statistics are computed (or read from `cache_dir`) only if needed."""
        percentiles = functools.cache(lambda: band_percentiles(files, bands, nodata, cache_dir))
        model, source = model_stretch(scale, files, bands, percentiles)
        eight_bit = all(f.dtype == "uint8" for f in files)
        display = None if eight_bit else Stretch(*(at(percentiles(), p) for p in DISPLAY_PERCENTILES))
        return cls(model, display, source)

    def model_input(self, raw: np.ndarray) -> np.ndarray:
        """HxWxB raw values → HxWxB uint8 model input (8-bit data as it is)."""
        return raw if self.model is None else self.model.apply(raw)

    def rgb(self, raw: np.ndarray) -> np.ndarray | None:
        """HxWx3 uint8 of the first three bands (or the first, as grey) as the map shows them;
        None for 8-bit data, which the map shows as it is."""
        if self.display is None:
            return None
        pick = [0, 1, 2] if raw.shape[-1] >= 3 else [0, 0, 0]
        return Stretch(self.display.low[pick], self.display.high[pick]).apply(raw[..., pick])
