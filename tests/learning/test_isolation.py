"""Sessions belong to their user, in-process: an id is a 128-bit secret nobody else is told, and
checkpoints, jobs and downloads are there only for the session that made them (or, for a
checkpoint, for whoever holds its share link). Also: a state folder of the earlier schema opens."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time

import pytest

from tests.hitl_support import BUILT, FIELD, correct_box, post, serve, stripe_extent, utm_extent
from web_tool.http.openapi import SESSION_QUERY, openapi_path
from web_tool.learning.store import SCHEMA as NEW_SCHEMA

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def server(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    srv.config.jobs.window_px = 48
    yield srv
    srv.close()
    srv.config.jobs.close()


def get(url, path: str, session: str | None = None, status: int = 200):
    r = url.get(path, params={"session": session} if session else None, timeout=30)
    assert r.status_code == status, (path, r.status_code, r.text[:300])
    return r.json()


def wait_done(url, job: str, session: str) -> dict:
    deadline = time.monotonic() + 60
    while (reply := get(url, f"/jobs/{job}", session))["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, reply
        time.sleep(0.05)
    return reply


def a_session_with_everything(url) -> dict:
    """A session with a correction, a retrain, a checkpoint and a finished job."""
    s = post(url, "/sessions")["session"]
    for i in range(4):
        correct_box(url, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
    post(url, "/retrainModel", {"session": s})
    checkpoint = post(url, "/checkpoints", {"session": s})["checkpoint"]
    job = post(url, "/predTile", {"extent": stripe_extent(FIELD), "session": s}, status=202)["job"]
    done = wait_done(url, job, s)
    assert done["state"] == "done", done
    return {"session": s, "checkpoint": checkpoint, "job": job, "outputs": done["outputs"]}


def test_session_ids_are_128_bit_secrets_that_nothing_lists_or_echoes(server):
    url = server
    ids = {post(url, "/sessions")["session"] for _ in range(20)}
    assert len(ids) == 20 and all(HEX32.match(i) for i in ids)
    a = a_session_with_everything(url)
    b = post(url, "/sessions")["session"]
    seen = [
        get(url, "/checkpoints"),
        get(url, "/jobs"),
        get(url, "/checkpoints", b),
        get(url, "/jobs", b),
        get(url, f"/sessions/{b}"),
        get(url, "/openapi.json"),
        get(url, "/health"),
    ]
    assert not [text for text in map(json.dumps, seen) if a["session"] in text or a["checkpoint"] in text]
    own = get(url, "/checkpoints", a["session"]) + get(url, "/jobs", a["session"])
    assert a["session"] not in json.dumps(
        own
    )  # not even to its owner: a checkpoint's default name is not the id
    saved = {c["id"]: c["name"] for c in get(url, "/checkpoints", a["session"])}
    assert saved[a["checkpoint"]] == "after 4 corrections"


def session_scoped_endpoints(url) -> list[tuple[str, str]]:
    """Every endpoint that takes a session, read from the server's own /openapi.json."""
    doc = get(url, "/openapi.json")
    schemas = doc["components"]["schemas"]
    found = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            body = schemas.get(ref.get("$ref", "").rsplit("/", 1)[-1], {})
            in_query = any(p["name"] == "session" for p in op.get("parameters", []))
            if "session" in body.get("properties", {}) or in_query or "{session_id}" in path:
                found.append((method.upper(), path))
    return found


