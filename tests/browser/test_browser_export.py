"""Large-area export through the page: pick an area, run a /predTile job, follow it, download.
Skipped when the server's /health does not list the job endpoints."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

JOB_TIMEOUT_MS = 60_000


def wait_for_job(page) -> None:
    """Wait until the job ends (done, failed or cancelled) and check that it is done."""
    page.wait_for_function(
        "() => /^(done|failed|cancelled)/.test(document.querySelector('#export-state').textContent)"
        " || /export (failed|cancelled)/.test(document.querySelector('#toast').textContent)",
        timeout=JOB_TIMEOUT_MS,
    )
    state = page.locator("#export-state").inner_text()
    assert state.startswith("done"), f"{state} / {page.locator('#toast').inner_text()}"
    page.wait_for_selector("#export-links a")


def test_drawn_rectangle_exports_with_progress_downloads_and_a_class_chart(open_page, require):
    require("POST /predTile", "GET /jobs/x", "GET /downloads/x")
    mp = open_page()
    page = mp.page
    page.locator("#export-section summary").click()
    page.locator("#export-draw").click()
    assert page.locator("#export-draw").get_attribute("aria-pressed") == "true"
    cx, cy = mp.dataset_center()
    page.mouse.click(cx - 40, cy - 30)  # two corners (clicks or taps)
    with page.expect_response("**/aoi"):
        page.mouse.click(cx + 40, cy + 30)
    assert page.locator(".export-area").count() == 1
    assert page.locator("#export-draw").get_attribute("aria-pressed") == "false"  # back to panning
    page.wait_for_timeout(200)
    assert page.locator("img.prediction-overlay").count() == 0  # the clicks predicted nothing

    with page.expect_response("**/predTile") as started:
        page.locator("#export-start").click()
    assert started.value.status == 202, started.value.text()
    body = started.value.request.post_data_json
    assert body["geometry"]["type"] == "Polygon" and body["crs"] == 4326  # the drawn rectangle
    assert body["dataset"] == page.evaluate("landcover.state.dataset.name")
    page.locator("#export-progress").wait_for(state="visible")  # shown once the page has read the 202
    wait_for_job(page)
    assert page.locator("#export-progress").evaluate("p => p.value") == 1
    assert page.locator("#export-state").inner_text().startswith("done")

    hrefs = page.eval_on_selector_all("#export-links a", "links => links.map(a => a.href)")
    assert any(h.endswith(".tif") for h in hrefs), hrefs
    for href in hrefs:  # every link downloads
        with urllib.request.urlopen(href) as response:
            assert response.status == 200
    bars = page.locator("#export-chart svg.area-chart rect.chart-bar")
    assert bars.count() == page.locator(".class-row").count()


def test_uploaded_geojson_area_is_exported_as_a_geometry(open_page, require):
    require("POST /predTile", "GET /jobs/x")
    mp = open_page()
    page = mp.page
    w, s, e, n = page.evaluate("landcover.state.dataset.bounds_4326")
    lng0, lat0 = (w + e) / 2, (s + n) / 2
    dx, dy = (e - w) / 20, (n - s) / 20
    ring = [[lng0 - dx, lat0 - dy], [lng0 + dx, lat0 - dy], [lng0, lat0 + dy], [lng0 - dx, lat0 - dy]]
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        ],
    }
    page.locator("#export-section summary").click()
    data = json.dumps(collection).encode()
    page.locator("#export-file").set_input_files(
        {"name": "area.geojson", "mimeType": "application/geo+json", "buffer": data}
    )
    page.wait_for_selector(".export-area")
    with page.expect_response("**/predTile") as started:
        page.locator("#export-start").click()
    assert started.value.status == 202, started.value.text()
    body = started.value.request.post_data_json
    assert body["crs"] == 4326 and body["geometry"]["type"] == "Polygon"
    wait_for_job(page)


def test_a_bad_geojson_file_is_refused_with_a_message(open_page, require):
    require("POST /predTile")
    mp = open_page()
    page = mp.page
    page.locator("#export-section summary").click()
    point = b'{"type": "Point", "coordinates": [0, 0]}'
    page.locator("#export-file").set_input_files(
        {"name": "points.geojson", "mimeType": "application/json", "buffer": point}
    )
    page.wait_for_function("() => document.querySelector('#toast').textContent.includes('points.geojson')")
    assert "no Polygon" in mp.toast()
    assert page.locator("#export-start").is_disabled()
