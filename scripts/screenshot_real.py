"""Render the README's picture of learning on real imagery: the page before and after a retrain.

    .venv/bin/python scripts/screenshot_real.py      # → docs/real-naip.png (needs ../shared)

Serves a real NAIP patch of `../shared/data/chesapeake-wv-dev/naip2014` with the seed's launch line
(the demo model, trained on the synthetic demo only), predicts a 256 px square in the page, then
clicks, in the page's Correct mode, pixels where the demo model is wrong with their class from the
development set's labels (a user who knows the ground), presses Retrain, and shows the map again.
The picture puts side by side the imagery, the labels, the map before and the map after, with the
pixel accuracy of each map over the patch (computed here from the same labels).

Starts `web_tool/server.py` on a free port (state in a temporary folder) and drives Debian's
chromium with Playwright, offline, like scripts/screenshot.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from offline_chromium import CHROMIUM, CHROMIUM_ARGS, is_local
from PIL import Image, ImageDraw, ImageFont
from rasterio.warp import transform as warp_xy
from screenshot import wait_quiet

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import ServerProcess  # noqa: E402  (bench/ is no package)
from devset import DEV_DIR, IGNORE, Patch, available, load  # noqa: E402
from simulated_user import Tool  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "real-naip.png"), help="PNG to write")
    parser.add_argument("--patch", type=int, default=0, help="which development patch (0-7)")
    parser.add_argument("--clicks", type=int, default=30, help="corrections before the retrain")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def accuracy(classes: np.ndarray, truth: np.ndarray) -> float:
    ok = truth != IGNORE
    return float((classes == truth)[ok].mean())


#: the session id the page keeps in its browser storage (web_tool/js/sessions.js)
SESSION = "Object.entries(localStorage).find(([k]) => k.startsWith('landcover.session.'))[1]"
#: where a point of the map is on the page
TO_SCREEN = (
    "([lat, lng]) => { const p = landcover.map.latLngToContainerPoint([lat, lng]); return [p.x, p.y]; }"
)


def run(page, tool: Tool, patch: Patch, clicks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's work in the page: predict the patch, click where the map is wrong, retrain.
    Returns the session's map of the patch before and after (HTTP, on the patch's own grid)."""

    def screen(x: float, y: float) -> tuple[float, float]:
        (lng,), (lat,) = warp_xy(patch.crs, "EPSG:4326", [x], [y])
        box = page.locator("#map").bounding_box()
        px, py = page.evaluate(TO_SCREEN, [lat, lng])
        return box["x"] + px, box["y"] + py

    h, w = patch.shape
    centre = patch.centre(h // 2, w // 2)
    (lng,), (lat,) = warp_xy(patch.crs, "EPSG:4326", [centre[0]], [centre[1]])
    page.select_option("#patch-size", "256")
    page.evaluate("([lat, lng]) => landcover.map.setView([lat, lng], 18, {animate: false})", [lat, lng])
    wait_quiet(page)
    page.keyboard.down("Shift")
    page.mouse.click(*screen(*centre))
    page.keyboard.up("Shift")
    page.wait_for_selector("img.prediction-overlay", timeout=120_000)
    wait_quiet(page)
    tool.session = page.evaluate(SESSION)  # the page's own session: the maps below are its maps
    before = tool.predict(patch)[0]

    # a user who knows the ground clicks where the map is wrong, away from the patch's edges
    rng = np.random.default_rng(seed)
    wrong = np.argwhere((before != patch.truth) & (patch.truth != IGNORE))
    wrong = wrong[(wrong.min(axis=1) >= 8) & (wrong.max(axis=1) < min(h, w) - 8)]
    for r, c in wrong[rng.choice(len(wrong), size=min(clicks, len(wrong)), replace=False)]:
        page.keyboard.press(str(int(patch.truth[r, c]) + 1))  # the class's key: Correct mode, point tool
        with page.expect_response("**/recordCorrection", timeout=120_000):
            page.mouse.click(*screen(*patch.centre(int(r), int(c))))
    with page.expect_response("**/retrainModel", timeout=180_000):
        page.locator("#retrain").click()
    page.keyboard.press("Escape")
    wait_quiet(page)
    return before, tool.predict(patch)[0]


def panel(rgb: np.ndarray, title: str, size: int = 300) -> Image.Image:
    """`rgb` scaled to `size` px (nearest neighbour: pixels stay pixels) under a title."""
    image = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size), Image.Resampling.NEAREST)
    out = Image.new("RGB", (size, size + 26), "white")
    out.paste(image, (0, 26))
    ImageDraw.Draw(out).text((2, 4), title, fill="black", font=ImageFont.load_default(15))
    return out


def walkthrough(
    browser, clicks: int, patch_index: int = 0, seed: int = 0
) -> tuple[Patch, list, np.ndarray, np.ndarray]:
    """The user's work in a page of Playwright's `browser` on development patch `patch_index`, with
    a server of its own: (the patch, the class colours, the map before, the map after), maps on
    the patch's grid."""
    launch = ["--model", "nips_hr", "--model_fn", "web_tool/data/demo_model", "--fine_tune", "last_layer"]
    with tempfile.TemporaryDirectory(prefix="landcover-real-") as state_dir:
        dataset = ["--dataset", f"naip2014={DEV_DIR / 'naip2014'}", "--state_dir", state_dir]
        with ServerProcess(*launch, *dataset) as server:
            tool = Tool(server, "naip2014")
            patch = load("naip2014", tool.class_names)[patch_index]
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.route("**/*", lambda r: r.continue_() if is_local(r.request.url) else r.abort())
            page.goto(server.url + "/")
            page.wait_for_selector("body[data-ready='true']", timeout=120_000)
            before, after = run(page, tool, patch, clicks, seed)
            context.close()
    return patch, tool.colors, before, after


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not available():
        print(f"{DEV_DIR} is absent: this picture needs the development set", file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        patch, colors, before, after = walkthrough(browser, args.clicks, args.patch, args.seed)
        browser.close()
    colours = np.array([*colors, (255, 255, 255)], np.uint8)  # IGNORE (-1): white
    a0, a1 = accuracy(before, patch.truth), accuracy(after, patch.truth)
    panels = [
        panel(patch.image[..., :3], "NAIP 2014 (autumn), 256 m a side"),
        panel(colours[patch.truth], "labels (Chesapeake Conservancy)"),
        panel(colours[before], f"demo model: {a0:.0%} right"),
        panel(colours[after], f"after {args.clicks} clicks and Retrain: {a1:.0%}"),
    ]
    sheet = Image.new(
        "RGB", (sum(p.width for p in panels) + 8 * (len(panels) - 1), panels[0].height), "white"
    )
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 8
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out}: {a0:.3f} -> {a1:.3f} right on patch {args.patch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