def test_every_session_scoped_endpoint_answers_404_for_a_session_it_does_not_know(server):
    url = server
    a = a_session_with_everything(url)
    endpoints = session_scoped_endpoints(url)
    assert len(endpoints) >= 14, endpoints
    documented = {f"{e.split()[0]} {openapi_path(e.split()[1])[0]}" for e in SESSION_QUERY}
    assert {f"{m} {p}" for m, p in endpoints} >= documented  # every ?session= is in /openapi.json
    stranger = "0123456789abcdef" * 2  # well-formed, never handed out
    bodies = {
        "/recordCorrection": {"extent": utm_extent(70, 70, 72, 72), "value": FIELD},
        "/predPatch": {"extent": stripe_extent(FIELD)},
        "/predTile": {"extent": stripe_extent(FIELD)},
        "/addClass": {"name": "Quarry", "color": "#FF00FF"},
        "/doLoad": {"checkpoint": a["checkpoint"]},
        "/jobs/{job_id}/samples/{sample_id}/answers": {"point": 0, "answer": 0},
        "/jobs/{job_id}/reference": {"labels": True},
        "/deleteCorrections": {"extent": utm_extent(70, 70, 72, 72)},
    }
    for method, path in endpoints:
        names = {
            "session_id": stranger,
            "checkpoint_id": a["checkpoint"],
            "job_id": a["job"],
            "sample_id": 1,
            "dataset": "stripes",
            "z": 0,
            "x": 0,
            "y": 0,
        }
        concrete = path.format(**names)
        if method == "POST":
            r = url.post(concrete, json={**bodies.get(path, {}), "session": stranger}, timeout=30)
        else:
            r = url.request(method, concrete, params={"session": stranger}, timeout=30)
        assert r.status_code == 404 and "unknown session" in r.json()["error"], (method, path, r.text)
    # the owner's things are untouched
    assert get(url, f"/sessions/{a['session']}")["corrections"] == 4
    assert get(url, f"/jobs/{a['job']}", a["session"])["state"] == "done"


def test_another_sessions_checkpoints_and_jobs_are_not_there_for_you(server):
    url = server
    a = a_session_with_everything(url)
    for other in (post(url, "/sessions")["session"], None):  # a session of its own, and the shared default
        owned = {"session": other} if other else {}
        assert get(url, "/checkpoints", other) == [] and get(url, "/jobs", other) == []
        post(url, "/doLoad", {"checkpoint": a["checkpoint"], **owned}, status=404)
        post(url, f"/checkpoints/{a['checkpoint']}/share", owned, status=404)
        for method in ("GET", "DELETE"):
            r = url.request(method, f"/jobs/{a['job']}", params=owned, timeout=30)
            assert r.status_code == 404 and "no such job" in r.json()["error"], r.text
        r = url.delete(f"/checkpoints/{a['checkpoint']}/share", params=owned, timeout=30)
        assert r.status_code == 404
    assert get(url, f"/jobs/{a['job']}", a["session"])["state"] == "done"  # nobody cancelled it
    assert url.get(a["outputs"]["cog"], timeout=30).content[:2] in (b"II", b"MM")  # its link works


def test_a_checkpoint_shared_on_purpose_loads_anywhere_until_it_is_unshared(server):
    url = server
    a = a_session_with_everything(url)
    reply = post(url, f"/checkpoints/{a['checkpoint']}/share", {"session": a["session"]})
    secret = reply["share"]
    assert (
        HEX32.match(secret)
        and secret not in (a["session"], a["checkpoint"])
        and reply["link"] == f"/shared/{secret}"
    )
    assert post(url, f"/checkpoints/{a['checkpoint']}/share", {"session": a["session"]})["share"] == secret
    listed = {c["id"]: c for c in get(url, "/checkpoints", a["session"])}
    assert listed[a["checkpoint"]]["share"] == secret  # the owner can find the link again
    shown = get(url, reply["link"])
    assert shown["corrections"] == 4 and "id" not in shown and a["session"] not in json.dumps(shown)
    b = post(url, "/sessions")["session"]
    loaded = post(url, "/doLoad", {"share": secret, "session": b})
    assert loaded["success"] and get(url, f"/sessions/{b}")["corrections"] == 4
    tuned = post(url, "/predPatch", {"extent": stripe_extent(FIELD), "session": a["session"]})["output_hard"]
    assert post(url, "/predPatch", {"extent": stripe_extent(FIELD), "session": b})["output_hard"] == tuned
    assert get(url, "/checkpoints", b) == []  # loading does not make it b's
    r = url.delete(f"/checkpoints/{a['checkpoint']}/share", params={"session": a["session"]}, timeout=30)
    assert r.status_code == 200
    get(url, reply["link"], status=404)
    post(url, "/doLoad", {"share": secret, "session": b}, status=404)
    post(url, "/doLoad", {"share": a["checkpoint"], "session": b}, status=404)  # an id is not a share secret


def test_logs_never_name_a_session_by_its_id(scene, stripes_model, tmp_path, caplog):
    srv = serve(scene, stripes_model, tmp_path, in_process=True, max_sessions=1, session_idle_minutes=1)
    srv.config.jobs.window_px = 48
    caplog.set_level(logging.DEBUG)
    try:
        a = a_session_with_everything(srv)
        srv.config.sessions.clock = lambda: time.monotonic() + 3600  # an hour later: a is let go
        b = post(srv, "/sessions")["session"]
        post(srv, "/predPatch", {"extent": stripe_extent(FIELD), "session": b})
        assert a["session"] not in srv.config.sessions.in_memory()
    finally:
        srv.close()
        srv.config.jobs.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("web_tool")]
    assert any("let go from memory" in m for m in messages), messages
    assert not [m for m in messages if a["session"] in m or b in m]


