"""The tool's exceptions and the one table that maps them to HTTP status codes.

Each error also inherits the builtin that fits, so code that knows nothing of this
module can still catch it. Messages say what was asked, what exists and what to change.
"""

from __future__ import annotations


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
    """The model file cannot be found or loaded."""


class BusyError(LandCoverError, RuntimeError):
    """A limited resource (job queue, sessions) is full right now."""


#: exception class -> HTTP status; the first matching entry (in MRO order) wins.
STATUS_CODES: dict[type[Exception], int] = {
    RequestError: 400,
    ExtentError: 400,
    CRSError: 400,
    ClassIndexError: 400,
    NotFoundError: 404,
    NoImageryError: 404,
    TooLargeError: 413,
    BusyError: 503,
    ModelError: 500,
}


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception: its table entry, else 500."""
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    return 500
