"""HTTP plumbing shared by every route: JSON bodies in, JSON out, errors as JSON.

Nothing here knows about land cover; `server.py` declares the routes. Which sites may call the
server (Host, Origin, CORS, Content-Type) is `origins.py`'s job.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import bottle

from web_tool.errors import BusyError, LandCoverError, TooLargeError, disk_full, status_for, unreadable
from web_tool.http.schemas import decode_json

log = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (GeoJSON polygons make bodies grow).
MAX_BODY_BYTES = 8 * 1024 * 1024

#: A route's callback as Bottle calls it: the URL's wildcards in, any body Bottle accepts out (an
#: HTTPResponse, a str, bytes, a file). Bottle ships no types, so plugins pass callbacks on as these.
Callback = Callable[..., Any]
C = TypeVar("C", bound=Callback)


class Router(Protocol):
    """What the route groups use of a `bottle.Bottle`, typed (Bottle ships none): its decorators
    return the handler unchanged, so a handler keeps its annotations and mypy checks its body."""

    #: the routes declared so far (`bottle.Route`s)
    routes: list[bottle.Route]
    #: the app's configuration (Bottle's ConfigDict is a dict)
    config: dict[str, Any]

    def get(self, path: str, **options: object) -> Callable[[C], C]: ...

    def post(self, path: str, **options: object) -> Callable[[C], C]: ...

    def delete(self, path: str, **options: object) -> Callable[[C], C]: ...


def json_response(obj: Any, status: int = 200) -> bottle.HTTPResponse:
    body = json.dumps(obj, allow_nan=False)
    return bottle.HTTPResponse(body, status=status, content_type="application/json")


def error_response(status: int, message: str) -> bottle.HTTPResponse:
    return json_response({"error": message}, status=status)


def read_json(max_bytes: int = MAX_BODY_BYTES, if_empty: Any = None) -> Any:
    """The request's JSON body, refusing bodies over `max_bytes` before reading them. An empty body
    is an error, unless `if_empty` says what it stands for (`curl -X POST` sends no body at all)."""
    request = bottle.request
    if request.content_length > max_bytes:
        raise TooLargeError(f"request body is {request.content_length} bytes; the limit is {max_bytes}")
    raw = request.body.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise TooLargeError(f"request body is over the {max_bytes}-byte limit")
    if if_empty is not None and not raw.strip():
        return if_empty
    return decode_json(raw)


def json_errors(callback: Callback) -> Callback:
    """Bottle plugin: every exception a route raises becomes a JSON answer (`exception_response`)."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except bottle.HTTPResponse:
            raise
        except Exception as exc:
            return exception_response(exc)

    return wrapper


def exception_response(exc: Exception) -> bottle.HTTPResponse:
    """A LandCoverError → its status and message (+ Retry-After when busy). A library's error that
    means a full disk or unreadable imagery → that, in the user's words. Anything else → a logged 500
    that shows no traceback."""
    where = f"{bottle.request.method} {bottle.request.path}"
    known = exc if isinstance(exc, LandCoverError) else disk_full(exc) or unreadable(exc)
    if known is None:
        log.exception("unexpected error in %s", where)
        return error_response(500, f"internal error ({type(exc).__name__}): see the server log")
    status = status_for(known)
    if status >= 500:  # the server's trouble, not the request's: the operator should hear of it
        level = logging.INFO if isinstance(known, BusyError) else logging.ERROR  # busy is expected
        log.log(level, "%s: %s (%s)", where, known, exc if exc is not known else type(exc).__name__)
    response = error_response(status, str(known))
    if isinstance(known, BusyError):
        response.set_header("Retry-After", str(known.retry_after))
    return response


def default_error_handler(res: bottle.HTTPError) -> str:
    """Bottle's own errors (unknown route, wrong method) as JSON instead of an HTML page."""
    bottle.response.content_type = "application/json"
    message = res.body if isinstance(res.body, str) and res.body else res.status_line
    if res.status_code == 404 and message.startswith("Not found"):
        message = f"no such endpoint: {bottle.request.method} {bottle.request.path}"
    return json.dumps({"error": message})


def install(app: bottle.Bottle) -> None:
    """Give `app` JSON errors, from its routes and from Bottle itself."""
    app.install(json_errors)
    app.default_error_handler = default_error_handler


def log_request() -> None:
    """One line per request: method, route (`/sessions/<session_id>`, not the id) and status."""
    route = bottle.request.environ.get("bottle.route")
    log.info("%s %s %s", bottle.request.method, route.rule if route else "-", bottle.response.status_code)
