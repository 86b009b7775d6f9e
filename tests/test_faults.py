"""Faults the server must survive with its saved state intact: a full disk while writing a
download, and `kill -9` in the middle of a retrain or of a /predTile job.

(A kill during checkpoint writes is in test_hitl_checkpoints; a corrupt GeoTIFF in test_dataloader.)
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import LiveServer, build_app, free_port, make_geotiff
from tests.hitl_support import (
    BUILT,
    FIELD,
    X0,
    Y0,
    correct_box,
    post,
    serve,
    start_server,
    stripe_extent,
    utm_extent,
)
from tests.mapping.test_jobs_api import polygon_3857, wait_for
from web_tool.mapping.jobs import RESTART_MESSAGE

DISK_BYTES = 16 * 2**20
NOISE_PX = 768


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB file system of its own (tmpfs) at tmp_path/"disk"; needs root (CI runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", f"lc-{uuid.uuid4().hex[:6]}", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a file into `folder` until its file system has only about `leave` bytes free."""
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        for block in (65536, 4096, 1):  # big steps, then the last few bytes too
            try:
                while shutil.disk_usage(folder).free - block >= leave and f.write(b"\0" * block):
                    pass
            except OSError:
                pass
    return filler


def integrity(db_path: Path) -> str:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.fixture
def noise_server(stripes_model, small_disk, tmp_path):
    """A live server whose state is on the small disk, over a 768 m tile of noise (so its class maps
    do not compress much: each export needs a few hundred KB)."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (4, NOISE_PX, NOISE_PX), dtype=np.uint8)
    make_geotiff(
        tmp_path / "noise" / "noise.tif",
        (X0, Y0, X0 + NOISE_PX, Y0 + NOISE_PX),
        size=(NOISE_PX, NOISE_PX),
        data=noise,
    )
    app, config = build_app([f"noise={tmp_path / 'noise'}"], stripes_model, small_disk)
    srv = LiveServer(app)
    srv.config = config
    yield srv
    srv.close()
    config.jobs.close()


def test_a_full_disk_fails_the_download_clearly_and_loses_nothing(noise_server, small_disk):
    srv, state = noise_server, small_disk / "state"
    s = post(srv.url, "/sessions")["session"]
    for i in range(4):
        correct_box(srv.url, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
    checkpoint = post(srv.url, "/checkpoints", {"session": s, "name": "before the disk filled"})["checkpoint"]
    corners = [(X0 + 5, Y0 + 5), (X0 + NOISE_PX - 5, Y0 + 5), (X0 + NOISE_PX - 5, Y0 + NOISE_PX - 5)]
    area = {"geometry": polygon_3857(corners + [(X0 + 5, Y0 + NOISE_PX - 5)]), "crs": 3857, "session": s}
    first = wait_for(srv, post(srv.url, "/predTile", area, status=202)["job"], session=s)
    assert first["state"] == "done", first
    cog_before = requests.get(srv.url + first["outputs"]["cog"], timeout=10).content
    assert len(cog_before) > 200_000, "the export must be bigger than the room left below"

    fill(small_disk, leave=128 * 1024)  # room for the database, not for the map
    job = post(srv.url, "/predTile", area, status=202)["job"]
    failed = wait_for(srv, job, session=s)
    assert failed["state"] == "failed" and "disk is full" in failed["message"], failed
    assert str(small_disk) not in failed["message"]  # says what, not where on the server
    assert not [p.name for p in (state / "downloads").iterdir() if job in p.name]

    # nothing else was lost: the earlier download, the session, its corrections, the checkpoint
    assert requests.get(srv.url + first["outputs"]["cog"], timeout=10).content == cog_before
    assert requests.get(f"{srv.url}/sessions/{s}", timeout=10).json()["corrections"] == 4
    assert post(srv.url, "/doLoad", {"checkpoint": checkpoint, "session": s})["success"]

    fill(small_disk)  # not a byte left: every request still answers, in JSON
    correction = {"extent": utm_extent(70, 70, 72, 72), "value": FIELD}
    for path, body in [
        ("/predTile", area),
        ("/checkpoints", {"session": s}),
        ("/recordCorrection", correction),
    ]:
        r = requests.post(srv.url + path, json=body, timeout=60)
        full = r.status_code == 507 and "disk is full" in r.json()["error"]
        assert r.status_code in (200, 202) or full, (path, r.status_code, r.text)
        if r.status_code == 202:
            assert wait_for(srv, r.json()["job"], session=s)["state"] == "failed"

    for f in small_disk.glob("filler*"):
        f.unlink()  # room again: the same request works, and both databases are sound
    again = wait_for(srv, post(srv.url, "/predTile", area, status=202)["job"], session=s)
    assert again["state"] == "done", again
    assert requests.get(srv.url + first["outputs"]["cog"], timeout=10).content == cog_before
    assert integrity(state / "jobs.sqlite") == "ok" and integrity(state / "hitl.sqlite") == "ok"


def consistent_state(state: Path) -> None:
    """The saved state a restart finds: sound databases, and no temp or orphan file left behind."""
    assert integrity(state / "hitl.sqlite") == "ok" and integrity(state / "jobs.sqlite") == "ok"
    leftovers = [p.name for p in state.rglob(".*") if p.is_file()]
    assert not leftovers, leftovers


def post_in_background(url: str, body: dict, answers: list) -> threading.Thread:
    def send():
        try:
            answers.append(requests.post(url, json=body, timeout=120).status_code)
        except requests.RequestException as exc:
            answers.append(exc)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.25, 0.6])
def test_kill_9_during_a_retrain_keeps_every_correction_and_a_whole_model(
    scene, stripes_model, tmp_path, fraction
):
    state, port = tmp_path / "state", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(f"stripes={scene}", stripes_model, state, port, "--fine_tune", "last_k_layers")
    try:
        s = post(url, "/sessions")["session"]
        for i in range(4):
            correct_box(url, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
        post(url, "/retrainModel", {"session": s})  # the first one also builds TF's graphs
        start = time.monotonic()
        post(url, "/retrainModel", {"session": s})  # how long a warm retrain on 4 corrections takes
        seconds = time.monotonic() - start
        checkpoint = post(url, "/checkpoints", {"session": s})["checkpoint"]
        for i in range(4):
            correct_box(url, FIELD, 2 + 4 * i, 10 + 25 * i, size=2, session=s)
        answers: list = []
        thread = post_in_background(f"{url}/retrainModel", {"session": s}, answers)
        time.sleep(seconds * fraction)  # inside the retrain on 8 corrections, which takes longer
        os.kill(proc.pid, signal.SIGKILL)
        thread.join()
    finally:
        proc.kill()
        proc.wait()
    assert isinstance(answers[0], requests.RequestException), "the retrain finished before the kill"

    consistent_state(state)
    srv = serve(scene, stripes_model, tmp_path, fine_tune="last_k_layers")  # restart on the same state
    try:
        assert requests.get(f"{srv.url}/sessions/{s}", timeout=10).json()["corrections"] == 8
        assert post(srv.url, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"]
        assert post(srv.url, "/doLoad", {"checkpoint": checkpoint, "session": s})["success"]
        assert post(srv.url, "/retrainModel", {"session": s})["success"]  # and it learns again
    finally:
        srv.close()


@pytest.mark.slow
def test_kill_9_during_a_pred_tile_job_reports_it_failed_after_the_restart(stripes_model, tmp_path):
    rng = np.random.default_rng(1)
    size = 1536
    noise = rng.integers(0, 255, (4, size, size), dtype=np.uint8)
    make_geotiff(
        tmp_path / "noise" / "noise.tif", (X0, Y0, X0 + size, Y0 + size), size=(size, size), data=noise
    )
    corners = [
        (X0 + 5, Y0 + 5),
        (X0 + size - 5, Y0 + 5),
        (X0 + size - 5, Y0 + size - 5),
        (X0 + 5, Y0 + size - 5),
    ]
    area = {"geometry": polygon_3857(corners), "crs": 3857}
    state, port = tmp_path / "state", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(f"noise={tmp_path / 'noise'}", stripes_model, state, port)
    try:
        done = post(url, "/predTile", area, status=202)["job"]
        while (first := requests.get(f"{url}/jobs/{done}", timeout=10).json())["state"] in (
            "queued",
            "running",
        ):
            time.sleep(0.05)
        assert first["state"] == "done", first
        cog = requests.get(url + first["outputs"]["cog"], timeout=10).content
        job = post(url, "/predTile", area, status=202)["job"]
        queued = post(url, "/predTile", area, status=202)["job"]  # waits behind it
        while (seen := requests.get(f"{url}/jobs/{job}", timeout=10).json()["state"]) == "queued":
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert seen == "running", seen
    finally:
        proc.kill()
        proc.wait()

    proc = start_server(f"noise={tmp_path / 'noise'}", stripes_model, state, port)
    try:
        for interrupted in (job, queued):
            reply = requests.get(f"{url}/jobs/{interrupted}", timeout=10).json()
            assert reply["state"] == "failed" and reply["message"] == RESTART_MESSAGE, reply
            assert not reply["outputs"]
        assert not [p.name for p in (state / "downloads").iterdir() if not p.name.startswith(done)]
        assert requests.get(url + first["outputs"]["cog"], timeout=10).content == cog
        again = post(url, "/predTile", area, status=202)["job"]
        while requests.get(f"{url}/jobs/{again}", timeout=10).json()["state"] in ("queued", "running"):
            time.sleep(0.05)
        assert requests.get(f"{url}/jobs/{again}", timeout=10).json()["state"] == "done"
    finally:
        proc.terminate()
        proc.wait()
    consistent_state(state)


def test_a_process_with_over_1024_files_open_is_still_served():
    """select() cannot watch a descriptor above 1024; a long-running server holds rasters, SQLite
    files and clients, so it waits with poll()."""
    import bottle

    app = bottle.Bottle()
    app.route("/ping", callback=lambda: {"pong": True})
    files = [open(os.devnull) for _ in range(1100)]  # noqa: SIM115 (closed below)
    try:
        server = LiveServer(app)  # its sockets get descriptors above 1024
        try:
            assert requests.get(f"{server.url}/ping", timeout=10).json() == {"pong": True}
        finally:
            server.close()
    finally:
        for f in files:
            f.close()
