"""A static file server that honours HTTP Range requests (bottle's static_file, served by waitress),
standing in for a bucket or web server that holds COGs. It logs every request as a JSON line
[method, path, Range header] and prints its port once it listens.

    python tests/imagery/range_server.py ROOT LOG_FILE

Run in its own process: GDAL holds the GIL while it opens a remote file, so a server in the reading
process would never answer.
"""

from __future__ import annotations

import json
import sys

import bottle
import waitress.server


def make_app(root: str, log_file: str) -> bottle.Bottle:
    app = bottle.Bottle()

    @app.route("/<path:path>", method=["GET", "HEAD"])
    def serve(path: str):
        with open(log_file, "a") as log:
            log.write(json.dumps([bottle.request.method, path, bottle.request.headers.get("Range")]) + "\n")
        return bottle.static_file(path, root=root)

    return app


def main() -> None:
    root, log_file = sys.argv[1:3]
    server = waitress.server.create_server(make_app(root, log_file), host="127.0.0.1", port=0)
    print(server.effective_port, flush=True)
    server.run()


if __name__ == "__main__":
    main()
