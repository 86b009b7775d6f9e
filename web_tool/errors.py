"""The tool's exceptions and the one table that maps them to HTTP status codes.

Each error also inherits the builtin that fits, so code that knows nothing of this
module can still catch it. Messages say what was asked, what exists and what to change.
"""

from __future__ import annotations

import errno
import os
import shutil


class LandCoverError(Exception):
    """Root of every error the tool raises on purpose."""


class RequestError(LandCoverError, ValueError):
    """The request is malformed: bad JSON, a missing or ill-typed field."""


class ExtentError(LandCoverError, ValueError):
    """The extent (or geometry) is not a valid area."""


class CRSError(LandCoverError, ValueError):
    """The CRS code is not one PROJ knows."""


class ClassIndexError(LandCoverError, ValueError):
    """A class index or class list does not fit the model's classes."""


class NotFoundError(LandCoverError, LookupError):
    """A named thing (dataset, session, checkpoint, job, file) does not exist."""


class NoImageryError(LandCoverError, LookupError):
    """No raster of the dataset covers the requested extent."""


class TooLargeError(LandCoverError, ValueError):
    """The request asks for more pixels, area or bytes than the configured limit."""


class ModelError(LandCoverError, RuntimeError):
    """The served model cannot be found, loaded or run: the server's trouble (a 500), caught at
    start-up where it can be. What a user's saved state asks of the model is an IncompatibleError."""


class ConfigError(LandCoverError, ValueError):
    """A configuration mistake (datasets.json, a dataset's files, the model against them), found at
    start-up; the message names the setting or file and the fix."""


class ClusterError(LandCoverError, RuntimeError):
    """A Dask cluster cannot make the batch map: a worker lacks the package, imagery or model."""


class IncompatibleError(LandCoverError, ValueError):
    """A checkpoint, a session's model or its corrections were saved with another model (or other
    imagery) than the server has now."""


class NotTrainedError(LandCoverError, RuntimeError):
    """The model predicts nothing yet: a model without weights needs corrections and a retrain."""


class BusyError(LandCoverError, RuntimeError):
    """A limited resource (job queue, heavy-request queue, sessions) is full right now.

    `retry_after` (seconds) becomes the 503's Retry-After header.
    """

    def __init__(self, message: str, retry_after: float = 5):
        super().__init__(message)
        self.retry_after = max(1, round(retry_after))


class GoneError(LandCoverError, LookupError):
    """Something saved (a checkpoint) can no longer be used: its file is missing or damaged."""


class UnreadableError(LandCoverError, OSError):
    """A file the server was configured with (imagery) can no longer be read."""


class DiskFullError(LandCoverError, OSError):
    """The server's disk (its --state_dir) has no room for what it had to write."""


#: exception class -> HTTP status; the first matching entry (in MRO order) wins.
STATUS_CODES: dict[type[Exception], int] = {
    RequestError: 400,
    ExtentError: 400,
    CRSError: 400,
    ClassIndexError: 400,
    NotFoundError: 404,
    NoImageryError: 404,
    GoneError: 410,
    TooLargeError: 413,
    NotTrainedError: 409,
    IncompatibleError: 409,
    BusyError: 503,
    UnreadableError: 503,
    DiskFullError: 507,
    ModelError: 500,
}


#: errno values and message fragments (SQLite, GDAL) that mean "no room left on the disk"
DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
#: free bytes under which a failed write counts as a full disk
LOW_DISK_BYTES = 2**20
DISK_FULL_WORDS = ("no space left", "disk is full", "disk i/o error", "free disk space")


def disk_full(
    exc: BaseException | None,
    folder: str | os.PathLike[str] | None = None,
    lost: str = "this request saved nothing",
) -> DiskFullError | None:
    """A DiskFullError saying `lost` if `exc` (or its cause) means a full disk: by its errno or
    message, or, for libraries that only say "write failed" (GDAL), an OSError while `folder` has
    under 1 MiB free."""
    low = folder is not None and shutil.disk_usage(folder).free < LOW_DISK_BYTES
    while exc is not None:
        if isinstance(exc, DiskFullError):
            return exc
        words = str(exc).lower()
        if (
            getattr(exc, "errno", None) in DISK_FULL_ERRNOS
            or any(w in words for w in DISK_FULL_WORDS)
            or (low and isinstance(exc, OSError))
        ):
            return DiskFullError(
                f"the server's disk is full (or failing): {lost}; ask the operator to free space in the"
                " server's state folder, then try again"
            )
        exc = exc.__cause__ or exc.__context__
    return None


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception: its table entry, else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500


def unreadable(exc: BaseException | None) -> UnreadableError | None:
    """An UnreadableError if `exc` (or its cause) is rasterio failing to open or read a file: imagery
    deleted, moved or damaged while the server runs. Says so without naming paths on the server."""
    while exc is not None:
        if isinstance(exc, UnreadableError):
            return exc
        if type(exc).__name__ == "RasterioIOError" and type(exc).__module__.startswith("rasterio"):
            return UnreadableError(
                "the server cannot read its imagery here right now: a file of the dataset was moved,"
                " deleted or damaged while the server runs; ask the operator to check the dataset"
            )
        exc = exc.__cause__ or exc.__context__
    return None
