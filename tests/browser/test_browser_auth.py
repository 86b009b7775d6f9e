"""A server started with a token: the page asks for it once, remembers it, and sends it along."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "browser-test-token"  # conftest.GUARD_TOKEN: the token guarded_server was started with


def test_the_page_asks_for_the_token_once_and_remembers_it(open_page, guarded_server):
    assert guarded_server["health"]["auth"] is True
    prompts = []

    def answer(dialog):
        prompts.append(dialog.message)
        dialog.accept(TOKEN)

    mp = open_page(url=guarded_server["url"], on_page=lambda page: page.on("dialog", answer))
    page = mp.page
    assert len(prompts) == 1 and "access token" in prompts[0]
    page.wait_for_function("() => document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
    tiles = [(u, s) for u, s in mp.log.responses if "/tiles/" in u]
    assert tiles and all(s == 200 and f"access_token={TOKEN}" in u for u, s in tiles)
    mp.zoom_to_patch(300)
    body = mp.predict_at(*mp.dataset_center())
    assert body["extent"]
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    assert len(prompts) == 1, "the token was asked for again after a reload"
    assert not [u for u, s in mp.log.responses if s == 401 and "/datasets" in u][1:]


def test_a_refused_prompt_leaves_the_servers_reason_on_the_page(open_page, guarded_server):
    mp = open_page(
        url=guarded_server["url"],
        wait_ready=False,
        on_page=lambda page: page.on("dialog", lambda d: d.dismiss()),
    )
    mp.page.wait_for_function("() => document.body.innerText.includes('access token')")
    assert "undefined" not in mp.page.locator("body").inner_text()
