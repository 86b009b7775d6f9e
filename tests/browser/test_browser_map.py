"""The page itself: loads offline, shows imagery, predicts on shift+click, keys, errors, servers."""

from __future__ import annotations

import json
import math

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OVERLAY = "img.prediction-overlay"


def test_page_loads_offline_with_leaflet_from_vendor_and_no_console_errors(open_page):
    mp = open_page()
    page = mp.page
    page.wait_for_timeout(500)  # let late errors arrive
    assert mp.log.unexpected_errors() == []
    assert mp.log.blocked == [], "the page asked for something outside this machine"
    vendor = [(url, status) for url, status in mp.log.responses if "/vendor/" in url]
    assert any(url.endswith("/leaflet/leaflet.js") and status == 200 for url, status in vendor)
    assert any(url.endswith("leaflet.css") and status == 200 for url, status in vendor)
    assert any(url.endswith("/geoman/leaflet-geoman.js") and status == 200 for url, status in vendor)
    assert page.evaluate("typeof L.PM.initialize") == "function"
    assert page.evaluate("typeof landcover.map.getZoom()") == "number"
    # the default dataset is selected and the map is zoomed onto it
    assert page.locator("#dataset").input_value() == page.evaluate("landcover.state.dataset.name")
    inside = page.evaluate("""() => { const [w, s, e, n] = landcover.state.dataset.bounds_4326;
        const c = landcover.map.getCenter(); return c.lat > s && c.lat < n && c.lng > w && c.lng < e; }""")
    assert inside
    assert page.locator(".class-row").count() == len(page.evaluate("landcover.state.dataset.classes"))


def test_imagery_tiles_come_from_the_server_and_render(open_page):
    mp = open_page()
    page = mp.page
    page.wait_for_selector(".imagery-tiles img.leaflet-tile-loaded")
    page.wait_for_function("() => !document.querySelector('.imagery-tiles img:not(.leaflet-tile-loaded)')")
    tiles = [(url, status) for url, status in mp.log.responses if "/tiles/" in url]
    assert tiles and all(status == 200 for _, status in tiles), tiles
    loaded = ".imagery-tiles img.leaflet-tile-loaded"
    sizes = page.eval_on_selector_all(loaded, "imgs => imgs.map(i => i.naturalWidth)")
    assert sizes and set(sizes) == {256}


def test_shift_click_overlays_the_prediction_on_exactly_the_requested_square(open_page):
    mp = open_page()
    page = mp.page
    x, y = (round(v) for v in mp.dataset_center(dx=-17, dy=11))
    lat, lng = mp.latlng_at(x, y)
    body = mp.predict_at(x, y)
    zoom = page.evaluate("landcover.map.getZoom()")
    screen_px = 2 * math.pi * mp.EARTH_RADIUS / (256 * 2**zoom)  # EPSG:3857 metres per screen pixel

    # the request: a square of 256 dataset pixels (default) centred on the clicked point
    ext = body["extent"]
    assert ext["spatialReference"]["latestWkid"] == 3857
    cx, cy = mp.mercator(lat, lng)
    side = ext["xmax"] - ext["xmin"]
    assert (ext["xmin"] + ext["xmax"]) / 2 == pytest.approx(cx, abs=0.6 * screen_px)
    assert (ext["ymin"] + ext["ymax"]) / 2 == pytest.approx(cy, abs=0.6 * screen_px)
    assert side == pytest.approx(ext["ymax"] - ext["ymin"])
    resolution = page.evaluate("landcover.state.dataset.resolution")
    assert side == pytest.approx(256 * resolution / math.cos(math.radians(lat)), rel=1e-6)
    assert body["dataset"] == page.evaluate("landcover.state.dataset.name")
    assert len(body["weights"]) == len(body["classes"]) == page.locator(".class-row").count()

    # the overlay: an image on exactly those bounds (centre on the click, side at this zoom)
    box = page.locator(OVERLAY).bounding_box()
    side_px = side / screen_px
    assert box["width"] == pytest.approx(side_px, abs=1.5)
    assert box["height"] == pytest.approx(side_px, abs=1.5)
    assert box["x"] + box["width"] / 2 == pytest.approx(x, abs=1.5)
    assert box["y"] + box["height"] / 2 == pytest.approx(y, abs=1.5)
    assert mp.overlay_src().startswith("data:image/png;base64,")
    # the result card of the server shows the same image and the model's name
    card = page.locator(".result-card").first
    assert card.locator("img.card-image").get_attribute("src") == mp.overlay_src()
    assert "model:" in card.locator(".card-status").inner_text()

    # soft output on "v", back to hard on "v"
    hard = mp.overlay_src()
    page.keyboard.press("v")
    assert page.locator("#output-soft").is_checked()
    assert mp.overlay_src() != hard
    page.keyboard.press("v")
    assert mp.overlay_src() == hard


