"""Open raster files kept between reads, so that the next click nearby costs no open and no decode.

Opening a GeoTIFF and decoding its blocks costs more than reading it: a 512 px /predPatch on the
corner of four demo files spent 24 ms of its 90 ms read on four opens and their decodes. A dataset
that stays open keeps its decoded blocks in GDAL's block cache, so a neighbouring read (the same
user's next click, a map tile) takes them from memory.

`RasterPool.open(path)` lends an open dataset to one thread at a time (a GDAL dataset must not be
read by two threads at once): an idle one of the same file when there is one, else a new one. It
comes back to the pool after a read that worked, and is closed after one that failed. Bounds: at
most `max_idle` idle datasets in all (the least recently used is closed first), and decoded blocks
take at most GDAL's block cache, which the server caps at BLOCK_CACHE_MB (`bound_block_cache`; GDAL's
own default is 5 % of RAM; `GDAL_CACHEMAX` in the environment wins). A file changed on disk (size
or modification time) is opened anew, so a damaged or replaced file fails as it would without the
pool.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import rasterio

from web_tool.imagery.gdal_env import is_remote, remote_options
from web_tool.imagery.rasterfiles import Stamp, file_stamp

#: idle open datasets kept, in all (each holds a file handle and its header, a few kB)
MAX_IDLE = 64
#: GDAL's block cache in the server, MB: the decoded blocks that neighbouring reads share
BLOCK_CACHE_MB = 256


def bound_block_cache(mb: int = BLOCK_CACHE_MB) -> None:
    """Cap GDAL's block cache at `mb` MB unless `GDAL_CACHEMAX` is set in the environment; before
    the first read (GDAL reads the setting once)."""
    os.environ.setdefault("GDAL_CACHEMAX", str(mb))


class RasterPool:
    """Open datasets lent to one thread at a time and kept, up to `max_idle` idle, for the next read."""

    def __init__(self, max_idle: int = MAX_IDLE):
        self.max_idle = max_idle
        self._lock = threading.Lock()
        #: (path, stamp, id) → an idle dataset, least recently used first
        self._idle: OrderedDict[tuple[str, Stamp, int], rasterio.io.DatasetReader] = OrderedDict()

    @contextmanager
    def open(self, path: str) -> Iterator[rasterio.io.DatasetReader]:
        """An open dataset of `path` for this thread alone (with REMOTE_OPTIONS when remote)."""
        stamp = file_stamp(path)
        with rasterio.Env(**remote_options()) if is_remote(path) else nullcontext():
            src = self._take(stamp)
            if src is None:
                src = rasterio.open(path)
            try:
                yield src
            except BaseException:
                src.close()
                raise
        self._give(stamp, src)

    def _take(self, stamp: Stamp) -> rasterio.io.DatasetReader | None:
        with self._lock:
            stale = [key for key in self._idle if key[0] == stamp[0] and key[1] != stamp]
            for key in stale:  # the file changed since: its datasets read the old one
                self._idle.pop(key).close()
            for key in self._idle:
                if key[1] == stamp:
                    return self._idle.pop(key)
            return None

    def _give(self, stamp: Stamp, src: rasterio.io.DatasetReader) -> None:
        with self._lock:
            self._idle[(stamp[0], stamp, id(src))] = src
            while len(self._idle) > self.max_idle:
                self._idle.popitem(last=False)[1].close()

    def __len__(self) -> int:
        return len(self._idle)


#: the process's pool: every dataset's reads share its bound
POOL = RasterPool()
