"""The cross-site attack, in the real browser: a page the analyst opens while the server runs without a
token tries to list the sessions, read one, reset them and add a class, by every means a page has
(fetch with and without CORS, sendBeacon, a plain form post). Served from another loopback origin,
and from a name it rebinds to 127.0.0.1 (DNS rebinding), it can neither read nor change anything.

Against the server before the fix (CORS `*`, any Content-Type parsed as JSON, no Host check) the
page read the checkpoint list with the victim's session id, reset both sessions and added classes.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from offline_chromium import CHROMIUM, CHROMIUM_ARGS, free_port  # scripts/, on the path (browser conftest)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: a box in area a of the demo scene (UTM 18N): a correction there has imagery
CLICK = {
    "xmin": 325700,
    "ymin": 4305400,
    "xmax": 325702,
    "ymax": 4305402,
    "spatialReference": {"latestWkid": 32618},
}

ATTACK = """<!doctype html><title>cute cats</title><iframe name="sink" hidden></iframe><script>
const S = %(server)s;          // where the analyst's server is, as this page sees it
const sessions = %(sessions)s; // the worst case: the attacker knows the ids
window.results = {};
async function attempt(name, fn) {
  try { window.results[name] = await fn(); } catch (e) { window.results[name] = "blocked: " + e.name; }
}
const text = async (r) => r.status + " " + (await r.text());
(async () => {
  for (const path of ["checkpoints", "jobs", "sessions/default", "checkpoints?session=" + sessions[1]]) {
    await attempt("read " + path, async () => text(await fetch(S + path)));
  }
  for (const session of sessions) {
    const reset = JSON.stringify({session});
    const grow = JSON.stringify({session, name: "Pwned", color: "#000000"});
    const plain = {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}};
    const json = {method: "POST", headers: {"Content-Type": "application/json"}};
    const post = (path, init, body) => fetch(S + path, {...init, body});
    await attempt("reset, text/plain " + session, async () => (await post("resetModel", plain, reset)).type);
    await attempt("add class, text/plain " + session, async () => (await post("addClass", plain, grow)).type);
    await attempt("reset, json " + session, async () => text(await post("resetModel", json, reset)));
    await attempt("add class, json " + session, async () => text(await post("addClass", json, grow)));
    navigator.sendBeacon(S + "resetModel", new Blob([reset], {type: "text/plain"}));
  }
  // no script needed for this one: a form whose text/plain body is JSON
  const form = Object.assign(document.createElement("form"),
                             {method: "POST", action: S + "addClass", enctype: "text/plain", target: "sink"});
  form.append(Object.assign(document.createElement("input"),
                            {name: '{"name": "Pwned by a form", "color": "#000000", "x": "', value: '"}'}));
  document.body.append(form);
  form.submit();
  await new Promise((done) => setTimeout(done, 1500));
  window.done = true;
})();
</script>"""


def page_server(html: str):
    """A plain HTTP server on a free loopback port that answers every GET with `html`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture
def victims(server):
    """The default session and a session of the analyst's, each with a correction (and a checkpoint,
    whose listing named its session before the fix); → {id: what the server says of it}."""
    url = server["url"]
    s = requests.post(url + "sessions", json={}, timeout=30).json()["session"]
    for session in ("default", s):
        r = requests.post(
            url + "recordCorrection", json={"extent": CLICK, "value": 1, "session": session}, timeout=60
        )
        assert r.status_code == 200, r.text
    assert requests.post(url + "checkpoints", json={"session": s, "name": "mine"}, timeout=60).ok
    return {session: state_of(url, session) for session in ("default", s)}


def state_of(url: str, session: str) -> dict:
    return requests.get(f"{url}sessions/{session}", timeout=30).json()


