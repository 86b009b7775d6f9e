"""No cross-site control: which Host names, page origins and body types a server without a token
accepts, in-process with the environ waitress would make of each request (the browser's view of the
same attack is in browser/test_browser_cross_origin.py)."""

from __future__ import annotations

import http.client

import pytest

from tests.conftest import InProcessServer, build_app
from tests.http.test_api import call, extent_body
from web_tool import server
from web_tool.errors import ConfigError
from web_tool.http.origins import SitePolicy, parse_origin

OTHER_PAGE = "http://localhost:8000"


@pytest.fixture
def open_to_other_page(tiny_dataset_dir, tiny_model_path, tmp_path):
    """A server without a token that lists OTHER_PAGE with --cors_origin."""
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, cors_origin=[OTHER_PAGE])
    srv = InProcessServer(app)
    srv.config = config
    yield srv
    srv.close()


def raw_request(srv, method: str, path: str, headers: dict, body: bytes = b"") -> tuple[int, dict, bytes]:
    """A request with exactly these headers (Host too), as a browser or an attacker sends it: over
    a socket to a LiveServer, or as the WSGI environ waitress would make of it to an InProcessServer."""
    if isinstance(srv, InProcessServer):
        from webtest import TestRequest

        req = TestRequest.blank(path, method=method)
        for key in ("HTTP_HOST", "CONTENT_TYPE", "CONTENT_LENGTH"):  # only those given below
            req.environ.pop(key, None)
        if body:
            req.body = body
        for key, value in headers.items():
            req.headers[key] = value
        answer = srv.client.do_request(req, expect_errors=True)
        return answer.status_int, dict(answer.headerlist), answer.body
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for key, value in headers.items():
        conn.putheader(key, value)
    if body:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def default_session(srv) -> dict:
    return call(srv, "/sessions/default")[2]


def test_a_page_from_another_origin_can_neither_read_nor_change_anything(app_server):
    evil = {"Origin": "http://127.0.0.1:9999", "Host": f"127.0.0.1:{app_server.port}"}
    before = default_session(app_server)
    for path in ("/checkpoints", "/jobs", "/sessions/default", "/datasets", "/health"):
        status, headers, body = raw_request(app_server, "GET", path, evil)
        assert status == 403 and b"may not use this server" in body, (path, body)
        assert "Access-Control-Allow-Origin" not in headers  # the browser would not show the answer
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        for path, body in [("/resetModel", b"{}"), ("/addClass", b'{"name": "Pwned", "color": "#000000"}')]:
            status, headers, _ = raw_request(
                app_server, "POST", path, {**evil, "Content-Type": content_type}, body
            )
            assert status == 403 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = raw_request(
        app_server, "OPTIONS", "/addClass", {**evil, "Access-Control-Request-Method": "POST"}
    )
    assert status == 403 and "Access-Control-Allow-Origin" not in headers  # the preflight fails too
    assert default_session(app_server) == before


def test_the_servers_own_page_is_answered_with_cors_for_it(app_server):
    own = {"Origin": app_server.url, "Host": f"127.0.0.1:{app_server.port}"}
    status, headers, body = raw_request(app_server, "GET", "/datasets", own)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == app_server.url
    assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, _ = raw_request(
        app_server, "POST", "/sessions", {**own, "Content-Type": "application/json"}, b"{}"
    )
    assert status == 200
    localhost = {"Origin": f"http://localhost:{app_server.port}", "Host": f"localhost:{app_server.port}"}
    assert raw_request(app_server, "GET", "/datasets", localhost)[0] == 200  # the page as http://localhost


