"""The accuracy walk-through in the page: a sample of a finished export, points answered with keys
and buttons while the map's classes stay hidden, a reload that resumes, and the report with its
chart and CSV. Skipped when the server's /health does not list the validation endpoints."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.conftest import REPO

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SESSION_KEY = "landcover.session."
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
ANSWERS = "**/answers"


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def finished_export(mp, server) -> str:
    """A /predTile job of a 200 m square at the dataset's centre, made in the page's session."""
    page = mp.page
    session = page.evaluate(f"localStorage.getItem('{SESSION_KEY}' + landcover.state.servers[0].url)")
    w, s, e, n = page.evaluate("landcover.state.dataset.bounds_4326")
    x, y = mp.mercator((s + n) / 2, (w + e) / 2)
    extent = {"xmin": x - 130, "ymin": y - 130, "xmax": x + 130, "ymax": y + 130}
    job = post(server["url"] + "predTile", {"extent": extent, "session": session})["job"]
    deadline = time.monotonic() + 60
    while get(f"{server['url']}jobs/{job}?session={session}")["state"] != "done":  # the session's job
        assert time.monotonic() < deadline, "the export did not finish"
        time.sleep(0.2)
    return job


def open_panel(page, job: str) -> None:
    page.locator("#validate-section > summary").click()
    page.wait_for_selector(f"#validate-job option[value='{job}']", state="attached")
    page.locator("#validate-job").select_option(job)


def answer_with(page, press) -> dict:
    """Press a key or click (`press()`), wait for the answer; → the request body sent."""
    with page.expect_response(ANSWERS) as response:
        press()
    assert response.value.ok, response.value.text()
    page.wait_for_selector("#validate-walk:not([aria-busy])", state="attached")  # the page took the answer in
    return response.value.request.post_data_json


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings in the accuracy panel."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async () => (await axe.run('#validate-section', {resultTypes: ['violations']})).violations
            .filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => `${v.id}: ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ')}`)"""
    )


def off_centre_px(page, point: dict) -> float:
    """How far `point` (lat, lon) is from the map's centre, in screen pixels (Leaflet rounds its
    view to whole pixels: half a pixel off when the map's height or width is odd)."""
    js = """([lat, lon]) => { const m = landcover.map;
        return m.latLngToContainerPoint([lat, lon]).distanceTo(m.getSize().divideBy(2)); }"""
    return page.evaluate(js, [point["lat"], point["lon"]])