def test_keys_hide_show_toggle_the_overlay_and_change_its_opacity(open_page):
    mp = open_page()
    page = mp.page
    mp.predict_at(*mp.dataset_center())
    overlay = page.locator(OVERLAY)

    def opacity() -> float:
        return float(overlay.evaluate("img => getComputedStyle(img).opacity"))

    page.keyboard.press("a")
    assert overlay.count() == 0 and not page.locator("#overlay-visible").is_checked()
    page.keyboard.press("s")
    assert overlay.count() == 1 and page.locator("#overlay-visible").is_checked()
    page.keyboard.press("d")
    assert overlay.count() == 0
    page.keyboard.press("d")
    assert overlay.count() == 1

    start = opacity()
    assert start == pytest.approx(0.7)
    page.keyboard.press("ArrowUp")
    assert opacity() == pytest.approx(0.8)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowLeft")
    assert opacity() == pytest.approx(0.5)
    assert page.locator("#opacity-value").inner_text() == "50%"
    for _ in range(8):
        page.keyboard.press("ArrowDown")
    assert opacity() == 0  # clamped
    page.keyboard.press("ArrowRight")
    assert opacity() == pytest.approx(0.1)


def test_a_server_error_is_shown_as_its_message(open_page):
    mp = open_page()
    page = mp.page
    page.evaluate("""() => { const [w, s, e, n] = landcover.state.dataset.bounds_4326;
        const far = [n + (n - s) * 3, e + (e - w) * 3];  // well outside the imagery
        landcover.map.setView(far, landcover.map.getZoom(), {animate: false}); }""")
    with page.expect_response("**/predPatch") as response:
        mp.shift_click(*_map_middle(page))
    assert response.value.status == 404
    error = response.value.json()["error"]
    page.wait_for_selector(".result-card.is-error")
    status = page.locator(".result-card .card-status").first.inner_text()
    assert error in status
    assert error in mp.toast()
    assert "undefined" not in mp.toast()
    assert page.locator("#messages .msg-error").first.inner_text().endswith(error)
    assert page.locator(OVERLAY).count() == 0


def _map_middle(page) -> tuple[float, float]:
    box = page.locator("#map").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def test_endpoints_mine_lists_servers_side_by_side_and_names_unreachable_ones(open_page, server, dead_url):
    # endpoints.mine.js overrides endpoints.js: this server twice (same origin, and cross-origin
    # by another name) and one that is not there
    mine = f"""export default [
      {{ name: "same origin", url: "./" }},
      {{ name: "cross origin", url: "http://localhost:{server["port"]}/" }},
      {{ name: "gone", url: "{dead_url}" }},
    ];"""
    mp = open_page(endpoints_mine=mine)
    page = mp.page
    cards = page.locator(".result-card")
    assert cards.count() == 3
    assert cards.nth(2).locator(".card-name").inner_text() == "gone"
    mp.shift_click(*mp.dataset_center())
    page.wait_for_selector(OVERLAY)
    mp.wait_predictions()
    first, second = (cards.nth(i).locator("img.card-image") for i in range(2))
    assert first.get_attribute("src").startswith("data:image/png")
    assert second.get_attribute("src") == first.get_attribute("src")  # same model, same answer
    assert f"cannot reach server gone ({dead_url})" in cards.nth(2).inner_text()
    assert page.locator("#messages").get_by_text("cannot reach server gone").count() >= 1
    # selecting the dead server's card takes its (missing) prediction off the map
    cards.nth(2).click()
    assert cards.nth(2).get_attribute("aria-pressed") == "true"
    assert page.locator(OVERLAY).count() == 0
    cards.nth(1).click()
    assert page.locator(OVERLAY).count() == 1


def test_help_overlay_lists_the_keys(open_page):
    mp = open_page()
    page = mp.page
    help_box = page.locator("#help")
    assert help_box.is_hidden()
    page.keyboard.press("h")
    assert help_box.is_visible()
    text = help_box.inner_text()
    for key in ("Shift + click", "a / s / d", "hide / show / toggle", "opacity"):
        assert key in text
    page.keyboard.press("Escape")
    assert help_box.is_hidden()
    page.keyboard.press("?")
    assert help_box.is_visible()
    page.locator("#help-close").click()
    assert help_box.is_hidden()


