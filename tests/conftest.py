"""Shared fixtures: tiny generated rasters, a tiny real Keras model, and the app to send requests to.

Which server to use:

- `app_server` / `InProcessServer(app)`: the default for API tests. make_app(config) called in this
  thread through WebTest (which also checks the WSGI contract); no socket, no port, no threads of
  its own. Plain request/response behaviour, validation errors, sessions, jobs, the page's calls,
  auth, Host and Origin headers (set them in `headers=`) belong here.
- `live_server` / `LiveServer(app)`: a real waitress server on a free loopback port, for what only a
  socket shows: concurrency and admission (threads, 503 + Retry-After under load), waitress' own
  refusals (a body over the limit left unread, requests it cannot parse), faults and restarts.
- subprocesses (`hitl_support.start_server`, the seed's launch line in test_server_cli.py, the
  browser tests' server, Dask, the range server) for the CLI, kill -9 and the browser.

Both server classes answer `request(method, path, json=, data=, headers=, params=)`, `get`, `post`
and `delete` with a `requests.Response`, and carry `url`, `port`, `config` and `close()`, so
`tests.http.test_api.call(server, ...)` and `tests.hitl_support.post(server, ...)` take either:
moving a test between them is a fixture swap.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rasterio  # noqa: E402
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_bounds  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
NAIP_DIR = SHARED / "data" / "naip-nd"
DEMO_DIR = REPO / "web_tool" / "data" / "demo"
DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model.keras"

#: UTM 18N box where the tiny test rasters live (1 m pixels)
UTM18 = CRS.from_epsg(32618)


def make_geotiff(
    path: Path,
    bounds: tuple[float, float, float, float],
    crs: CRS | str | int = UTM18,
    size: tuple[int, int] = (64, 64),
    bands: int = 4,
    dtype: str = "uint8",
    nodata: float | None = None,
    data: np.ndarray | None = None,
) -> Path:
    """Write a tiled GeoTIFF of `size` (width, height) pixels over `bounds`; data defaults to a
    deterministic pattern that depends on the ground position (so mosaics can be checked)."""
    width, height = size
    crs = CRS.from_user_input(crs)
    transform = from_bounds(*bounds, width, height)
    if data is None:
        cols, rows = np.meshgrid(np.arange(width), np.arange(height))
        xs, ys = rasterio.transform.xy(transform, rows, cols)
        xs, ys = np.asarray(xs).reshape(rows.shape), np.asarray(ys).reshape(rows.shape)
        data = np.stack([(xs * 7 + ys * 3 + 40 * b) % 250 + 1 for b in range(bands)]).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=data.shape[0],
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=16,
        blockysize=16,
        compress="deflate",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def geotiff_factory(tmp_path):
    """make_geotiff bound to the test's tmp_path: factory(name, bounds, **kwargs) -> Path."""

    def factory(name: str, bounds, **kwargs) -> Path:
        return make_geotiff(tmp_path / name, bounds, **kwargs)

    return factory


def four_tiles(folder: Path, x0: float = 500_000, y0: float = 4_300_000, tile: int = 64) -> list[Path]:
    """Four abutting 1 m tiles (2x2) whose top-left corner is (x0, y0 + 2*tile)."""
    paths = []
    for r in range(2):
        for c in range(2):
            left, top = x0 + c * tile, y0 + (2 - r) * tile
            bounds = (left, top - tile, left + tile, top)
            paths.append(make_geotiff(folder / f"t_{r}{c}.tif", bounds, size=(tile, tile)))
    return paths


def tiny_network(bands: int = 4, width: int = 8, convolutions: int = 2):
    """`convolutions` 3x3 convolutions (two: a 5x5 view) of `width` filters on `bands` inputs, a 1x1
    `logits` layer and a softmax; seeded weights."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, bands))
    x = inp
    for _ in range(convolutions):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(4, 1, name="logits")(x)
    out = keras.layers.Activation("softmax", name="probs")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small real Keras segmentation model (random but fixed weights), 4 bands → 4 classes."""
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_network().save(path)
    return path


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    """A folder with the four-tile 1 m UTM dataset."""
    folder = tmp_path_factory.mktemp("tiny_dataset")
    four_tiles(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Requests:
    """get/post/delete shorthands over `request()` (shared by both server classes)."""

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path: str, **kwargs):
        return self.request("DELETE", path, **kwargs)


