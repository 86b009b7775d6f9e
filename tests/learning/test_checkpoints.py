"""Checkpoints and sessions survive restarts (a new app on the same state folder, in-process), and a
`kill -9` of a real server process in the middle of a checkpoint write."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import free_port, tiny_network
from tests.hitl_support import (
    BUILT,
    FIELD,
    WATER,
    correct_box,
    post,
    predicted,
    serve,
    share,
    start_server,
    stripe_extent,
    stripe_image,
)


def hard_png(url, session: str | None) -> str:
    return post(url, "/predPatch", {"extent": stripe_extent(FIELD), "session": session})["output_hard"]


@pytest.mark.parametrize("strategy", ["last_layer", "last_k_layers"])
def test_checkpoint_round_trip_across_a_restart(scene, stripes_model, tmp_path, strategy):
    from web_tool.learning.store import load_checkpoint_model

    srv = serve(scene, stripes_model, tmp_path, in_process=True, fine_tune=strategy)
    s = post(srv, "/sessions")["session"]
    post(srv, "/addClass", {"session": s, "name": "Quarry", "color": "#FF00FF"})
    for i in range(4):
        correct_box(srv, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
    post(srv, "/retrainModel", {"session": s})
    tuned = hard_png(srv, s)
    checkpoint = post(srv, "/checkpoints", {"session": s, "name": "fields are built"})["checkpoint"]
    post(srv, "/resetModel", {"session": s})
    srv.close()

    again = serve(
        scene, stripes_model, tmp_path, in_process=True, fine_tune=strategy
    )  # a new app on the same state_dir
    try:
        (listed,) = again.get("/checkpoints", params={"session": s}, timeout=10).json()
        assert listed["id"] == checkpoint and listed["name"] == "fields are built"
        assert listed["corrections"] == 4 and listed["parent"] is None and listed["share"] is None
        assert s not in str(listed)  # nothing names the session, not even to its owner
        assert [c["name"] for c in listed["classes"]][-1] == "Quarry" and listed["created"]
        assert "metrics" in listed
        other = post(again, "/sessions")["session"]
        post(again, "/doLoad", {"checkpoint": checkpoint, "session": other}, status=404)  # not other's
        shared = post(again, f"/checkpoints/{checkpoint}/share", {"session": s})["share"]
        loaded = post(again, "/doLoad", {"share": shared, "session": other})
        assert loaded["success"] and len(loaded["classes"]) == 5
        assert hard_png(again, other) == tuned
        assert again.get(f"/sessions/{other}", timeout=10).json()["corrections"] == 4
        assert share(predicted(again, FIELD, s), FIELD) > 0.9  # s was reset before the restart
        model = load_checkpoint_model(tmp_path / "state", checkpoint, again.config.model)
        image = stripe_image()
        assert model.n_classes == 5
        np.testing.assert_allclose(
            model.predict(image), again.config.model_for(other).predict(image), atol=1e-6
        )
        second = post(again, "/checkpoints", {"session": other})["checkpoint"]
        (newest,) = again.get("/checkpoints", params={"session": other}, timeout=10).json()
        assert newest["id"] == second and newest["parent"] == checkpoint  # lineage
    finally:
        again.close()


def test_sessions_keep_their_corrections_and_model_across_a_restart(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    s = post(srv, "/sessions")["session"]
    for i in range(4):
        correct_box(srv, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
    post(srv, "/retrainModel", {"session": s})
    tuned = hard_png(srv, s)
    srv.close()
    again = serve(scene, stripes_model, tmp_path, in_process=True)
    try:
        assert hard_png(again, s) == tuned
        assert post(again, "/doUndo", {"session": s})["undone"] == "correction"
        assert again.get(f"/sessions/{s}", timeout=10).json()["corrections"] == 3
    finally:
        again.close()


def other_network(tmp_path, **shape) -> Path:
    """A model file of conftest's tiny architecture in another `shape` (see tiny_network)."""
    path = tmp_path / "other" / "other.keras"
    path.parent.mkdir()
    tiny_network(**shape).save(path)
    return path


