"""How long from a click on the map to the prediction drawn over it, in a real browser?

Debian's chromium, driven by Playwright as the browser tests drive it (offline: only this machine
is reachable), opens the tool served with the seed's launch line on the demo, and shift+clicks the
map as a user does. In the page, the time runs from the click (a capturing listener, before the
page's own) until the new prediction overlay is decoded and drawn: its image `decode()`d, and the
next animation frame (the one that paints it) begun. Before each click the
map's continuous prediction layer has loaded the view's tiles (they are heavy requests too: a click
while the view is still filling waits behind them, which this does not measure). Each click is a little
beside the last (a fresh square, never an image the browser has seen), and after each one the very
request the page sent is replayed with a plain HTTP client against the same server: the HTTP
/predPatch time of the same square, measured in turns with the clicks. Clicks and replays both
wait until the page is still (no tile loading, no CSS animation running: an animating page draws
frames, and without a GPU chromium draws them on the cores the server needs). It prints medians
and their ratio (issue 15 aims at 1.3x at most), where a click's time goes (the page's resource
timing of its request, and of the same request sent a third time by a bare `fetch()` from the
page, no click and nothing drawn: what chromium's own network stack costs), and what the idle page
costs: chromium's CPU (all its processes) over 2 s, right after a prediction and once the page is
still.

    python bench/browser.py [--repeat 7] [--sizes 256 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import psutil
from common import REPO, ServerProcess, markdown_table

sys.path.insert(0, str(REPO / "scripts"))
from offline_chromium import CHROMIUM, CHROMIUM_ARGS, is_local  # noqa: E402

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model"
AIM = 1.3
#: page script: click times and the times each new prediction overlay was drawn
INSTRUMENT = """() => {
  window.__clicks = []; window.__drawn = [];
  document.querySelector("#map").addEventListener("click", (e) => {
    if (e.shiftKey) window.__clicks.push(performance.now());
  }, true);
  const painted = (img) => img.decode().then(() => requestAnimationFrame(
    () => window.__drawn.push(performance.now())));
  new MutationObserver((changes) => {
    for (const c of changes) {
      const nodes = c.type === "attributes" ? [c.target] : [...c.addedNodes];
      const img = nodes.find((n) => n.matches?.("img.prediction-overlay"));
      if (img && img.src.startsWith("data:")) painted(img);
    }
  }).observe(document.querySelector("#map"),
             {subtree: true, childList: true, attributes: true, attributeFilter: ["src"]});
}"""
#: the same request sent by a bare fetch() from the page, no click and nothing drawn: its resource
#: timing (request sent → answer received, ms), as "request in the page" counts it for a click
BARE_FETCH = """async (body) => {
  await (await fetch("/predPatch", {method: "POST", headers: {"Content-Type": "application/json"},
                                    body: JSON.stringify(body)})).arrayBuffer();
  const r = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/predPatch")).at(-1);
  return r.responseEnd - r.startTime;
}"""
#: where the last click's time went, from the page's resource timing of its /predPatch (ms):
#: [click → request sent, request sent → answer received, answer received → overlay drawn]
CLICK_STAGES = """() => {
  const r = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/predPatch")).at(-1);
  const click = window.__clicks.at(-1), drawn = window.__drawn.at(-1);
  return [r.startTime - click, r.responseEnd - r.startTime, drawn - r.responseEnd];
}"""
#: no prediction tile of the view is still loading, nothing on the page animates
SETTLED = """() => ![...document.querySelectorAll('.prediction-tiles img, .uncertainty-tiles img')]
  .some((tile) => !tile.classList.contains('leaflet-tile-loaded'))
  && !document.getAnimations().some((a) => a.playState === 'running')"""
#: zoom so that a predicted square is about `px` screen pixels wide, centred on the dataset
ZOOM = """(px) => { const s = landcover.state, m = landcover.map;
  const [w, south, e, n] = s.dataset.bounds_4326, lat = (south + n) / 2;
  const side = s.patchPixels * s.dataset.resolution / Math.cos(lat * Math.PI / 180);
  const z = Math.floor(Math.log2(px * 2 * Math.PI * 6378137 / (256 * side)));
  m.setView([lat, (w + e) / 2], z, {animate: false}); }"""


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(120_000)
    context.route(
        "**/*", lambda r: r.continue_() if is_local(r.request.url) else r.abort("internetdisconnected")
    )
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("body[data-ready='true']")
    page.evaluate(INSTRUMENT)
    return page


def settle(page) -> None:
    """Wait until the map's prediction tiles of the view have loaded (heavy requests of their own)."""
    page.wait_for_function(SETTLED, polling=200)
    time.sleep(0.5)