class LiveServer(_Requests):
    """A real waitress server on a free loopback port, serving `app` in a background thread, set up
    as `server.py` sets it up (JSON errors, bodies over the limit refused unread)."""

    config = None

    def __init__(self, app, threads: int = 16, max_body_bytes: int = 8 * 2**20):
        from web_tool.http.wsgi_server import make_server

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(app, port=self.port, threads=threads, max_body_bytes=max_body_bytes)
        self.closing = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        time.sleep(0.05)

    def _run(self):
        try:
            self.server.run()
        except OSError:  # the socket closed under select() while stopping
            if not self.closing:
                raise

    def request(self, method: str, path: str, **kwargs):
        """A real HTTP request (the `requests` library) to `path` on this server."""
        import requests

        kwargs.setdefault("timeout", 120)
        return requests.request(method, self.url + path, **kwargs)

    def close(self):
        self.closing = True
        self.server.close()
        self.server.task_dispatcher.shutdown()
        # an app lives in reference cycles: free it (and its SQLite files) now, not at some later
        # collection, or a long test session runs past the 1024 file descriptors select() takes
        gc.collect()


class InProcessServer(_Requests):
    """`app` called in this thread through WebTest's TestApp: no socket. Requests look as if they
    came to http://127.0.0.1:8080 (`url`); answers are `requests.Response`s, as from LiveServer."""

    port = 8080
    url = f"http://127.0.0.1:{port}"

    def __init__(self, app, config=None):
        from http.cookiejar import CookieJar, DefaultCookiePolicy

        from webtest import TestApp

        self.app, self.config = app, config
        # no cookie jar that remembers (requests.get & co. do not either)
        self.client = TestApp(app, cookiejar=CookieJar(DefaultCookiePolicy(allowed_domains=[])))

    def request(
        self, method: str, path: str, *, json=None, data=None, headers=None, params=None, timeout=None
    ):
        """The request `requests.request(method, url + path, ...)` would send, answered in-process
        (a `Host` in `headers` replaces the URL's)."""
        import json as jsonlib
        from urllib.parse import urlencode

        import requests
        from requests.structures import CaseInsensitiveDict
        from requests.utils import get_encoding_from_headers

        headers = dict(headers or {})
        if json is not None:
            data = jsonlib.dumps(json).encode()
            headers.setdefault("Content-Type", "application/json")
        elif isinstance(data, str):
            data = data.encode()
        if params:
            path += ("&" if "?" in path else "?") + urlencode(params)
        answer = self.client.request(
            self.url + path, method=method, body=data or b"", headers=headers, expect_errors=True, status="*"
        )
        response = requests.Response()
        response.status_code = answer.status_int
        response.reason = answer.status.partition(" ")[2]
        response.headers = CaseInsensitiveDict()
        for name, value in answer.headerlist:  # a repeated header joined, as `requests` does
            known = response.headers.get(name)
            response.headers[name] = value if known is None else f"{known}, {value}"
        response._content = answer.body
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = self.url + path
        return response

    def close(self):
        gc.collect()  # as LiveServer.close: free the app's SQLite files now


def build_app(dataset_specs: list[str], model_fn: Path, tmp_path: Path, **overrides):
    """A make_app() app for `--dataset` specs and a model, with state in tmp_path."""
    from web_tool import server

    args = server.parse_args(
        [
            *(a for spec in dataset_specs for a in ("--dataset", spec)),
            "--model_fn",
            str(model_fn),
            "--state_dir",
            str(tmp_path / "state"),
        ]
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    config = server.build_config(args)
    return server.make_app(config), config


@pytest.fixture
def live_server(tiny_dataset_dir, tiny_model_path, tmp_path):
    """A live server on the tiny four-tile dataset (named "tiny") and the tiny model."""
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    srv = LiveServer(app)
    srv.config = config
    yield srv
    srv.close()


@pytest.fixture
def app_server(tiny_dataset_dir, tiny_model_path, tmp_path):
    """live_server's app (the tiny dataset, "tiny", and the tiny model) answered in-process."""
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    srv = InProcessServer(app, config)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """The striped human-in-the-loop test scene (see hitl_support)."""
    from tests.hitl_support import write_scene

    return write_scene(tmp_path_factory.mktemp("stripes"))


@pytest.fixture(scope="module")
def stripes_model(tmp_path_factory) -> Path:
    """The tiny model with a head fitted to the stripes, and its replay file."""
    from tests.hitl_support import write_model

    return write_model(tmp_path_factory.mktemp("stripes_model"))
