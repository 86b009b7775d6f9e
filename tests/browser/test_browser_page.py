"""Issue 13, through the page as a GIS analyst uses it: the bugs it names (each test fails on the
page before the fix), drawing tools, the continuous prediction layer, map chrome, state across a
reload, export, and accessibility (axe-core on every panel)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CORRECTIONS = "[class*='leaflet-corrections-'] path.correction"
PRED_TILES = ".prediction-tiles img.leaflet-tile-loaded"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"


def session_info(server, page) -> dict:
    key = "landcover.session." + server["url"]
    session = page.evaluate("k => localStorage.getItem(k)", key)
    with urllib.request.urlopen(f"{server['url']}sessions/{session}") as response:
        return json.load(response)


def native_zoom(page) -> int:
    return page.evaluate("""() => { const d = landcover.state.dataset, [, s, , n] = d.bounds_4326;
        const world = 2 * Math.PI * 6378137 * Math.cos((s + n) / 2 * Math.PI / 180);
        return Math.round(Math.log2(world / (256 * d.resolution))); }""")


def use_tool(page, tool: str) -> None:
    page.locator(f"[data-tool='{tool}']").click()
    assert page.locator(f"[data-tool='{tool}']").get_attribute("aria-pressed") == "true"


def wait_quiet(page) -> None:
    """Until the map waits for nothing (status hidden)."""
    page.wait_for_function("() => document.querySelector('.map-status').hidden", timeout=120_000)


# --- the bugs ----------------------------------------------------------------------------------------


def test_bug1_reset_after_adding_a_class_goes_back_to_the_base_models_classes(open_page, require):
    require("POST /addClass", "POST /resetModel")
    mp = open_page()
    page = mp.page
    n = page.locator(".class-row").count()
    page.locator("input[name='new-class-name']").fill("Wetland")
    with page.expect_response("**/addClass"):
        page.locator("#add-class button").click()
    page.wait_for_function(f"() => document.querySelectorAll('.class-row').length === {n + 1}")
    page.locator("#correct-section summary").scroll_into_view_if_needed()
    page.locator("#reset").click()
    with page.expect_response("**/resetModel"):
        page.locator("#reset").click()
    page.wait_for_function(f"() => document.querySelectorAll('.class-row').length === {n}")
    body = mp.predict_at(*mp.dataset_center())  # answers 200 (asserted inside), not "5 entries"
    assert len(body["classes"]) == n


def test_bug2_a_reload_keeps_what_the_analyst_sees(open_page, server, require):
    require("POST /recordCorrection", "POST /retrainModel", "GET /corrections")
    mp = open_page()
    page = mp.page
    mp.zoom_to_patch(300)
    page.select_option("#patch-size", "128")
    colour = page.locator(".class-color").nth(2)
    colour.evaluate("el => { el.value = '#aa22cc'; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.locator(".class-weight").nth(1).fill("1.5")
    cx, cy = mp.dataset_center()
    mp.predict_at(cx, cy)
    page.keyboard.press("2")  # class 2, Correct mode, point tool
    for dx in (-40, 0, 40):
        with page.expect_response("**/recordCorrection"):
            page.mouse.click(cx + dx, cy - 30)
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length === 3')
    with page.expect_response("**/retrainModel"):
        page.keyboard.press("r")
    mp.wait_idle("#retrain")
    page.keyboard.press("Escape")
    page.keyboard.press("u")  # uncertainty layer on
    page.locator("#layers-section summary").click()
    page.locator(".layer-row[data-layer=imagery] input[type=range]").fill("60")
    report = page.locator("#retrain-result").inner_text()
    view = page.evaluate(
        "() => { const c = landcover.map.getCenter(); return [c.lat, c.lng, landcover.map.getZoom()]; }"
    )
    messages = page.locator("#messages li").count()
    page.wait_for_timeout(400)  # the page writes its state a moment after a change

    with page.expect_response("**/predPatch") as again:  # the last prediction comes back
        page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert again.value.request.post_data_json["classes"][2]["color"] == "#aa22cc"
    assert page.evaluate(
        "() => { const c = landcover.map.getCenter(); return [c.lat, c.lng, landcover.map.getZoom()]; }"
    ) == (pytest.approx(view))
    assert page.locator("#patch-size").input_value() == "128"
    assert page.locator(".class-color").nth(2).input_value() == "#aa22cc"
    assert page.locator(".class-weight").nth(1).input_value() == "1.5"
    assert page.locator("#show-uncertainty").is_checked()
    assert page.locator(".layer-row[data-layer=imagery] input[type=range]").input_value() == "60"
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length === 3')
    assert page.locator("#retrain-result").inner_text() == report
    assert page.locator("#messages li").count() >= messages
    assert page.locator("#undo-count").inner_text() == f"({session_info(server, page)['undo_steps']})"
    page.wait_for_selector("img.prediction-overlay")


def test_bug3_a_colour_change_recolours_without_the_model_and_reaches_the_export(open_page, require):
    require("POST /predTile")
    mp = open_page()
    page = mp.page
    mp.predict_at(*mp.dataset_center())
    before = mp.overlay_src()
    sent = []
    page.on("request", lambda r: "/predPatch" in r.url and sent.append(r))
    page.locator(".class-color").nth(2).evaluate(
        "el => { el.value = '#ff00aa'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    page.wait_for_function(
        "(src) => document.querySelector('img.prediction-overlay').src !== src", arg=before
    )
    page.wait_for_timeout(500)
    assert sent == [], "a colour change ran the model again"
    pixels = page.evaluate("""async () => { const img = document.querySelector('img.prediction-overlay');
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i+1] === 0 && d[i+2] === 170) n++;
        return n; }""")
    assert pixels > 0  # the Field pixels, in the new colour
    # the export carries the page's colours
    page.locator("#export-section summary").click()
    page.locator("#export-draw").click()
    cx, cy = mp.dataset_center()
    page.mouse.click(cx - 30, cy - 20)
    page.mouse.click(cx + 30, cy + 20)
    with page.expect_request("**/predTile") as job:
        page.locator("#export-start").click()
    assert job.value.post_data_json["classes"][2]["color"] == "#ff00aa"


def test_bug4_the_map_says_it_waits_and_a_second_click_cancels_the_first(open_page):
    mp = open_page()
    page = mp.page
    page.select_option("#patch-size", "1024")
    failed = []
    page.on("requestfailed", lambda r: "/predPatch" in r.url and failed.append(r.failure))
    cx, cy = mp.dataset_center()
    held = []  # the first request waits here until the page has shown that it waits
    page.route("**/predPatch", lambda route: held.append(route))
    with page.expect_request("**/predPatch"):
        mp.shift_click(cx - 50, cy)
    assert page.locator(".result-card").get_attribute("aria-busy") == "true"  # at once
    # the spinners only after a short wait (a quick answer shows none)
    page.wait_for_function(
        "() => document.querySelector('.map-status').textContent.includes('predicting the square')"
    )
    assert page.locator(".result-card.is-busy[aria-busy='true']").count() == 1
    assert page.locator("path.patch-outline.busy").count() == 1
    page.unroute("**/predPatch")  # lets the held request go on (to the page's offline router)
    with page.expect_response("**/predPatch") as second:
        mp.shift_click(cx + 50, cy)
    assert second.value.ok
    assert failed, "the first request was not cancelled"
    mp.wait_predictions()
    page.wait_for_function("() => !document.querySelector('.map-status').textContent.includes('square')")
    # Esc cancels a waiting prediction
    with page.expect_request("**/predPatch"):
        mp.shift_click(cx, cy)
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => document.querySelector('.result-card .card-status').textContent === 'cancelled'"
    )


def test_bug5_an_over_size_export_gives_the_batch_command_with_model_and_checkpoint(
    open_page, browser, tmp_path
):
    import subprocess
    import sys
    import time

    from offline_chromium import free_port

    port = free_port()
    command = [
        sys.executable,
        "web_tool/server.py",
        "--port",
        str(port),
        "--state_dir",
        str(tmp_path),
        "--max_tile_km2",
        "0.05",
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url + "health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        mp = open_page(url=url)
        page = mp.page
        page.locator("#export-section summary").click()
        page.locator("#export-draw").click()
        cx, cy = mp.dataset_center()
        page.mouse.click(cx - 150, cy - 100)
        page.mouse.click(cx + 150, cy + 100)
        page.wait_for_function(
            "() => /limit 0.05 km²/.test(document.querySelector('#export-area-text').textContent)"
        )
        with page.expect_response("**/predTile") as refused:
            page.locator("#export-start").click()
        assert refused.value.status == 413
        page.wait_for_selector("#export-command:not([hidden])")
        command = page.locator("#export-command-text").inner_text()
        for flag in ("--model_fn", "--checkpoint", "--state_dir", "--dataset", "--aoi area.geojson"):
            assert flag in command
        checkpoint = command.split("--checkpoint ")[1].split()[0]
        page.locator("#checkpoint-section summary").click()
        page.locator("#checkpoint-refresh").click()
        page.wait_for_selector(f"#checkpoint-list .checkpoint-id:has-text('{checkpoint}')")  # ids are shown
        assert page.locator("#export-command-file").get_attribute("download") == "area.geojson"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_bug6_a_projected_geojson_area_is_drawn_where_it_is(open_page, require):
    require("POST /aoi")
    mp = open_page()
    page = mp.page
    w, s, e, n = page.evaluate("landcover.state.dataset.bounds_4326")
    from pyproj import Transformer

    to_utm = Transformer.from_crs(4326, 32618, always_xy=True)
    x0, y0 = to_utm.transform((w + e) / 2, (s + n) / 2)
    ring = [[x0, y0], [x0 + 400, y0], [x0 + 400, y0 + 300], [x0, y0 + 300], [x0, y0]]
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}}
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    collection = {"type": "FeatureCollection", "crs": crs, "features": [feature]}
    page.locator("#export-section summary").click()
    with page.expect_response("**/aoi"):
        page.locator("#export-file").set_input_files(
            {
                "name": "utm.geojson",
                "mimeType": "application/geo+json",
                "buffer": json.dumps(collection).encode(),
            }
        )
    page.wait_for_selector("path.export-area")
    box = page.locator("path.export-area").bounding_box()
    map_box = page.locator("#map").bounding_box()
    assert (
        box["width"] < map_box["width"] and box["height"] < map_box["height"]
    )  # a small box, not a world line
    assert box["height"] > 20
    shown = page.locator("#export-area-text").inner_text()  # the part with imagery, of 0.12 km²
    assert 0 < float(shown.split(" km²")[0]) <= 0.121 and "limit" in shown


def test_bug7_zoom_focus_contrast_console_and_words(open_page):
    mp = open_page()
    page = mp.page
    assert not any(status == 404 for _, status in mp.log.responses), "something 404s on every load"
    # the first view shows a prediction filling the map (tiles of the session's model)
    assert page.evaluate("landcover.map.getZoom()") == native_zoom(page)
    page.wait_for_selector(PRED_TILES)
    wait_quiet(page)
    assert page.locator(PRED_TILES).count() >= 6
    # double click zooms in and predicts nothing
    zoom = page.evaluate("landcover.map.getZoom()")
    sent = []
    page.on("request", lambda r: "/predPatch" in r.url and sent.append(r))
    page.mouse.dblclick(*mp.dataset_center())
    page.wait_for_function(f"() => landcover.map.getZoom() === {zoom + 1}")
    page.wait_for_timeout(600)
    assert sent == []
    # the wheel stops 4x beyond the imagery's resolution
    assert page.evaluate("landcover.map.getMaxZoom()") == native_zoom(page) + 2
    # the active mode button keeps its contrast under the pointer
    page.locator("#mode-predict").hover()
    colours = page.locator("#mode-predict").evaluate(
        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
    )
    assert contrast(*colours) >= 4.5, colours
    # the map takes the keyboard focus: arrows pan, Enter predicts at the centre
    page.focus("#map")
    page.keyboard.press("Shift+Tab")  # reach the map with the keyboard (as a keyboard user does)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "map"
    centre = page.evaluate("() => landcover.map.getCenter().lng")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => landcover.map.getCenter().lng > {centre}")
    with page.expect_request("**/predPatch"):
        page.keyboard.press("Enter")
    mp.wait_predictions()
    # errors in the user's words
    page.evaluate("""() => { const [w, s, e, n] = landcover.state.dataset.bounds_4326;
        const far = [n + (n - s) * 3, e + (e - w) * 3];
        landcover.map.setView(far, landcover.map.getZoom(), {animate: false}); }""")
    with page.expect_response("**/predPatch"):
        mp.shift_click(*map_middle(page))
    page.wait_for_selector(".result-card.is-error")
    text = page.locator("#messages").inner_text()
    assert "latitudes" in text and "GET /" not in text and "/datasets" not in text


def map_middle(page) -> tuple[float, float]:
    box = page.locator("#map").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def contrast(fg: str, bg: str) -> float:
    def lum(css: str) -> float:
        r, g, b = (int(v) / 255 for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in (r, g, b)]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    a, b = sorted((lum(fg), lum(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


# --- drawing tools ---------------------------------------------------------------------------------------


def test_polygon_brush_and_eraser_label_and_unlabel_pixels(open_page, server, require):
    require("POST /recordCorrection", "POST /deleteCorrections")
    mp = open_page()
    page = mp.page
    mp.zoom_to_patch(300)
    cx, cy = mp.dataset_center()
    page.keyboard.press("3")
    use_tool(page, "polygon")
    with page.expect_response("**/recordCorrection") as polygon:
        for dx, dy in [(-60, -60), (0, -80), (40, -40), (-60, -60)]:  # closing on the first vertex
            page.mouse.click(cx + dx, cy + dy)
    body = polygon.value.request.post_data_json
    assert body["geometry"]["type"] == "Polygon" and body["crs"] == 4326 and body["value"] == 2
    assert polygon.value.json()["count"] > 50
    use_tool(page, "brush")
    assert page.locator("#brush-row").is_visible()
    page.locator("#brush-width").fill("6")
    with page.expect_response("**/recordCorrection") as brushed:
        mp.drag((cx - 80, cy + 40), (cx + 80, cy + 40))
    assert brushed.value.request.post_data_json["geometry"]["type"] == "MultiPolygon"
    stroke = brushed.value.json()["count"]
    assert stroke > 100  # ~ 6 m x 160 screen px
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length === 2')
    labelled = session_info(server, page)["pixels"]
    use_tool(page, "eraser")  # across half the stroke
    with page.expect_response("**/deleteCorrections") as erased:
        mp.drag((cx, cy + 20), (cx, cy + 60))
    gone = erased.value.json()["count"]
    assert 0 < gone < stroke
    assert session_info(server, page)["pixels"] == labelled - gone
    with page.expect_response("**/doUndo") as undone:
        page.keyboard.press("Control+z")
    assert undone.value.json()["count"] == gone
    assert session_info(server, page)["pixels"] == labelled


def test_brush_works_with_a_pen_and_with_touch(browser, server, require):
    require("POST /recordCorrection")
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(server["url"])
        page.wait_for_selector("body[data-ready='true']")
        page.keyboard.press("1")
        page.locator("[data-tool='brush']").tap()
        box = page.locator("#map").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        # a pen: pointer events of pointerType "pen"
        with page.expect_response("**/recordCorrection") as pen:
            page.evaluate(
                """([x, y]) => { const map = document.querySelector('#map');
                const ev = (type, dx) => new PointerEvent(type, {bubbles: true, pointerId: 7,
                    pointerType: 'pen', clientX: x + dx, clientY: y, button: 0,
                    buttons: type === 'pointerup' ? 0 : 1, pressure: 0.5});
                map.dispatchEvent(ev('pointerdown', -40));
                for (let dx = -30; dx <= 40; dx += 10) map.dispatchEvent(ev('pointermove', dx));
                map.dispatchEvent(ev('pointerup', 40)); }""",
                [x, y],
            )
        assert pen.value.json()["count"] > 10
        # a finger: real touch events (the browser makes the pointer events)
        cdp = context.new_cdp_session(page)

        def touch(kind, points):
            cdp.send(
                "Input.dispatchTouchEvent",
                {"type": kind, "touchPoints": [{"x": px, "y": py} for px, py in points]},
            )

        with page.expect_response("**/recordCorrection") as finger:
            touch("touchStart", [(x - 40, y + 60)])
            for dx in range(-30, 50, 10):
                touch("touchMove", [(x + dx, y + 60)])
            touch("touchEnd", [])
        assert finger.value.json()["count"] > 10
    finally:
        context.close()


# --- the continuous prediction layer, map chrome ---------------------------------------------------


def test_a_retrain_repaints_the_whole_view(open_page, require):
    require("GET /predTiles/d/1/1/1.png", "POST /retrainModel")
    mp = open_page()
    page = mp.page
    page.wait_for_selector(PRED_TILES)
    wait_quiet(page)
    before = page.eval_on_selector_all(PRED_TILES, "imgs => imgs.map(i => i.src)")
    assert before and all("v=" in src for src in before)
    page.keyboard.press("1")
    cx, cy = mp.dataset_center()
    with page.expect_response("**/recordCorrection"):
        page.mouse.click(cx, cy)
    with page.expect_response(lambda r: "/predTiles/" in r.url) as repaint:
        with page.expect_response("**/retrainModel"):
            page.keyboard.press("r")
    version = repaint.value.headers["x-model-version"]
    assert version != "0"
    wait_quiet(page)
    after = page.eval_on_selector_all(PRED_TILES, "imgs => imgs.map(i => i.src)")
    assert after and all(f"v={version}" in src for src in after)


def test_predict_the_view_when_zoomed_out_fills_it_block_by_block(open_page, require):
    require("GET /predTiles/d/1/1/1.png")
    mp = open_page()
    page = mp.page
    zb = native_zoom(page) - 2
    # zoomed out beyond the block zoom, with only a corner of the dataset in view: a few blocks
    page.evaluate(
        """(z) => { const m = landcover.map, [w, s, e, n] = landcover.state.dataset.bounds_4326;
        const size = m.getSize(), corner = m.project([n, e], z);
        const centre = m.unproject(corner.add([size.x / 2 - 200, -(size.y / 2 - 200)]), z);
        m.setView(centre, z, {animate: false}); }""",
        zb - 1,
    )
    blocks = page.evaluate("() => landcover.blocks()")
    assert 0 < blocks <= 9
    asked = []
    page.on("request", lambda r: "/predTiles/" in r.url and f"/{zb}/" in r.url and asked.append(r.url))
    # every text the status line shows, kept as it changes: blocks the server has already made
    # come back at once, and their "block i of n" may be gone before a poll would see it
    page.evaluate(
        """() => { const node = document.querySelector('.map-status');
        window.statusSeen = [];
        new MutationObserver(() => window.statusSeen.push(node.textContent))
          .observe(node, {childList: true, characterData: true, subtree: true}); }"""
    )
    page.locator("#predict-view").click()
    page.wait_for_function("() => window.statusSeen.some((text) => text.includes('block'))")
    wait_quiet(page)
    assert len(asked) == blocks
    page.wait_for_selector(PRED_TILES)  # the coarse tiles, composed from those blocks


def test_legend_scale_goto_layers_and_swipe(open_page):
    mp = open_page()
    page = mp.page
    legend = page.locator(".legend")
    for name in page.evaluate("landcover.state.classes.map(c => c.name)"):
        assert name in legend.inner_text()
    assert "suggested point" in legend.inner_text()
    page.keyboard.press("u")
    assert "unsure" in legend.inner_text()
    assert page.locator(".leaflet-control-scale-line").inner_text().endswith("m")
    page.locator("#goto-text").fill("38.9, -77.01")
    page.locator("#goto-form button[type=submit]").click()
    centre = page.evaluate("() => { const c = landcover.map.getCenter(); return [c.lat, c.lng]; }")
    assert centre == pytest.approx([38.9, -77.01], abs=1e-4)
    page.locator("#goto-dataset").click()
    page.locator("#layers-section summary").click()
    layers = page.eval_on_selector_all(".layer-row", "rows => rows.map(r => r.dataset.layer)")
    for layer in ("imagery", "prediction", "uncertainty", "suggestions", "exports", "osm"):
        assert layer in layers
    assert page.locator(".layer-row input[type=range]").count() == len(layers)
    page.locator(".layer-row[data-layer=prediction] input[type=checkbox]").uncheck()
    assert page.locator(".prediction-tiles").count() == 0
    page.locator(".layer-row[data-layer=prediction] input[type=checkbox]").check()
    page.select_option("#swipe-layer", "prediction")
    page.locator("#swipe-at").fill("30")
    clip = page.evaluate("getComputedStyle(landcover.map.getPane('prediction')).clip")
    assert clip.startswith("rect(")
    assert page.locator("#swipe-divider").is_visible()


def test_export_shows_its_area_live_then_the_map_as_a_layer_with_named_files(open_page, require):
    require("POST /predTile", "GET /jobs/x")
    mp = open_page()
    page = mp.page
    page.locator("#export-section summary").click()
    page.locator("#export-vector").check()
    page.locator("[data-area='Polygon']").click()
    cx, cy = mp.dataset_center()
    page.mouse.click(cx - 40, cy - 30)
    page.mouse.click(cx + 40, cy - 30)
    page.mouse.move(cx + 40, cy + 30, steps=4)
    page.wait_for_function("() => /km²/.test(document.querySelector('#export-area-text').textContent)")
    assert page.locator("#export-area-text").inner_text().startswith("≈")
    page.mouse.click(cx + 40, cy + 30)
    with page.expect_response("**/aoi"):
        page.mouse.click(cx - 40, cy - 30)
    page.wait_for_function("() => /limit/.test(document.querySelector('#export-area-text').textContent)")
    with page.expect_response("**/predTile") as started:
        page.locator("#export-start").click()
    assert started.value.request.post_data_json["vector"] is True
    page.wait_for_function(
        "() => /^(done|failed)/.test(document.querySelector('#export-state').textContent)", timeout=120_000
    )
    assert page.locator("#export-state").inner_text().startswith("done")
    page.wait_for_selector("img.export-overlay")
    hrefs = page.eval_on_selector_all("#export-links a", "links => links.map(a => a.href)")
    assert any(h.endswith(".gpkg") for h in hrefs) and any(h.endswith(".qml") for h in hrefs)
    tif = next(h for h in hrefs if h.endswith(".tif"))
    with urllib.request.urlopen(tif) as response:
        disposition = response.headers["Content-Disposition"]
    assert "demo_" in disposition and "_base.tif" not in disposition  # dataset, date, checkpoint


# --- accessibility ----------------------------------------------------------------------------------------


def test_axe_finds_no_serious_or_critical_violation_in_any_panel(open_page):
    mp = open_page()
    page = mp.page
    page.evaluate("() => document.querySelectorAll('details.panel').forEach(d => d.open = true)")
    for hidden in ("#checkpoint-section", "#export-section", "#validate-section"):
        assert page.locator(hidden).is_visible()
    mp.predict_at(*mp.dataset_center())
    page.keyboard.press("u")
    page.add_script_tag(path=str(AXE))
    for state in ("sidebar open", "help open"):
        if state == "help open":
            page.keyboard.press("h")
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ['violations']})).violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ')}`)"""
        )
        assert violations == [], f"{state}: {violations}"


def test_keyboard_reaches_every_control_with_a_visible_focus(open_page):
    mp = open_page()
    page = mp.page
    seen = set()
    for _ in range(60):
        page.keyboard.press("Tab")
        info = page.evaluate("""() => { const el = document.activeElement; const s = getComputedStyle(el);
            const name = el.id || el.dataset.tool || el.dataset.mode || el.tagName;
            return [name, s.outlineStyle, s.outlineWidth]; }""")
        seen.add(info[0])
        if info[0] in ("map", "predict-view", "mode-correct"):
            assert info[1] != "none" and info[2] != "0px", info
    assert {"map", "predict-view", "dataset", "goto-text"} <= seen
