"""Render the README screenshots: the demo served by a real server, the workflow on the map.

    .venv/bin/python scripts/screenshot.py                 # → docs/screenshot.png + docs/screenshot-phone.png
    .venv/bin/python scripts/screenshot.py --out /tmp/s.png --dataset naip=PATH --model_fn PATH

The desktop one (--width x --height) shows the prediction layer filling the view, a predicted
square, corrections drawn with the tools (points, a brush stroke, a polygon), the retrain report
and the legend; the phone one (390 x 844, --phone_out) the same page on a phone. On the demo each
correction has the class the scene's labels give its place (the brush and the polygon move to the
nearest place of one class), as a user who knows the ground would draw them; on other imagery the
classes are fixed.

Starts `web_tool/server.py` on a free port (state in a temporary folder), drives Debian's
chromium (/usr/bin/chromium) with Playwright, offline: every request not to this machine is
refused. Needs the demo (`make demo-data`) unless --dataset is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from offline_chromium import CHROMIUM, CHROMIUM_ARGS, free_port, is_local

REPO = Path(__file__).resolve().parent.parent
DEMO_SCENE = REPO / "web_tool" / "data" / "demo" / "scene.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshot.png"), help="PNG to write")
    parser.add_argument(
        "--phone_out",
        default=str(REPO / "docs" / "screenshot-phone.png"),
        help="PNG of the page on a 390 x 844 phone ('' for none)",
    )
    parser.add_argument("--model_fn", default="web_tool/data/demo_model", help="model the server loads")
    parser.add_argument("--dataset", help="[NAME=]PATH of imagery instead of the demo (datasets.json)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument(
        "--at",
        type=float,
        nargs=2,
        default=(0.25, 0.5),
        metavar=("FX", "FY"),
        help="where to predict, as fractions of the dataset's width and height",
    )
    parser.add_argument("--patch", type=int, default=512, help="size of the predicted square, in pixels")
    parser.add_argument(
        "--patch_screen",
        type=float,
        default=420,
        help="zoom so the square is at most this wide (0: fit the dataset)",
    )
    return parser.parse_args(argv)


def start_server(args: argparse.Namespace, state_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable,
        "web_tool/server.py",
        "--model",
        "nips_hr",
        "--model_fn",
        args.model_fn,
        "--port",
        str(port),
        "--state_dir",
        state_dir,
    ]
    if args.dataset:
        command += ["--dataset", args.dataset]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    log_path = Path(state_dir) / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "health", timeout=2) as response:
                json.load(response)
            return proc, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not answer /health within 120 s")


#: centre the map on [lat, lng] at the largest integer zoom where the square is at most px wide
ZOOM_TO_PATCH = """([lat, lng, px]) => { const s = landcover.state;
    const side = s.patchPixels * s.dataset.resolution / Math.cos(lat * Math.PI / 180);
    const world = 2 * Math.PI * 6378137;
    const zoom = Math.floor(Math.log2(px * world / (256 * side)));
    landcover.map.setView([lat, lng], zoom, {animate: false}); }"""


def wait_quiet(page) -> None:
    """Until the map waits for nothing (its status line hidden)."""
    page.wait_for_function("() => document.querySelector('.map-status').hidden", timeout=180_000)


def point_of(page, lat: float, lng: float) -> tuple[float, float]:
    box = page.locator("#map").bounding_box()
    x, y = page.evaluate(
        "([lat, lng]) => { const p = landcover.map.latLngToContainerPoint([lat, lng]); return [p.x, p.y]; }",
        [lat, lng],
    )
    return box["x"] + x, box["y"] + y


class DemoTruth:
    """The demo scene's labels under a point of the page's map: the screenshot's corrections say
    what the ground really is, as a user who knows it would (None where there is no label)."""

    def __init__(self, scene_path: Path = DEMO_SCENE):
        scene = json.loads(scene_path.read_text())
        self.crs = scene["crs"]
        tiles = [t for area in scene["areas"] for t in area["tiles"]]
        self.tiles = [(t["bounds"], scene_path.parent / t["labels"]) for t in tiles]

    def at(self, page, x: float, y: float) -> int | None:
        """The label (class index) under page point (x, y)."""
        import rasterio
        from rasterio.warp import transform

        box = page.locator("#map").bounding_box()
        lat, lng = page.evaluate(
            "([x, y]) => { const p = landcover.map.containerPointToLatLng([x, y]); return [p.lat, p.lng]; }",
            [x - box["x"], y - box["y"]],
        )
        (ex,), (ny,) = transform("EPSG:4326", self.crs, [lng], [lat])
        for (w, s, e, n), path in self.tiles:
            if w <= ex < e and s < ny <= n:
                with rasterio.open(path) as src:
                    return int(next(src.sample([(ex, ny)]))[0])
        return None

    def one_class(self, page, points: list[tuple[float, float]]) -> int | None:
        """The class under all of `points`, if they share one."""
        found = {self.at(page, x, y) for x, y in points}
        return found.pop() if len(found) == 1 and None not in found else None


def along(vertices: list[tuple[float, float]], spread: float = 0) -> list[tuple[float, float]]:
    """Points along a polyline (and `spread` px either side), to check what a stroke covers."""
    out = []
    for (x0, y0), (x1, y1) in zip(vertices, vertices[1:], strict=False):
        for t in np.linspace(0, 1, 6):
            for d in (-spread, 0, spread) if spread else (0,):
                out.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0) + d))
    return out


def placed(truth: DemoTruth | None, page, shape: list[tuple[float, float]], spread: float, fallback: int):
    """(`shape` moved to the nearest place where it covers one class, that class); unmoved with
    `fallback` when there is no truth to ask or no such place nearby."""
    if truth is not None:
        for r in range(0, 121, 20):
            for sx, sy in sorted({(sx, sy) for sx in (-r, 0, r) for sy in (-r, 0, r)}):
                moved = [(x + sx, y + sy) for x, y in shape]
                cls = truth.one_class(page, along(moved, spread) + moved)
                if cls is not None:
                    return moved, cls
    return shape, fallback


def work(page, args: argparse.Namespace) -> None:
    """The workflow the screenshots show: a square predicted, corrections with three tools, a retrain.
    On the demo, each correction is labelled with the class the scene's labels have there."""
    truth = None if args.dataset else DemoTruth()
    w, s, e, n = page.evaluate("landcover.state.dataset.bounds_4326")
    fx, fy = args.at
    lat, lng = n - fy * (n - s), w + fx * (e - w)
    page.select_option("#patch-size", str(args.patch))
    if args.patch_screen:
        page.evaluate(ZOOM_TO_PATCH, [lat, lng, args.patch_screen])
    x, y = point_of(page, lat, lng)
    page.keyboard.down("Shift")
    page.mouse.click(x, y)
    page.keyboard.up("Shift")
    page.wait_for_selector("img.prediction-overlay", timeout=120_000)
    for dx, dy in ((-60, -40), (-30, -55), (10, -60)):
        cls = truth.at(page, x + dx, y + dy) if truth else None
        page.keyboard.press(str(1 if cls is None else cls + 1))  # the class: Correct mode, point tool
        with page.expect_response("**/recordCorrection", timeout=120_000):
            page.mouse.click(x + dx, y + dy)
    stroke, cls = placed(truth, page, [(x - 80, y + 50), (x - 20, y + 70), (x + 40, y + 55)], 4, 1)
    page.locator(f"#class-{cls}").check()  # a key would go to the brush width box once it shows
    page.locator("[data-tool='brush']").click()
    page.locator("#brush-width").fill("8")
    with page.expect_response("**/recordCorrection", timeout=120_000):
        page.mouse.move(*stroke[0])
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*point, steps=6)
        page.mouse.up()
    ring = [(x + 60, y - 20), (x + 100, y - 10), (x + 95, y + 30), (x + 60, y - 20)]  # closed
    ring, cls = placed(truth, page, ring, 0, 3)  # its edges (the inside of a small one follows)
    page.locator(f"#class-{cls}").check()
    page.locator("[data-tool='polygon']").click()
    with page.expect_response("**/recordCorrection", timeout=120_000):
        for point in ring:
            page.mouse.click(*point)
    with page.expect_response("**/retrainModel", timeout=180_000):
        page.locator("#retrain").click()
    page.keyboard.press("Escape")
    page.locator("#predict-section summary").click()  # folded: the retrain's report shows under the classes
    page.locator("#retrain-result").scroll_into_view_if_needed()
    wait_quiet(page)


