"""The WSGI server (waitress), set up so that even the errors it answers itself are JSON, and a
body over the limit is refused before it is buffered.

Waitress reads a whole request before the app sees it; by default it buffers bodies up to 1 GiB
(spilling to temp files) and answers malformed requests (a bad Content-Length, a body over its
limit, headers too large) in text/plain. Here its body limit is the app's, and those answers are
`{"error": ...}` like every other.
"""

from __future__ import annotations

import json
from wsgiref.types import WSGIApplication

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask

#: waitress' own refusals, in the user's words
MESSAGES = {
    400: "the request is malformed ({detail}): check its headers, e.g. Content-Length",
    413: "request body is over the server's limit ({detail})",
    431: "the request's headers are too large ({detail})",
}


class JsonErrorTask(ErrorTask):
    """Waitress' error answer as `{"error": ...}` JSON."""

    def execute(self) -> None:
        error = self.request.error
        template = MESSAGES.get(error.code, "{reason}: {detail}")
        message = template.format(reason=error.reason.lower(), detail=str(error.body).strip())
        body = json.dumps({"error": message}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def make_server(
    app: WSGIApplication,
    host: str = "127.0.0.1",
    port: int = 0,
    threads: int = 8,
    max_body_bytes: int = 8 * 2**20,
    **options: object,
) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for `app` (not yet running: call `.run()`), with JSON errors and bodies
    over `max_body_bytes` refused unread. It waits on its sockets with poll(), not select(): a
    process with many files open (rasters, SQLite, many clients) gets descriptors above 1024,
    which select() cannot watch (the server's loop would die)."""
    sockets: dict[int, object] = {}  # waitress' socket map: file descriptor -> dispatcher
    server = create_server(
        app,
        map=sockets,
        host=host,
        port=port,
        threads=threads,
        asyncore_use_poll=True,
        max_request_body_size=max_body_bytes,
        **options,
    )
    for listener in list(sockets.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = JsonErrorChannel
    return server
