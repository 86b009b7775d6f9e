"""Browser fixtures: a real server (subprocess, free port) on the demo, and Debian's chromium
driven by Playwright with every request that is not to this machine blocked (the page must work
offline). Screenshots go to test-artifacts/browser/.

The demo dataset and model are used (`make demo-data`); to try the suite on other imagery set
LANDCOVER_BROWSER_DATASET=[NAME=]PATH and LANDCOVER_BROWSER_MODEL=PATH.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from offline_chromium import CHROMIUM, CHROMIUM_ARGS, free_port, is_local  # noqa: E402

DEMO_SCENE = REPO / "web_tool" / "data" / "demo" / "scene.json"
DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model.keras"
ARTIFACTS = REPO / "test-artifacts" / "browser"
EARTH_RADIUS = 6378137.0
OVERLAY = "img.prediction-overlay"
SERVER_START_S = 120
TIMEOUT_MS = 30_000
GUARD_TOKEN = "browser-test-token"


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def server_command(port: int, state_dir: Path) -> list[str]:
    """The launch line of the README, on the demo unless LANDCOVER_BROWSER_* say otherwise."""
    dataset = os.environ.get("LANDCOVER_BROWSER_DATASET")
    model = os.environ.get("LANDCOVER_BROWSER_MODEL")
    if not dataset and not DEMO_SCENE.exists():
        pytest.skip(f"demo dataset missing ({DEMO_SCENE.relative_to(REPO)}): run `make demo-data`")
    if not model and not DEMO_MODEL.exists():
        pytest.skip(f"demo model missing ({DEMO_MODEL.relative_to(REPO)}): run `make demo-model`")
    # the page at http://127.0.0.1:port may also call this server as http://localhost:port (another
    # origin: endpoints.mine.js tests list it so), as --cors_origin documents
    command = [
        sys.executable,
        "web_tool/server.py",
        "--model",
        "nips_hr",
        "--model_fn",
        model or "web_tool/data/demo_model",
        "--port",
        str(port),
        "--state_dir",
        str(state_dir),
        "--cors_origin",
        f"http://127.0.0.1:{port}",
    ]
    if dataset:
        command += ["--dataset", dataset]
    return command


@contextlib.contextmanager
def running_server(state_dir: Path, **env: str):
    """A real server process (extra environment `env`) → {"url", "health", "port"}; killed after."""
    port = free_port()
    log_path = state_dir / "server.log"
    env = {
        **os.environ,
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            server_command(port, state_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        health = wait_for_health(proc, url, log_path)
        yield {"url": url, "port": port, "health": health}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The demo served by a real server process for the whole session."""
    with running_server(tmp_path_factory.mktemp("browser_state")) as running:
        yield running


@pytest.fixture(scope="session")
def guarded_server(tmp_path_factory):
    """The demo served by a second server process that was started with LANDCOVER_TOKEN."""
    with running_server(tmp_path_factory.mktemp("guarded_state"), LANDCOVER_TOKEN=GUARD_TOKEN) as running:
        yield running