def run_attack(browser, page_url: str, allowed_hosts: set[str], fulfil: str | None = None) -> dict:
    """Open `page_url` in `browser` (offline: only `allowed_hosts` are reached), wait for the attack to
    finish; → what the page could see. With `fulfil`, that HTML is the answer to `page_url` itself."""
    from urllib.parse import urlparse

    context = browser.new_context()
    context.set_default_timeout(30_000)

    def route(r):
        if fulfil is not None and r.request.url == page_url:
            return r.fulfill(status=200, content_type="text/html", body=fulfil)
        if urlparse(r.request.url).hostname not in allowed_hosts:
            return r.abort("internetdisconnected")
        return r.continue_()

    try:
        context.route("**/*", route)
        page = context.new_page()
        page.goto(page_url)
        page.wait_for_function("() => window.done === true")
        return page.evaluate("window.results")
    finally:
        context.close()


def assert_nothing_read_or_changed(results: dict, victims: dict, url: str) -> None:
    """No answer the page saw holds data (a session, a list), and every session is as it was."""
    assert results and not [v for v in results.values() if "corrections" in str(v) or '"id"' in str(v)]
    for session, before in victims.items():
        after = state_of(url, session)
        assert after == before, (session, after)  # not reset, no class added
        assert [c["name"] for c in after["classes"]] == ["Water", "Forest", "Field", "Built"]


def test_a_page_from_another_origin_can_neither_read_nor_change_the_server(browser, server, victims):
    sessions = json.dumps(list(victims))
    html = ATTACK % {"server": json.dumps(server["url"]), "sessions": sessions}
    httpd = page_server(html)
    try:
        page_url = f"http://localhost:{httpd.server_address[1]}/cats.html"  # another origin on loopback
        results = run_attack(browser, page_url, {"127.0.0.1", "localhost"})
    finally:
        httpd.shutdown()
    reads = {k: v for k, v in results.items() if k.startswith("read")}
    assert reads and all(v == "blocked: TypeError" for v in reads.values()), reads  # CORS: nothing readable
    assert all(v in ("opaque", "blocked: TypeError") for k, v in results.items() if "text/plain" in k), (
        results
    )
    assert all(v == "blocked: TypeError" for k, v in results.items() if ", json" in k), (
        results
    )  # preflight refused
    assert_nothing_read_or_changed(results, victims, server["url"])


def test_a_page_that_rebinds_its_name_to_the_server_gets_nothing_either(browser, server, victims):
    port = server["port"]
    page_url = f"http://rebind.test:{port}/cats.html"  # its own origin: no CORS stands in its way
    html = ATTACK % {
        "server": json.dumps(f"http://rebind.test:{port}/"),
        "sessions": json.dumps(list(victims)),
    }
    # what the attacker's DNS answers in the end; and a browser that does not guard local addresses
    # from public pages itself (recent chromium does, Firefox and Safari do not): the server must
    rebinding_args = [
        "--host-resolver-rules=MAP rebind.test 127.0.0.1",
        "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests",
    ]
    rebinding = browser.browser_type.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *rebinding_args]
    )
    try:
        results = run_attack(rebinding, page_url, {"127.0.0.1", "localhost", "rebind.test"}, fulfil=html)
    finally:
        rebinding.close()
    reads = {k: v for k, v in results.items() if k.startswith("read")}
    assert reads and all(
        v.startswith("403 ") and "does not answer to the name" in v for v in reads.values()
    ), reads
    assert_nothing_read_or_changed(results, victims, server["url"])


def test_a_dataset_name_is_shown_as_text_never_run_as_html(open_page, tmp_path_factory, monkeypatch):
    """The operator names datasets, and the map's attribution takes HTML. (A name on
    the command line may not hold / : = ?, so this one injects markup rather than a script: read as
    HTML, it would add <b> and <i> elements to the page.)"""
    from tests.browser.conftest import REPO, running_server

    name = "<b>bold<i>demo"
    monkeypatch.setenv(
        "LANDCOVER_BROWSER_DATASET", f"{name}={REPO / 'web_tool' / 'data' / 'demo' / 'imagery'}"
    )
    with running_server(tmp_path_factory.mktemp("named")) as named:
        page = open_page(url=named["url"]).page
        page.wait_for_function("() => document.querySelectorAll('img.leaflet-tile-loaded').length > 0")
        for where in (".leaflet-control-attribution", "#dataset"):  # the attribution, the dataset list
            shown = page.locator(where)
            assert name in shown.text_content(), where
            assert shown.locator("b, i").count() == 0, where