def click_to_overlay(page, x: float, y: float) -> tuple[float, dict, list[float]]:
    """Shift+click (x, y) and wait for the overlay; → (seconds from click to painted, request body,
    the click's stages in ms: CLICK_STAGES)."""
    settle(page)
    n = page.evaluate("window.__drawn.length")
    with page.expect_response("**/predPatch") as response:
        page.keyboard.down("Shift")
        page.mouse.click(x, y)
        page.keyboard.up("Shift")
    if not response.value.ok:
        raise RuntimeError(f"/predPatch answered {response.value.status}: {response.value.text()[:300]}")
    page.wait_for_function("(n) => window.__drawn.length > n", arg=n)
    clicked, drawn = page.evaluate("[window.__clicks.at(-1), window.__drawn.at(-1)]")
    return (drawn - clicked) / 1000, response.value.request.post_data_json, page.evaluate(CLICK_STAGES)


def chromium_cpu() -> float:
    """CPU seconds used so far by every chromium process this bench started."""
    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            if "chrom" in proc.name():
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:  # a process that ended meanwhile
            pass
    return total


def cores_used(seconds: float) -> float:
    """Chromium's CPU over the next `seconds`, in cores."""
    start = chromium_cpu()
    time.sleep(seconds)
    return (chromium_cpu() - start) / seconds


def idle_cost(page, seconds: float = 2.0) -> dict:
    """Chromium's CPU (cores) over `seconds` right after a prediction is drawn, then once still."""
    after = cores_used(seconds)
    settle(page)
    return {"after a prediction": after, "still": cores_used(seconds)}


def measure(page, server, size: int, repeat: int) -> dict:
    page.select_option("#patch-size", str(size))
    page.evaluate(ZOOM, 600)
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    browser_s, http_s, stages, bare = [], [], [], []
    for i in range(repeat + 1):  # the first round warms up (a session, the model's graph)
        x, y = cx + 7 * (i % 5 - 2), cy + 5 * (i // 5 - 1)  # a fresh square each time
        took, body, click_stages = click_to_overlay(page, x, y)
        settle(page)
        t0 = time.perf_counter()
        server.post("/predPatch", body)
        http = time.perf_counter() - t0
        settle(page)
        fetched = page.evaluate(BARE_FETCH, body)
        if i:
            browser_s.append(took)
            http_s.append(http)
            stages.append(click_stages)
            bare.append(fetched)
    return {
        "size": size,
        "browser": statistics.median(browser_s),
        "http": statistics.median(http_s),
        "stages": [statistics.median(column) for column in zip(*stages, strict=True)],
        "bare_fetch": statistics.median(bare),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed clicks per patch size (median)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="patch sizes in px")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    launch = ["--model", "nips_hr", "--model_fn", str(DEMO_MODEL), "--fine_tune", "last_layer"]
    results = []
    with ServerProcess(*launch) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = open_page(browser, server.url + "/")
            for size in args.sizes:
                results.append(measure(page, server, size, args.repeat))
                print(f"  {size} px done", flush=True)
            box = page.locator("#map").bounding_box()
            click_to_overlay(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            idle = idle_cost(page)
        finally:
            browser.close()
    rows = []
    for r in results:
        ratio = r["browser"] / r["http"]
        rows.append(
            [
                r["size"],
                f"{r['browser'] * 1000:.0f}",
                f"{r['http'] * 1000:.0f}",
                f"{ratio:.2f}x",
                f"≤ {AIM}x: {'met' if ratio <= AIM else 'not met'}",
            ]
        )
    print(f"\n{args.repeat} clicks per size, medians; chromium {CHROMIUM}\n")
    header = ["patch px", "click → overlay drawn ms", "HTTP /predPatch ms", "browser / HTTP", "aim"]
    print(markdown_table(header, rows))
    print("\nWhere a click's time goes (the page's resource timing of its request), medians, ms:\n")
    stage_rows = [
        [r["size"], *(f"{ms:.0f}" for ms in r["stages"]), f"{r['bare_fetch']:.0f}", f"{r['http'] * 1000:.0f}"]
        for r in results
    ]
    stage_header = ["patch px", "click → request sent", "request in the page", "answer → overlay drawn"]
    more = ["the same request by a bare fetch() in the page", "the same request, plain HTTP"]
    print(markdown_table([*stage_header, *more], stage_rows))
    print(
        "\nThe idle page, chromium's CPU in cores (all its processes, 2 s each): "
        + ", ".join(f"{when} {cores:.2f}" for when, cores in idle.items())
    )


if __name__ == "__main__":
    main()
