"""Human in the loop through the page: corrections, retrain, undo, reset, sessions, checkpoints,
new classes. Each test is skipped when the server's /health does not list what it needs."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OVERLAY = "img.prediction-overlay"
CORRECTIONS = "[class*='leaflet-corrections-'] path.correction"
SESSION_KEY = "landcover.session."


def record(mp, x: float, y: float, corner: tuple[float, float] | None = None) -> dict:
    """Click in Correct mode (a point), or a rectangle's two corners with the rectangle tool; → the
    /recordCorrection answer, once the corrections layer shows it."""
    page = mp.page
    shown = page.locator(CORRECTIONS).count()
    tool = "rectangle" if corner else "point"
    if page.locator(f"[data-tool='{tool}']").get_attribute("aria-pressed") != "true":
        page.locator(f"[data-tool='{tool}']").click()
    with page.expect_response("**/recordCorrection") as response:
        page.mouse.click(x, y)
        if corner:
            page.mouse.click(*corner)
    assert response.value.ok, response.value.text()
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length > {shown}')
    return response.value.json()


def count_badge(page, index: int) -> int:
    return int(page.locator(f"#class-count-{index}").inner_text())


def test_corrections_then_retrain_change_the_overlay_and_undo_steps_back(open_page, require):
    require("POST /recordCorrection", "POST /retrainModel", "POST /doUndo")
    mp = open_page()
    page = mp.page
    side = mp.zoom_to_patch(300)
    assert side > 170, "the predicted square is too small on screen for these clicks"
    cx, cy = mp.dataset_center()
    mp.predict_at(cx, cy)
    before = mp.overlay_src()

    page.keyboard.press("1")  # class 1 and Correct mode
    assert page.locator("#mode-correct").get_attribute("aria-pressed") == "true"
    assert page.locator("#class-0").is_checked()
    for dx, dy in [(-60, -60), (-30, -70), (0, -80), (40, -60), (70, -40)]:
        assert record(mp, cx + dx, cy + dy)["count"] >= 1
    rect = record(mp, cx - 80, cy + 20, corner=(cx - 40, cy + 60))
    assert rect["count"] > 4  # a rectangle labels many pixels
    page.wait_for_function("() => document.querySelector('#class-count-0').textContent === '6'")
    page.locator("[data-tool='point']").click()
    page.keyboard.press("2")
    for dx, dy in [(60, 60), (30, 80), (80, 30), (10, 40), (50, 10)]:  # 5: enough to cross-validate
        record(mp, cx + dx, cy + dy)
    page.wait_for_function("() => document.querySelector('#class-count-1').textContent === '5'")
    assert page.locator(CORRECTIONS).count() == 11

    with page.expect_response("**/retrainModel") as retrained:
        with page.expect_response("**/predPatch"):  # the last prediction is run again
            page.keyboard.press("r")
    assert retrained.value.ok, retrained.value.text()
    mp.wait_idle("#retrain")
    mp.wait_predictions()
    page.keyboard.press("Escape")  # (stop drawing: clicks predict again)
    message = retrained.value.json()["message"]
    assert message in page.locator("#retrain-result").inner_text()
    assert page.locator("#retrain-result table.metrics").count() == 1  # hold-out metrics per class
    after = mp.overlay_src()
    assert after != before, "retraining did not change the prediction"
    assert count_badge(page, 0) == 0 and count_badge(page, 1) == 0

    # Ctrl+Z undoes the retrain: the model before it, the counts since the retrain before it
    with page.expect_response("**/doUndo") as undone:
        with page.expect_response("**/predPatch"):
            page.keyboard.press("Control+z")
    assert undone.value.json().get("undone", "retrain") == "retrain"
    mp.wait_predictions()
    mp.wait_idle("#undo")
    page.wait_for_function(
        "(src) => document.querySelector('img.prediction-overlay').src === src", arg=before
    )
    assert count_badge(page, 0) == 6 and count_badge(page, 1) == 5
    # ... and then the last correction
    with page.expect_response("**/doUndo"):
        page.keyboard.press("Control+z")
    mp.wait_idle("#undo")
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length === 10')
    assert count_badge(page, 1) == 4

    # Reset asks for a second press, then clears everything
    page.locator("#reset").click()
    assert page.locator("#reset").inner_text() == "Confirm reset?"
    with page.expect_response("**/resetModel") as reset:
        page.locator("#reset").click()
    assert reset.value.ok
    mp.wait_idle("#reset")
    page.wait_for_function(f'() => document.querySelectorAll("{CORRECTIONS}").length === 0')
    assert count_badge(page, 0) == 0 and count_badge(page, 1) == 0


def test_retrain_without_corrections_shows_the_servers_reason(open_page, require):
    require("POST /retrainModel")
    mp = open_page()
    page = mp.page
    with page.expect_response("**/retrainModel") as response:
        page.locator("#retrain").click()
    assert response.value.status == 400
    error = response.value.json()["error"]
    mp.wait_idle("#retrain")
    assert error in mp.toast()
    assert "undefined" not in page.locator("#messages").inner_text()


def test_the_session_survives_a_reload(open_page, server, require):
    require("POST /sessions", "POST /recordCorrection", "GET /sessions/x")
    mp = open_page()
    page = mp.page
    key = SESSION_KEY + server["url"]
    session = page.evaluate("k => localStorage.getItem(k)", key)
    assert session
    page.keyboard.press("c")
    cx, cy = mp.dataset_center()
    with page.expect_response("**/recordCorrection") as response:
        page.mouse.click(cx, cy)
    assert response.value.ok and response.value.request.post_data_json["session"] == session
    page.reload()  # only once the server has recorded it: a reload would abort the request
    page.wait_for_selector("body[data-ready='true']")
    assert page.evaluate("k => localStorage.getItem(k)", key) == session
    with urllib.request.urlopen(f"{server['url']}sessions/{session}") as response:
        assert json.load(response)["corrections"] == 1
    with page.expect_request("**/predPatch") as request:
        mp.shift_click(cx, cy)
    assert request.value.post_data_json["session"] == session


def test_checkpoints_save_list_and_load_with_names_shown_as_text(open_page, require):
    require("POST /checkpoints", "GET /checkpoints", "POST /doLoad", "POST /recordCorrection")
    mp = open_page()
    page = mp.page
    page.locator("#checkpoint-section summary").click()
    page.keyboard.press("c")
    cx, cy = mp.dataset_center()
    record(mp, cx, cy)
    name = '<img src=x onerror="window.pwned=1"> fields & ponds'
    page.locator("input[name='checkpoint-name']").fill(name)
    is_save = lambda r: r.url.endswith("/checkpoints") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(is_save) as saved:
        page.locator("#checkpoint-form button").click()
    assert saved.value.ok
    item = page.locator("#checkpoint-list .checkpoint-name", has_text="fields & ponds").first
    item.wait_for()
    assert item.inner_text() == name  # shown as text, never parsed as HTML
    assert page.locator("#checkpoint-list img").count() == 0
    assert page.evaluate("window.pwned") is None

    with page.expect_response("**/doLoad") as loaded:
        page.get_by_role("button", name=f"load checkpoint {name}").first.click()
    assert loaded.value.ok, loaded.value.text()
    page.wait_for_function("() => document.querySelector('#toast').textContent.includes('loaded')")


def test_add_class_grows_the_classes_and_survives_a_reload(open_page, require):
    require("POST /addClass", "POST /sessions", "GET /sessions/x")
    mp = open_page()
    page = mp.page
    n = page.locator(".class-row").count()
    page.locator("input[name='new-class-name']").fill("Wetland")
    with page.expect_response("**/addClass") as added:
        page.locator("#add-class button").click()
    assert added.value.ok, added.value.text()
    page.wait_for_function(f"() => document.querySelectorAll('.class-row').length === {n + 1}")
    assert page.locator(".class-name").nth(n).inner_text() == "Wetland"
    body = mp.predict_at(*mp.dataset_center())
    assert len(body["classes"]) == len(body["weights"]) == n + 1
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert page.locator(".class-row").count() == n + 1