def test_origins_listed_with_cors_origin_may_call(open_to_other_page):
    srv = open_to_other_page
    listed = {"Origin": OTHER_PAGE, "Host": f"127.0.0.1:{srv.port}"}
    status, headers, _ = raw_request(
        srv, "OPTIONS", "/predPatch", {**listed, "Access-Control-Request-Method": "POST"}
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == OTHER_PAGE
    assert "Content-Type" in headers["Access-Control-Allow-Headers"]
    body = f'{{"extent": {extent_body()}}}'.replace("'", '"').encode()
    status, headers, reply = raw_request(
        srv, "POST", "/getInput", {**listed, "Content-Type": "application/json"}, body
    )
    assert status == 200 and headers["Access-Control-Allow-Origin"] == OTHER_PAGE, reply
    unlisted = {"Origin": "http://localhost:8001", "Host": f"127.0.0.1:{srv.port}"}
    assert raw_request(srv, "GET", "/datasets", unlisted)[0] == 403


@pytest.mark.parametrize(
    "host", ["evil.example:4444", "attacker.test", "127.0.0.1.nip.io:80", "evil@127.0.0.1"]
)
def test_a_host_name_the_server_does_not_have_is_refused_dns_rebinding(app_server, host):
    status, _, body = raw_request(app_server, "GET", "/datasets", {"Host": host})
    assert status == 403 and b"does not answer to the name" in body
    status, _, _ = raw_request(app_server, "GET", "/", {"Host": host})
    assert status == 403  # not even the page: a rebound page could read the API from it


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:4444", "[::1]:4444", "10.1.2.3:80", ""])
def test_ip_addresses_and_localhost_are_served(app_server, host):
    headers = {"Host": host} if host else {}
    assert raw_request(app_server, "GET", "/datasets", headers)[0] == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_not_declared_json_is_refused_with_415_and_changes_nothing(app_server, content_type):
    before = default_session(app_server)
    headers = {"Host": f"127.0.0.1:{app_server.port}"} | (
        {"Content-Type": content_type} if content_type else {}
    )
    body = b'{"name": "Pwned", "color": "#000000"}'
    status, _, reply = raw_request(app_server, "POST", "/addClass", headers, body)
    assert status == 415 and b"Content-Type: application/json" in reply
    assert default_session(app_server) == before
    status, _, _ = raw_request(app_server, "POST", "/sessions", {"Host": f"127.0.0.1:{app_server.port}"})
    assert status == 200  # no body at all (`curl -X POST .../sessions`) needs no type


def test_json_with_a_charset_or_a_json_suffix_is_json(app_server):
    for content_type in ("application/json; charset=utf-8", "application/geo+json", "Application/JSON"):
        headers = {"Host": "127.0.0.1", "Content-Type": content_type}
        assert raw_request(app_server, "POST", "/sessions", headers, b"{}")[0] == 200, content_type


def test_with_a_token_any_origin_gets_cors_but_needs_the_token(tiny_dataset_dir, tiny_model_path, tmp_path):
    app, _ = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, token="t0ken")
    srv = InProcessServer(app)
    try:
        evil = {"Origin": "http://elsewhere.test", "Host": "my-server.lab:4444"}
        status, headers, body = raw_request(srv, "GET", "/datasets", evil)
        assert status == 401 and headers["Access-Control-Allow-Origin"] == "*"  # it can read the reason only
        status, _, _ = raw_request(srv, "GET", "/datasets", {**evil, "Authorization": "Bearer t0ken"})
        assert status == 200
        typed = {**evil, "Authorization": "Bearer t0ken", "Content-Type": "text/plain"}
        status, _, _ = raw_request(srv, "POST", "/sessions", typed, b"{}")
        assert status == 415  # the body rule holds with a token too
    finally:
        srv.close()


def test_site_policy_knows_the_bound_name_and_the_listed_origins():
    policy = SitePolicy.build("mapper.lab", ["https://Page.Lab:443/", "http://other:8080"])
    assert policy.origins == {"https://page.lab", "http://other:8080"}
    assert {"mapper.lab", "localhost", "page.lab", "other"} <= policy.hosts
    assert policy.serves_host("MAPPER.lab:4444") and policy.serves_host("192.168.1.5")
    assert not policy.serves_host("evil.test")
    assert policy.allows_origin("https://page.lab", "mapper.lab:4444")
    assert policy.allows_origin("http://mapper.lab:4444", "mapper.lab:4444")  # its own page
    assert not policy.allows_origin("http://mapper.lab:4445", "mapper.lab:4444")
    assert not policy.allows_origin("null", "mapper.lab:4444")


@pytest.mark.parametrize("bad", ["*", "mapper.lab:4444", "http://x/path", "ftp://x", "http://x:port"])
def test_a_bad_cors_origin_stops_the_server_at_start_up(bad, tiny_dataset_dir, tiny_model_path, tmp_path):
    with pytest.raises(ValueError):
        parse_origin(bad)
    args = server.parse_args(
        [
            "--dataset",
            str(tiny_dataset_dir),
            "--model_fn",
            str(tiny_model_path),
            "--state_dir",
            str(tmp_path),
            "--cors_origin",
            bad,
        ]
    )
    with pytest.raises(ConfigError, match="origin"):
        server.build_config(args)