OLD_HITL = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, created REAL NOT NULL, classes TEXT NOT NULL, parent TEXT,
    has_model INTEGER NOT NULL DEFAULT 0);
CREATE TABLE corrections (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, dataset TEXT NOT NULL,
    crs TEXT NOT NULL, value INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE session_corrections (session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    correction INTEGER NOT NULL REFERENCES corrections(id), PRIMARY KEY (session, correction));
CREATE TABLE checkpoints (id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
    session TEXT NOT NULL, parent TEXT, classes TEXT NOT NULL, n_corrections INTEGER NOT NULL,
    pixels INTEGER NOT NULL, metrics TEXT NOT NULL, strategy TEXT NOT NULL);
CREATE TABLE checkpoint_corrections (checkpoint TEXT NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    correction INTEGER NOT NULL REFERENCES corrections(id), PRIMARY KEY (checkpoint, correction));
"""
OLD_JOBS = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, created REAL NOT NULL, started REAL, finished REAL,
    state TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
    info TEXT NOT NULL DEFAULT '{}', stats TEXT);
CREATE TABLE job_files (name TEXT PRIMARY KEY, job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL);
"""


def test_a_state_folder_of_the_earlier_schema_opens_and_keeps_its_owners(
    scene, stripes_model, tmp_path, caplog
):
    """Sessions, checkpoints and jobs written before ids were secrets (64-bit ids, no owners on jobs)."""
    assert "share TEXT" in NEW_SCHEMA  # the schema this test migrates to
    state = tmp_path / "state"
    (state / "checkpoints").mkdir(parents=True)
    old_session, old_checkpoint, old_job, default_job = (
        "a1b2c3d4e5f60718",
        "0f1e2d3c4b5a6978",
        "9" * 16,
        "8" * 16,
    )
    classes = [
        {"name": n, "color": c}
        for n, c in (("Water", "#0000FF"), ("Forest", "#008000"), ("Field", "#80FF80"), ("Built", "#806060"))
    ]
    with sqlite3.connect(state / "hitl.sqlite") as conn:
        conn.executescript(OLD_HITL)
        conn.execute("INSERT INTO sessions VALUES (?, 0, ?, NULL, 0)", (old_session, json.dumps(classes)))
        conn.execute(
            "INSERT INTO checkpoints VALUES (?, ?, 0, ?, NULL, ?, 0, 0, '{}', 'last_layer')",
            (old_checkpoint, f"{old_session} #0", old_session, json.dumps(classes)),
        )
    with sqlite3.connect(state / "jobs.sqlite") as conn:
        conn.executescript(OLD_JOBS)
        conn.execute(
            "INSERT INTO jobs (id, created, state, info) VALUES (?, 1, 'failed', ?)",
            (old_job, json.dumps({"session": old_session, "dataset": "stripes"})),
        )
        conn.execute(
            "INSERT INTO jobs (id, created, state, info) VALUES (?, 2, 'failed', ?)",
            (default_job, json.dumps({"session": None})),
        )
    caplog.set_level(logging.WARNING)
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    try:
        from web_tool.ServerModels.state import state_bytes

        base = srv.config.model
        (state / "checkpoints" / f"{old_checkpoint}.npz").write_bytes(state_bytes(base.state()))
        assert [c["id"] for c in get(srv, "/checkpoints", old_session)] == [old_checkpoint]
        assert get(srv, "/checkpoints") == []
        post(srv, "/doLoad", {"checkpoint": old_checkpoint, "session": old_session})
        correct_box(srv, BUILT, 70, 70, session=old_session)
        assert [j["job"] for j in get(srv, "/jobs", old_session)] == [old_job]
        assert "session" not in get(srv, f"/jobs/{old_job}", old_session)
        assert [j["job"] for j in get(srv, "/jobs")] == [default_job]
        new = post(srv, "/sessions")["session"]
        assert HEX32.match(new)
    finally:
        srv.close()
    assert any("earlier version" in r.getMessage() for r in caplog.records)
