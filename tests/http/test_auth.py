"""Shared-secret auth, in-process: with a token, every API call needs it; the page's files don't."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import InProcessServer, build_app
from tests.http.test_api import call
from web_tool import server
from web_tool.http import auth

REPO = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def guarded(tiny_dataset_dir, tiny_model_path, tmp_path):
    """The tiny dataset's app, started with --token, answered in-process."""
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, token=TOKEN)
    srv = InProcessServer(app, config)
    yield srv
    srv.close()


def concrete(rule: str) -> str:
    """A path that a route rule matches: every <placeholder> filled in."""
    return re.sub(r"<[^>]+>", "0", rule)


def api_endpoints(srv) -> list[tuple[str, str]]:
    _, _, health = call(srv, "/health")
    pairs = [tuple(e.split(" ", 1)) for e in health["endpoints"]]
    return [(m, concrete(r)) for m, r in pairs if r not in ("/", "/health", "/<path:path>")]


def test_every_api_call_without_the_token_is_refused_with_a_json_401(guarded):
    endpoints = api_endpoints(guarded)
    assert len(endpoints) > 15, endpoints  # predPatch, sessions, jobs, downloads, tiles, openapi, ...
    for method, path in endpoints:
        body = {} if method == "POST" else None
        status, headers, payload = call(guarded, path, body, method=method)
        assert status == 401, (method, path, status, payload)
        assert "access token" in payload["error"]
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert headers["Access-Control-Allow-Origin"] == "*"  # the browser may read the reason


def test_the_right_token_passes_and_a_wrong_one_is_told_so(guarded):
    for method, path in api_endpoints(guarded):
        body = {} if method == "POST" else None
        status, _, payload = call(guarded, path, body, method=method, headers=BEARER)
        assert status != 401, (method, path, payload)
    status, _, payload = call(guarded, "/datasets", headers={"Authorization": "Bearer nope"})
    assert status == 401 and payload["error"] == "the access token is wrong"
    status, _, payload = call(guarded, "/datasets", headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401 and "needs an access token" in payload["error"]


def test_the_page_health_and_preflight_stay_open(guarded):
    for path in ("/", "/js/api.js", "/css/app.css", "/health"):
        status, _, _ = call(guarded, path)
        assert status == 200, path
    _, _, health = call(guarded, "/health")
    assert health["auth"] is True
    status, headers, _ = call(guarded, "/predPatch", method="OPTIONS")
    assert status == 200 and "Authorization" in headers["Access-Control-Allow-Headers"]


def test_only_tiles_and_downloads_may_carry_the_token_in_the_url(guarded):
    status, headers, png = call(guarded, f"/tiles/tiny/0/0/0.png?access_token={TOKEN}")
    assert status == 200 and png[:4] == b"\x89PNG"
    status, _, _ = call(guarded, f"/tiles/tiny/0/0/0.png?access_token={TOKEN}x")
    assert status == 401
    status, _, payload = call(guarded, f"/downloads/{'0' * 32}.tif?access_token={TOKEN}")
    assert status == 404, payload  # past the token check: there is no such download
    for method, path, body in [
        ("GET", "/datasets", None),
        ("GET", "/checkpoints", None),
        ("GET", "/jobs", None),
        ("GET", "/sessions/default", None),
        ("POST", "/sessions", {}),
    ]:
        status, _, payload = call(guarded, f"{path}?access_token={TOKEN}", body, method=method)
        assert status == 401 and "Authorization: Bearer" in payload["error"], (path, payload)
        assert "access_token" not in payload["error"]


def test_no_token_means_no_auth(app_server):
    status, _, health = call(app_server, "/health")
    assert health["auth"] is False
    status, _, _ = call(app_server, "/datasets")
    assert status == 200


def test_the_token_comes_from_env_or_flag_and_help_never_shows_it(
    monkeypatch, tiny_dataset_dir, tiny_model_path, tmp_path
):
    monkeypatch.setenv(auth.TOKEN_ENV, "from-env")
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    assert config.token == "from-env"
    args = server.parse_args(
        [
            "--token",
            "from-flag",
            "--model_fn",
            str(tiny_model_path),
            "--dataset",
            str(tiny_dataset_dir),
            "--state_dir",
            str(tmp_path),
        ]
    )
    assert server.build_config(args).token == "from-flag"
    env = {"LANDCOVER_TOKEN": "do-not-print", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "web_tool/server.py", "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--token" in out and "LANDCOVER_TOKEN" in out and "do-not-print" not in out


def test_an_empty_token_is_no_token(tiny_dataset_dir, tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv(auth.TOKEN_ENV, "")
    _, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    assert not config.token
    with pytest.raises(ValueError):
        auth.TokenAuth("")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("no.such.host.invalid", False),
    ],
)
def test_only_loopback_hosts_count_as_private(host, loopback):
    assert server.is_loopback(host) is loopback