@pytest.mark.parametrize(
    "other, name",
    [({"width": 16}, "other"), ({"convolutions": 3}, "other"), (None, "features")],
    ids=["wider", "deeper", "no network"],
)
def test_a_checkpoint_of_another_network_is_a_409_that_says_so(scene, stripes_model, tmp_path, other, name):
    srv = serve(
        scene, stripes_model, tmp_path, in_process=True, fine_tune="last_k_layers"
    )  # checkpoints carry body weights
    s = post(srv, "/sessions")["session"]
    for i in range(3):
        correct_box(srv, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
    post(srv, "/retrainModel", {"session": s})
    checkpoint = post(srv, "/checkpoints", {"session": s})["checkpoint"]
    link = post(srv, f"/checkpoints/{checkpoint}/share", {"session": s})["share"]
    srv.close()

    if other is None:
        again = serve(scene, stripes_model, tmp_path, in_process=True, model="features")
    else:
        again = serve(
            scene, other_network(tmp_path, **other), tmp_path, in_process=True, fine_tune="last_k_layers"
        )
    try:
        mine = post(again, "/sessions")["session"]
        correct_box(again, WATER, 10, 10, size=2, session=mine)
        error = post(again, "/doLoad", {"share": link, "session": mine}, status=409)["error"]
        assert f"model {name!r}" in error or f"than {name!r}" in error
        assert "the model it was saved with" in error
        assert again.get(f"/sessions/{mine}", timeout=10).json()["corrections"] == 1  # kept
    finally:
        again.close()


def test_corrections_on_imagery_of_another_band_count_are_a_409_that_says_so(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    s = post(srv, "/sessions")["session"]
    correct_box(srv, BUILT, 66, 10, size=2, session=s)
    correct_box(srv, WATER, 10, 10, size=2, session=s)
    srv.close()

    again = serve(
        scene, other_network(tmp_path, bands=3), tmp_path, in_process=True
    )  # the 4-band file's first 3 bands
    try:
        error = post(again, "/retrainModel", {"session": s}, status=409)["error"]
        assert "model 'other' takes 3 bands but this imagery has 4" in error and "new session" in error
        assert again.get(f"/sessions/{s}", timeout=10).json()["corrections"] == 2  # kept
    finally:
        again.close()


@pytest.mark.slow
def test_kill_9_during_checkpoint_writes_leaves_only_complete_checkpoints(scene, stripes_model, tmp_path):
    state, port = tmp_path / "state", free_port()
    url = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    stop = threading.Event()

    def save_many():
        while not stop.is_set():
            try:
                r = requests.post(url + "/checkpoints", json={"name": "x" * 50}, timeout=5)
            except requests.RequestException:
                return
            if r.ok:
                acknowledged.append(r.json()["checkpoint"])

    proc = start_server(f"stripes={scene}", stripes_model, state, port, "--fine_tune", "last_k_layers")
    try:
        for i in range(3):
            correct_box(url, BUILT, 66 + 4 * i, 10 + 25 * i, size=2)
        post(url, "/retrainModel", {})  # last_k_layers: checkpoints carry body weights too
        workers = [threading.Thread(target=save_many) for _ in range(3)]
        for w in workers:
            w.start()
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write, most likely: three writers never pause
        stop.set()
        for w in workers:
            w.join()
    finally:
        proc.kill()
        proc.wait()
    assert acknowledged

    # a clean restart
    srv = serve(scene, stripes_model, tmp_path, in_process=True, fine_tune="last_k_layers")
    try:
        listed = {c["id"] for c in srv.get("/checkpoints", timeout=10).json()}
        assert set(acknowledged) <= listed  # nothing acknowledged is lost
        files = {p.name for p in (state / "checkpoints").iterdir()}
        assert files == {f"{c}.npz" for c in listed}  # no orphan or temp file left behind
        for checkpoint in listed:
            assert post(srv, "/doLoad", {"checkpoint": checkpoint})["success"]
    finally:
        srv.close()
