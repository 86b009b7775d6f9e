"""HTTP plumbing shared by every route: JSON bodies in, JSON out, errors as JSON, CORS.

Nothing here knows about land cover; `server.py` declares the routes.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import bottle

from web_tool.errors import TooLargeError, disk_full, status_for
from web_tool.schemas import decode_json

log = logging.getLogger(__name__)

#: Largest request body accepted, in bytes (GeoJSON polygons make bodies grow).
MAX_BODY_BYTES = 8 * 1024 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "86400",
}


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


def json_errors(callback):
    """Bottle plugin: LandCoverErrors → their status + {"error"}; anything else → logged 500."""

    def wrapper(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except bottle.HTTPResponse:
            raise
        except Exception as exc:
            status = status_for(exc)
            full = disk_full(exc) if status >= 500 else None
            if full is not None:
                log.error("%s %s: %s (%s)", bottle.request.method, bottle.request.path, full, exc)
                return error_response(status_for(full), str(full))
            if status >= 500:
                log.exception("unexpected error in %s %s", bottle.request.method, bottle.request.path)
                return error_response(status, f"internal error ({type(exc).__name__}): see the server log")
            return error_response(status, str(exc))

    return wrapper


def default_error_handler(res: bottle.HTTPError) -> str:
    """Bottle's own errors (unknown route, wrong method) as JSON instead of an HTML page."""
    bottle.response.content_type = "application/json"
    message = res.body if isinstance(res.body, str) and res.body else res.status_line
    if res.status_code == 404 and message.startswith("Not found"):
        message = f"no such endpoint: {bottle.request.method} {bottle.request.path}"
    return json.dumps({"error": message})


def add_cors() -> None:
    for key, value in CORS_HEADERS.items():
        bottle.response.set_header(key, value)


def install(app: bottle.Bottle) -> None:
    """Give `app` JSON errors, CORS headers on every response and an OPTIONS answer everywhere."""
    app.install(json_errors)
    app.default_error_handler = default_error_handler
    app.add_hook("after_request", add_cors)
    app.route("/<path:path>", method="OPTIONS", callback=lambda path: "")