def render(url: str, args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    def route(r):
        return r.continue_() if is_local(r.request.url) else r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": args.width, "height": args.height})
        page = context.new_page()
        page.route("**/*", route)
        page.goto(url)
        page.wait_for_selector("body[data-ready='true']", timeout=120_000)
        work(page, args)
        centre = page.evaluate("[landcover.map.getCenter().lat, landcover.map.getCenter().lng]")
        page.mouse.move(*point_of(page, *centre))  # a coordinates readout
        page.wait_for_timeout(300)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out)
        print(f"wrote {args.out}")
        if args.phone_out:  # the same browser storage: the page comes back as it was left
            page.wait_for_timeout(500)  # the page writes what it remembers a moment after a change
            phone = browser.new_context(
                viewport={"width": 390, "height": 844},
                is_mobile=True,
                has_touch=True,
                storage_state=context.storage_state(),
            )
            small = phone.new_page()
            small.route("**/*", route)
            small.goto(url)
            small.wait_for_selector("body[data-ready='true']", timeout=120_000)
            small.wait_for_selector("img.prediction-overlay", timeout=120_000)
            wait_quiet(small)
            small.screenshot(path=args.phone_out)
            print(f"wrote {args.phone_out}")
        browser.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    if not args.dataset and not DEMO_SCENE.exists():
        print(f"the demo is missing ({DEMO_SCENE}): run `make demo-data` first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="landcover-screenshot-") as state_dir:
        proc, url = start_server(args, state_dir)
        try:
            render(url, args)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
