"""Sessions in memory are bounded: idle ones are let go, and come back from the database intact."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from shapely.geometry import box

from tests.conftest import UTM18
from tests.hitl_support import BUILT, FIELD, correct_box, post, serve, stripe_extent, stripe_image
from web_tool.DataLoader import DataLoader
from web_tool.errors import BusyError
from web_tool.imagery.datasets import DatasetConfig
from web_tool.learning.sessions import GRACE_S


class Clock:
    """A time source the test moves by hand (the manager's `clock`)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def manager(scene, stripes_model, tmp_path):
    from web_tool.learning.sessions import SessionManager
    from web_tool.learning.training_data import replay_path
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    base = KerasSegmentationModel(stripes_model, classes=[])
    clock = Clock()
    sessions = SessionManager(
        base,
        tmp_path / "state",
        "last_layer",
        replay_path(stripes_model),
        max_sessions=3,
        idle_s=600,
        clock=clock,
    )
    loader = DataLoader(DatasetConfig(name="stripes", paths=[str(p) for p in scene.glob("*.tif")]))
    return sessions, clock, loader


def label(sessions, loader, session: str, i: int) -> None:
    x, y = 500_066 + 4 * i, 4_300_010 + 25 * (i % 4)
    sessions.record(session, loader, box(x, y, x + 2, y + 2), UTM18, BUILT)


def test_idle_sessions_are_let_go_and_reload_with_their_corrections_and_model(manager):
    sessions, clock, loader = manager
    s = sessions.create()
    for i in range(4):
        label(sessions, loader, s, i)
    sessions.retrain(s)
    tuned = sessions.model(s)
    clock.now += 601
    other = sessions.create()
    sessions.get(other)  # any request sweeps
    assert sessions.in_memory() == [other]
    again = sessions.get(s)
    assert len(again.corrections) == 4 and again is not None
    image = stripe_image()
    assert (
        np.allclose(again.model.predict(image), tuned.predict(image)) and again.model.classes == tuned.classes
    )
    assert sessions.undo(s)["undone"] == "correction"  # undo after eviction covers corrections


def test_over_the_cap_the_least_recently_used_idle_session_goes_first(manager):
    sessions, clock, loader = manager
    ids = [sessions.create() for _ in range(4)]
    for s in ids[:3]:
        sessions.get(s)
        clock.now += GRACE_S + 1
    sessions.get(ids[0])  # used again: now the most recent
    clock.now += GRACE_S + 1
    sessions.get(ids[3])
    assert sorted(sessions.in_memory()) == sorted([ids[0], ids[2], ids[3]])


def test_the_cap_is_hard_busy_and_just_used_sessions_stay_and_a_new_one_waits(manager):
    sessions, clock, loader = manager
    ids = [sessions.create() for _ in range(5)]
    loaded = [sessions.get(s) for s in ids[:3]]  # all used within the grace period: none may go
    with pytest.raises(BusyError, match="try again") as refused:
        sessions.get(ids[3])
    assert refused.value.retry_after >= 1 and sorted(sessions.in_memory()) == sorted(ids[:3])
    clock.now += GRACE_S + 1
    busy = loaded[0].lock  # the least recently used, but a retrain holds its lock
    held, release = threading.Event(), threading.Event()

    def hold():
        with busy:
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        sessions.get(ids[3])
        sessions.get(ids[4])  # ids[1] and ids[2] went; ids[0] is busy and stays
        assert sorted(sessions.in_memory()) == sorted([ids[0], ids[3], ids[4]])
        with pytest.raises(BusyError):  # busy, just used, just used: none can go
            sessions.get(ids[1])
    finally:
        release.set()
        t.join()
    assert sorted(sessions.in_memory()) == sorted([ids[0], ids[3], ids[4]])


def test_over_http_an_evicted_session_keeps_predicting_with_its_tuned_model(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True, max_sessions=1, session_idle_minutes=1)
    try:
        s = post(srv, "/sessions")["session"]
        for i in range(4):
            correct_box(srv, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
        for i in range(4):
            correct_box(srv, FIELD, 2 + 4 * i, 10 + 25 * i, size=2, session=s)
        post(srv, "/retrainModel", {"session": s})
        before = post(srv, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"]
        sessions, clock = srv.config.sessions, Clock()
        sessions.clock = clock
        clock.now = 10**9  # much later: everything is idle
        other = post(srv, "/sessions")["session"]
        post(srv, "/predPatch", {"extent": stripe_extent(FIELD), "session": other})
        assert sessions.in_memory() == [other]
        clock.now += GRACE_S + 1
        after = post(srv, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"]
        assert after == before
        assert srv.get(f"/sessions/{s}", timeout=10).json()["corrections"] == 8
    finally:
        srv.close()