def test_a_sample_is_walked_with_keys_and_buttons_resumes_after_a_reload_and_ends_in_a_report(
    open_page, server, require
):
    require("POST /predTile", "POST /jobs/x/samples", "POST /jobs/x/samples/x/answers")
    mp = open_page()
    page = mp.page
    mp.zoom_to_patch(300)
    cx, cy = mp.dataset_center()
    mp.predict_at(cx, cy)  # a prediction on the map: it must be hidden while walking
    assert page.locator(mp.OVERLAY).is_visible()
    job = finished_export(mp, server)

    open_panel(page, job)
    page.locator("#validate-new [name=total]").fill("10")
    page.locator("#validate-new [name=min_per_class]").fill("2")
    with page.expect_response(f"**/jobs/{job}/samples/*") as sample_response:
        page.locator("#validate-new button[type=submit]").click()
    sample = sample_response.value.json()
    assert all(p["map_class"] is None for p in sample["points"])  # nothing to anchor on
    page.wait_for_selector("#validate-walk:not([hidden])")
    assert page.evaluate("document.body.classList.contains('validating')")
    assert not page.locator(mp.OVERLAY).is_visible(), "the map's classes show while walking"
    expect(page.locator(".imagery-tiles img.leaflet-tile-loaded").first).to_be_visible()  # what to judge by
    assert page.locator(".prediction-tiles").count() == 0  # nor asked for: no model work nobody sees
    assert serious_violations(page) == []
    assert page.locator(".validate-class").count() == len(sample["classes"])
    assert page.locator("#validate-previous").inner_text() == ""
    assert off_centre_px(page, sample["points"][0]) <= 1  # zoomed on the point
    assert page.locator(".leaflet-validation-pane path.validate-pixel").count() == 1

    session = page.evaluate(f"localStorage.getItem('{SESSION_KEY}' + landcover.state.servers[0].url)")
    assert answer_with(page, lambda: page.keyboard.press("1")) == {
        "point": 0,
        "answer": 0,
        "session": session,
    }
    expect(page.locator("#validate-previous")).to_contain_text("the map says")  # revealed once answered
    assert answer_with(page, lambda: page.locator(".validate-class").nth(1).click())["answer"] == 1
    assert answer_with(page, lambda: page.keyboard.press("s"))["answer"] == "skip"
    assert answer_with(page, lambda: page.keyboard.press("u"))["answer"] == "unsure"
    page.keyboard.press("Backspace")  # back to point 3 (the unsure one)
    page.wait_for_function("() => /again/.test(document.querySelector('#validate-question').textContent)")
    assert answer_with(page, lambda: page.keyboard.press("3")) == {
        "point": 3,
        "answer": 2,
        "session": session,
    }
    expect(page.locator("#validate-count")).to_contain_text("point 5")
    assert page.locator(".validate-class[aria-pressed=true]").count() == 0
    assert page.locator(mp.OVERLAY).count() == 1 and not page.locator(mp.OVERLAY).is_visible()

    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    open_panel(page, job)
    resume = page.locator(f".validate-sample[data-sample='{sample['sample']}'] button", has_text="Resume")
    resume.wait_for()
    resume.click()
    page.wait_for_selector("#validate-walk:not([hidden])")
    state = get(f"{server['url']}jobs/{job}/samples/{sample['sample']}?session={session}")
    assert state["progress"]["answered"] == 3 and state["progress"]["skipped"] == 1
    assert off_centre_px(page, state["next"]) <= 1
    expect(page.locator("#validate-count")).to_contain_text("3 of 10 answered")

    for _ in range(20):  # the rest, then the skipped point once more
        if page.locator("#validate-walk").is_hidden():
            break
        answer_with(page, lambda: page.keyboard.press("2"))
    expect(page.locator("#validate-report .validate-headline")).to_contain_text("Overall accuracy")
    assert not page.evaluate("document.body.classList.contains('validating')")
    expect(page.locator(".prediction-tiles")).to_have_count(1)  # the prediction layer is back
    done = page.locator(f".validate-sample[data-sample='{sample['sample']}']")
    expect(done).to_contain_text("10 answered")
    expect(done.locator("button").first).to_have_text("Review")
    assert page.locator("#validate-report svg.validate-chart rect.bar-estimated").count() >= 1
    assert page.locator("#validate-report table.validate-table").count() == 3  # accuracy, areas, error matrix
    assert serious_violations(page) == []
    with page.expect_download() as download:
        page.locator("#validate-report button", has_text="Download CSV").click()
    assert download.value.suggested_filename.endswith(".csv")
    assert open(download.value.path()).read().startswith('"error matrix (points)')
    assert get(f"{server['url']}sessions/{session}")["corrections"] == 0  # answers never train
    assert not mp.log.unexpected_errors(), mp.log.unexpected_errors()


def test_the_map_against_the_datasets_labels_in_the_page(open_page, server, require):
    require("POST /predTile", "POST /jobs/x/reference")
    mp = open_page()
    page = mp.page
    job = finished_export(mp, server)
    open_panel(page, job)
    page.locator(".validate-reference summary").click()
    with page.expect_response(f"**/jobs/{job}/reference") as response:
        page.locator("#validate-labels").click()
    assert response.value.ok, response.value.text()
    assert response.value.json()["kind"] == "census"
    expect(page.locator("#validate-report .validate-headline")).to_contain_text("Overall accuracy")
    expect(page.locator("#validate-report .validate-headline")).to_contain_text("no sampling error")
    assert not mp.log.unexpected_errors(), mp.log.unexpected_errors()
