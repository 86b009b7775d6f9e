"""GDAL settings that make reading imagery where it lives cheap: COGs over HTTP(S), S3, GCS.

A remote raster (a `/vsicurl/`, `/vsis3/` or `/vsigs/` path, see `datasets.remote_path`) is opened
and read inside `open_raster`, with these GDAL options set for that thread only:

- `GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`: no listing of the remote "directory" and no probing for
  side-car files (.ovr, .msk, .aux.xml): a COG keeps everything inside. Local rasters are opened
  without it, so their side-car masks and overviews still count.
- `GDAL_INGESTED_BYTES_AT_OPEN`: the header and tile index in one request.
- `GDAL_HTTP_MERGE_CONSECUTIVE_RANGES`, `GDAL_HTTP_MULTIPLEX`: adjacent tiles in one range request,
  parallel ranges over one HTTP/2 connection.
- `CPL_VSIL_CURL_CACHE_SIZE`: the process-wide cache of downloaded blocks, so that reopening a file
  for the next read costs no request for what was read before (the loader opens files per read,
  so GDAL's per-dataset block cache does not outlive a read).
- retries on transient errors, and time-outs that bound a read of a server that stopped answering.

A variable set in the environment wins over the value here (`GDAL_HTTP_TIMEOUT=120 python ...`).
Credentials are GDAL's usual environment variables, read by GDAL itself: `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_NO_SIGN_REQUEST`, `AWS_S3_ENDPOINT`;
`GOOGLE_APPLICATION_CREDENTIALS`, `GS_ACCESS_KEY_ID`/`GS_SECRET_ACCESS_KEY`, `GS_NO_SIGN_REQUEST`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import rasterio

#: GDAL options for opening and reading a remote raster (each one overridable by the environment)
REMOTE_OPTIONS = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2TLS",  # HTTP/2 where TLS negotiates it, else HTTP/1.1
    "CPL_VSIL_CURL_CACHE_SIZE": str(128 * 2**20),  # bytes, read once per process
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds, doubled at each retry
    "GDAL_HTTP_CONNECTTIMEOUT": "10",  # seconds
    "GDAL_HTTP_TIMEOUT": "60",  # seconds for one request
}
#: GDAL's network file systems (/vsicurl? with options included)
NETWORK_PREFIXES = ("/vsicurl", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/", "/vsiswift/")


def is_remote(path: str) -> bool:
    """Whether GDAL reads `path` over the network."""
    return path.startswith(NETWORK_PREFIXES)


def remote_options() -> dict[str, str]:
    """REMOTE_OPTIONS, with any of them that the environment sets taken from the environment."""
    return {key: os.environ.get(key, value) for key, value in REMOTE_OPTIONS.items()}


@contextmanager
def open_raster(path: str) -> Iterator[rasterio.io.DatasetReader]:
    """`rasterio.open(path)`, with REMOTE_OPTIONS around the open and the reads when it is remote."""
    if not is_remote(path):
        with rasterio.open(path) as src:
            yield src
        return
    with rasterio.Env(**remote_options()), rasterio.open(path) as src:
        yield src
