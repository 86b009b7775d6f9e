"""The map the user saw, computed only where learning reads it, reads as the whole window's does.

A correction keeps the classes of the map the user saw at its sampled and anchor pixels only
(from the features learning caches); corrections stored by earlier versions hold that map over the
whole window. Both must give learning the same anchors, the same classes and the same samples.
The scene is hitl_support's striped tile; the models are the tiny Keras network fitted to it and
a session's learnt forest on top of it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import UTM18
from hitl_support import BUILT, FIELD, FOREST, STRIPE, WATER, X0, Y0
from shapely.geometry import box

from web_tool.admission import Gate
from web_tool.corrections import NO_CLASS, anchor_pixels, sample_pixels
from web_tool.DataLoader import DataLoader
from web_tool.datasets import DEFAULT_CLASSES, DatasetConfig
from web_tool.ServerModels import get_model
from web_tool.sessions import SessionManager, seen_map
from web_tool.training_data import (
    ANCHORS,
    PER_CORRECTION,
    FeatureSource,
    base_trust,
    confirms,
    load_replay,
    replay_path,
)


@pytest.fixture(scope="module")
def loader(scene):
    return DataLoader(DatasetConfig(name="stripes", paths=[str(scene / "stripes.tif")]))


@pytest.fixture(scope="module")
def keras_base(stripes_model):
    return get_model("keras")(stripes_model, classes=DEFAULT_CLASSES)


def pixel(k: int, i: int):
    x, y = X0 + k * STRIPE + 8 + (7 * i) % (STRIPE - 16) + 0.5, Y0 + 8 + (23 * i) % 112 + 0.5
    return box(x - 0.2, y - 0.2, x + 0.2, y + 0.2)


def clicks(sessions, loader, round_: int) -> None:
    """Clicks that confirm the map and clicks that contradict it, and a stroke of over
    PER_CORRECTION pixels (its map is known at a sample of them)."""
    for k in (WATER, FOREST, FIELD, BUILT):
        for i in range(2):
            sessions.record(None, loader, pixel(k, 3 * round_ + i), UTM18, k)
    sessions.record(None, loader, pixel(FIELD, 3 * round_ + 2), UTM18, BUILT)  # "this field is built"
    x = X0 + FOREST * STRIPE + 4
    sessions.record(None, loader, box(x, Y0 + 40 * round_ + 4, x + 20, Y0 + 40 * round_ + 20), UTM18, FOREST)


def as_stored_before(c, model):
    """The correction as earlier versions stored it: the map over its whole window."""
    seen, trust = seen_map(model, c.image)
    return dataclasses.replace(c, seen=seen, seen_trust=trust)


def test_the_seen_map_where_learning_reads_it_is_the_whole_windows_there(
    keras_base, stripes_model, loader, tmp_path
):
    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    clicks(sessions, loader, 0)  # on the base model's map
    first = list(sessions.get(None).corrections)
    sessions.retrain(None)
    learnt = sessions.model(None)
    assert learnt.learnt
    sessions.gate = Gate(slots=1, max_waiting=20)
    with sessions.gate.turn():  # a heavy request holds the one slot: their model work waits...
        clicks(sessions, loader, 1)  # on the session's learnt forest
        assert all(c.seen is None for c in sessions.get(None).corrections[len(first) :])
        sessions.retrain(None)  # ...and the retrain does it, for them all at once
    corrections = sessions.get(None).corrections
    second = corrections[len(first) :]
    assert max(c.count for c in corrections) > PER_CORRECTION

    margin = keras_base.padding
    confirmed = set()
    for cs, model in ((first, keras_base), (second, learnt)):
        for c in cs:
            before = as_stored_before(c, model)
            assert c.seen.shape == before.seen.shape and c.seen.dtype == before.seen.dtype == np.uint8
            assert c.seen_trust == before.seen_trust
            rows, cols = anchor_pixels(c, ANCHORS, margin)
            expected = anchor_pixels(before, ANCHORS, margin)
            assert len(rows) == ANCHORS
            np.testing.assert_array_equal(rows, expected[0])
            np.testing.assert_array_equal(cols, expected[1])
            np.testing.assert_array_equal(c.seen[rows, cols], before.seen[rows, cols])
            idx = sample_pixels(c, PER_CORRECTION)
            np.testing.assert_array_equal(
                c.seen[c.rows[idx], c.cols[idx]], before.seen[c.rows[idx], c.cols[idx]]
            )
            known = c.seen != NO_CLASS  # nowhere else
            assert known.sum() == len(rows) + len(idx)
            np.testing.assert_array_equal(c.seen[known], before.seen[known])
            assert confirms(c) == confirms(before)
            confirmed.add(confirms(c))
    assert confirmed == {True, False}

    # and learning reads the same samples from both (values computed afresh for the old ones)
    def read(source, cs):
        labelled = source.samples(learnt.features, learnt.extractor_id, cs, learnt.n_classes, None)
        trust = base_trust(keras_base, learnt.n_classes, labelled)
        return source.samples(learnt.features, learnt.extractor_id, cs, learnt.n_classes, trust)

    models = [keras_base] * len(first) + [learnt] * len(second)
    new = read(sessions.source, corrections)
    old_source = FeatureSource(keras_base, load_replay(replay_path(stripes_model)))
    old = read(old_source, [as_stored_before(c, m) for c, m in zip(corrections, models, strict=True)])
    for field in ("x", "y", "w", "group", "labelled"):
        np.testing.assert_array_equal(getattr(new, field), getattr(old, field), err_msg=field)
    assert (~new.labelled & (new.group >= 0)).sum() > ANCHORS  # anchors are there


def test_a_part_left_by_an_erase_keeps_anchors_where_the_map_is_known(
    keras_base, stripes_model, loader, tmp_path
):
    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    x = X0 + FOREST * STRIPE + 4
    sessions.record(None, loader, box(x, Y0 + 10, x + 20, Y0 + 30), UTM18, FOREST)
    sessions.record(None, loader, pixel(WATER, 0), UTM18, WATER)
    sessions.erase(None, "stripes", box(x, Y0 + 10, x + 10, Y0 + 30), UTM18)
    part = sessions.get(None).corrections[-1]
    assert part.value == FOREST and 0 < part.count < 400
    rows, cols = anchor_pixels(part, ANCHORS, keras_base.padding)
    assert len(rows) == ANCHORS and (part.seen[rows, cols] != NO_CLASS).all()
    sessions.retrain(None)