def test_weights_and_class_colours_are_sent_with_the_next_prediction(open_page):
    mp = open_page()
    page = mp.page
    mp.predict_at(*mp.dataset_center())
    with page.expect_request("**/predPatch") as request:  # a weight needs the model again
        page.locator(".class-weight").first.fill("0")
    body = request.value.post_data_json
    assert body["weights"][0] == 0
    assert all(w == 1 for w in body["weights"][1:])
    mp.wait_predictions()
    page.locator(".class-color").first.evaluate(  # a colour does not (it recolours): the next one carries it
        "el => { el.value = '#123456'; el.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    body = mp.predict_at(*mp.dataset_center(dx=20))
    assert body["classes"][0]["color"] == "#123456"


def test_online_basemap_is_off_by_default_and_fails_quietly_offline(open_page):
    mp = open_page()
    page = mp.page
    assert not any("openstreetmap" in url for url, _ in mp.log.responses + [(b, 0) for b in mp.log.blocked])
    page.locator("#layers-section summary").click()
    page.get_by_role("checkbox", name="OpenStreetMap (online)").check()
    page.wait_for_function("() => document.querySelectorAll('img.leaflet-tile').length > 0")
    page.wait_for_timeout(500)
    assert any("openstreetmap" in url for url in mp.log.blocked)  # asked, refused (offline)...
    assert page.locator("#toast").is_hidden()  # ... and nothing is reported to the user
    assert mp.log.page_errors == []
    # the coordinates readout follows the pointer
    x, y = mp.dataset_center()
    page.mouse.move(x, y)
    lat, lng = mp.latlng_at(x, y)
    shown = page.locator(".coords").inner_text().split(" · ")[0]
    shown_lat, shown_lng = (float(v) for v in shown.split(", "))
    assert (shown_lat, shown_lng) == pytest.approx((lat, lng), abs=5e-5)


def test_uncertainty_overlay_and_label_suggestions_when_the_server_sends_them(open_page):
    mp = open_page()
    page = mp.page
    with page.expect_response("**/predPatch") as response:
        mp.shift_click(*mp.dataset_center())
    assert response.value.ok, response.value.text()
    answer = response.value.json()
    mp.wait_predictions()
    if "output_uncertainty" not in answer and not answer.get("suggestions"):
        pytest.skip("this server's /predPatch sends neither output_uncertainty nor suggestions")
    if answer.get("suggestions"):
        page.wait_for_selector(".leaflet-suggestions-pane path.suggestion")
        assert page.locator(".leaflet-suggestions-pane path.suggestion").count() == len(answer["suggestions"])
        assert page.locator("#suggestion-note").is_visible()
        # before the session's first retrain the note says why the rings lie where they do
        note = page.locator("#suggestion-note").inner_text()
        by_chance = answer.get("suggestions_by") == "random"
        assert ("spread at random until your first retrain" in note) == by_chance
    if "output_uncertainty" in answer:
        uncertainty = page.locator("img.uncertainty-overlay")
        assert uncertainty.count() == 0  # off until asked for
        page.keyboard.press("u")
        assert uncertainty.count() == 1
        assert uncertainty.get_attribute("src") == "data:image/png;base64," + answer["output_uncertainty"]
        assert uncertainty.bounding_box() == pytest.approx(page.locator(OVERLAY).bounding_box(), abs=1)
        page.keyboard.press("u")
        assert uncertainty.count() == 0


def test_the_page_is_still_once_a_prediction_is_drawn(open_page):
    """Nothing keeps animating after an answer (suggestion rings included): without a GPU,
    chromium draws every frame on the cores the server predicts on."""
    mp = open_page()
    page = mp.page
    with page.expect_response("**/predPatch") as response:
        mp.shift_click(*mp.dataset_center())
    assert response.value.json().get("suggestions"), "the demo server sends suggestions"
    mp.wait_predictions()
    page.wait_for_selector(".leaflet-suggestions-pane path.suggestion")
    page.wait_for_function("() => document.querySelector('.map-status').hidden")  # the view's tiles too
    running = "document.getAnimations().filter((a) => a.playState === 'running').map((a) => a.animationName)"
    assert page.evaluate(running) == []


def test_the_page_says_when_its_only_server_cannot_be_reached(open_page, dead_url):
    mine = f'export default [{{ name: "offline box", url: "{dead_url}" }}];'
    mp = open_page(endpoints_mine=mine, wait_ready=False)
    page = mp.page
    page.wait_for_selector("body[data-ready='error']")
    assert f"cannot reach server offline box ({dead_url})" in mp.toast()
    assert mp.log.page_errors == []
    assert page.locator(".result-card").count() == 1


def test_features_the_server_does_not_list_in_health_are_hidden(open_page, server):
    seed_only = [
        "GET /datasets",
        "GET /health",
        "GET /tiles/<dataset>/<z>/<x>/<y>.png",
        "POST /getInput",
        "POST /predPatch",
    ]
    health = {**server["health"], "endpoints": seed_only}
    body = json.dumps(health)

    def seed_health(page):  # from the first load on: a session made by an earlier load would hide the point
        page.route("**/health", lambda r: r.fulfill(status=200, content_type="application/json", body=body))

    mp = open_page(wait_ready=False, on_page=seed_health)
    page = mp.page
    page.wait_for_selector("body[data-ready='true']")
    hidden = ["#mode-correct", "#correct-section", "#checkpoint-section", "#export-section", "#add-class"]
    for selector in hidden:
        assert page.locator(selector).is_hidden(), selector
    page.keyboard.press("h")
    assert "retrain" not in page.locator("#help").inner_text()
    page.keyboard.press("Escape")
    page.keyboard.press("c")  # no Correct mode to switch to
    assert page.locator("#mode-predict").get_attribute("aria-pressed") == "true"
    mp.predict_at(*mp.dataset_center())  # predictions still work, with no session
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('landcover.session.'))") == []