def wait_for_health(proc: subprocess.Popen, url: str, log_path: Path) -> dict:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            return get_json(url + "health", timeout=2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    proc.kill()
    tail = log_path.read_text()[-3000:]
    raise RuntimeError(f"server did not answer /health in {SERVER_START_S} s:\n{tail}")


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield instance
        instance.close()


class PageLog:
    """What happened in a page: console errors, uncaught exceptions, responses, blocked requests."""

    def __init__(self):
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.responses: list[tuple[str, int]] = []
        self.blocked: list[str] = []

    def console_error(self, message) -> None:
        self.console_errors.append(f"{message.text} @ {message.location}")

    def unexpected_errors(self) -> list[str]:
        """Console errors besides the 404 of the optional endpoints.mine.js."""
        return [e for e in self.console_errors if "endpoints.mine.js" not in e] + self.page_errors


def mercator(lat: float, lng: float) -> tuple[float, float]:
    """EPSG:3857 metres of a lat/lng (what the page's Leaflet computes)."""
    x = EARTH_RADIUS * math.radians(lng)
    y = EARTH_RADIUS * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
    return x, y


class MapPage:
    """A loaded page of the tool and the gestures the tests need (page coordinates throughout)."""

    OVERLAY = OVERLAY
    EARTH_RADIUS = EARTH_RADIUS
    mercator = staticmethod(mercator)

    def __init__(self, page, log: PageLog):
        self.page = page
        self.log = log

    def map_point(self, lat: float, lng: float) -> tuple[float, float]:
        box = self.page.locator("#map").bounding_box()
        js = "(ll) => { const p = landcover.map.latLngToContainerPoint(ll); return [p.x, p.y]; }"
        x, y = self.page.evaluate(js, [lat, lng])
        return box["x"] + x, box["y"] + y

    def latlng_at(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator("#map").bounding_box()
        js = "([x, y]) => { const l = landcover.map.containerPointToLatLng([x, y]); return [l.lat, l.lng]; }"
        lat, lng = self.page.evaluate(js, [x - box["x"], y - box["y"]])
        return lat, lng

    def dataset_center(self, dx: float = 0, dy: float = 0) -> tuple[float, float]:
        """Page coordinates of the dataset's centre, moved by (dx, dy) screen pixels."""
        w, s, e, n = self.page.evaluate("landcover.state.dataset.bounds_4326")
        x, y = self.map_point((s + n) / 2, (w + e) / 2)
        return x + dx, y + dy

    def zoom_to_patch(self, screen_px: float = 300) -> float:
        """Centre the map on the dataset, zoomed so a predicted square is about `screen_px` wide
        (at most that; integer zoom); → the square's width on screen in pixels."""
        return self.page.evaluate(
            """(px) => { const s = landcover.state, m = landcover.map;
            const [w, south, e, n] = s.dataset.bounds_4326, lat = (south + n) / 2;
            const side = s.patchPixels * s.dataset.resolution / Math.cos(lat * Math.PI / 180);
            const world = 2 * Math.PI * 6378137;
            const z = Math.floor(Math.log2(px * world / (256 * side)));
            m.setView([lat, (w + e) / 2], z, {animate: false});
            return side * 256 * 2 ** z / world; }""",
            screen_px,
        )

    def shift_click(self, x: float, y: float) -> None:
        self.page.keyboard.down("Shift")
        try:
            self.page.mouse.click(x, y)
        finally:
            self.page.keyboard.up("Shift")

    def predict_at(self, x: float, y: float) -> dict:
        """Shift+click (x, y), wait for /predPatch and the overlay; → the request body sent."""
        with self.page.expect_response("**/predPatch") as response:
            self.shift_click(x, y)
        assert response.value.ok, response.value.text()
        self.wait_predictions()
        self.page.wait_for_selector(OVERLAY)
        return response.value.request.post_data_json

    def wait_predictions(self) -> None:
        self.page.wait_for_function("() => !document.querySelector('.result-card[aria-busy]')")

    def overlay_src(self) -> str:
        return self.page.locator(OVERLAY).get_attribute("src")

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        self.page.mouse.move(*start)
        self.page.mouse.down()
        self.page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=3)
        self.page.mouse.move(*end, steps=3)
        self.page.mouse.up()

    def wait_idle(self, selector: str) -> None:
        """Wait until the button `selector` is no longer busy (its request answered)."""
        self.page.wait_for_function(
            "(sel) => !document.querySelector(sel).classList.contains('busy')", arg=selector
        )

    def toast(self) -> str:
        return self.page.locator("#toast").inner_text()


@pytest.fixture
def open_page(browser, server, request):
    """open_page(endpoints_mine=None, url=None) → a MapPage of the loaded tool (from `url`, default
    the session's server); endpoints_mine, when given, is served as endpoints.mine.js.
    `on_page(page)` runs before the page loads. A screenshot of each page is saved at the end."""
    contexts = []

    def opener(
        endpoints_mine: str | None = None, wait_ready: bool = True, url: str | None = None, on_page=None
    ):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        log = PageLog()

        def route(r):
            url = r.request.url
            if not is_local(url):
                log.blocked.append(url)
                return r.abort("internetdisconnected")
            if endpoints_mine is not None and urlparse(url).path == "/endpoints.js":
                return r.fulfill(status=200, content_type="text/javascript", body=endpoints_mine)
            return r.continue_()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and log.console_error(m))
        page.on("pageerror", lambda e: log.page_errors.append(str(e)))
        page.on("response", lambda r: log.responses.append((r.url, r.status)))
        if on_page:
            on_page(page)
        page.goto(url or server["url"])
        if wait_ready:
            page.wait_for_selector("body[data-ready='true']")
        return MapPage(page, log)

    yield opener
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for i, context in enumerate(contexts):
        for j, page in enumerate(context.pages):
            suffix = f"-{i}{j}" if len(contexts) > 1 or len(context.pages) > 1 else ""
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{suffix}.png"))
            except Exception:  # a screenshot must never fail the test
                pass
        context.close()


@pytest.fixture
def dead_url() -> str:
    """The URL of a port where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/"


@pytest.fixture
def require(server):
    """require("POST /x", ...) skips the test unless the server's /health lists every endpoint."""

    def check(*endpoints: str) -> None:
        missing = [e for e in endpoints if not offers(server, e)]
        if missing:
            pytest.skip(f"the server does not offer {', '.join(missing)} (not in GET /health)")

    return check


def offers(server: dict, endpoint: str) -> bool:
    """Does the server's /health list `endpoint` ("POST /retrainModel")?"""
    method, path = endpoint.split(" ")
    for rule in server["health"].get("endpoints", []):
        r_method, _, r_path = rule.partition(" ")
        if r_method != method or r_path.startswith("/<"):
            continue
        parts, want = r_path.strip("/").split("/"), path.strip("/").split("/")
        if len(parts) == len(want) and all(p.startswith("<") or p == w for p, w in zip(parts, want)):  # noqa: B905
            return True
    return False
