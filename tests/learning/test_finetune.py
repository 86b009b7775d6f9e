"""Learning from corrections, without HTTP: the fit, the evidence it weighs, cross-validation.

The scene is hitl_support's striped tile (Water, Forest, Field, Built stripes). Models are real:
the tiny Keras network with a head fitted to the stripes (or a wrong one), and the filter-bank
model that needs no weights.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from shapely.geometry import box

from tests.conftest import UTM18
from tests.hitl_support import BUILT, FIELD, FOREST, STRIPE, WATER, X0, Y0, stripe_image, stripe_labels
from web_tool.DataLoader import DataLoader
from web_tool.errors import NotTrainedError, RequestError
from web_tool.http.admission import Gate
from web_tool.imagery.datasets import DEFAULT_CLASSES, DatasetConfig
from web_tool.learning import crossval
from web_tool.learning.corrections import NO_CLASS, Correction, anchor_pixels, sample_pixels
from web_tool.learning.sessions import SessionManager, seen_map
from web_tool.learning.training_data import (
    ANCHORS,
    PER_CORRECTION,
    FeatureSource,
    Samples,
    base_trust,
    confirms,
    error_hunting,
    load_replay,
    network_say,
    replay_path,
)
from web_tool.ServerModels import get_model
from web_tool.ServerModels.heads import LinearHead


@pytest.fixture(scope="module")
def loader(scene):
    return DataLoader(DatasetConfig(name="stripes", paths=[str(scene / "stripes.tif")]))


@pytest.fixture(scope="module")
def keras_base(stripes_model):
    return get_model("keras")(stripes_model, classes=DEFAULT_CLASSES)


def click(sessions, loader, k: int, i: int, value: int | None = None, session=None) -> None:
    """One pixel inside stripe k (the i-th of a fixed scatter), labelled `value` (default: k)."""
    x = X0 + k * STRIPE + 8 + (7 * i) % (STRIPE - 16) + 0.5
    y = Y0 + 8 + (23 * i) % 112 + 0.5
    sessions.record(
        session, loader, box(x - 0.2, y - 0.2, x + 0.2, y + 0.2), UTM18, k if value is None else value
    )


def stripe_accuracy(model) -> float:
    return float((model.predict(stripe_image()).argmax(-1) == stripe_labels()).mean())


def test_a_head_that_is_wrong_everywhere_is_replaced_by_a_few_clicks(keras_base, loader, tmp_path):
    """The base head says Water for Forest, Forest for Field...: every click contradicts it, the
    base model loses its say, and 3 clicks per class fix the map."""
    head = keras_base.head
    wrong = keras_base.with_head(LinearHead(np.roll(head.kernel, 1, axis=1), np.roll(head.bias, 1)))
    assert stripe_accuracy(wrong) < 0.1
    sessions = SessionManager(wrong, tmp_path, "last_layer")
    for k in (WATER, FOREST, FIELD, BUILT):
        for i in range(3):
            click(sessions, loader, k, i)
    result = sessions.retrain(None)
    assert stripe_accuracy(sessions.model(None)) > 0.95, result["message"]


def test_clicks_on_a_map_that_is_already_right_never_make_it_worse(
    keras_base, stripes_model, loader, tmp_path
):
    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    for i in range(4):
        click(sessions, loader, FOREST, i)
        click(sessions, loader, FIELD, i)
    sessions.retrain(None)
    assert stripe_accuracy(sessions.model(None)) >= stripe_accuracy(keras_base) - 0.002


def test_the_same_clicks_learn_the_same_model_whatever_other_sessions_did_first(
    keras_base, stripes_model, loader, tmp_path
):
    """Anchors, sampled pixels and thinning are drawn per correction: from what it labels, not from
    its id, which counts over the whole server."""
    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    first, second = sessions.create(), sessions.create()

    def work(session) -> None:
        for i in range(3):
            click(sessions, loader, FOREST, i, value=FIELD, session=session)  # errors: anchors kept
            click(sessions, loader, BUILT, i, session=session)
        sessions.retrain(session)
        for i in range(3, 6):  # on the learnt map: its anchors are thinned by the hunting evidence
            click(sessions, loader, FOREST, i, value=FIELD, session=session)
            click(sessions, loader, WATER, i, session=session)
        sessions.retrain(session)

    work(first)
    for i in range(7):  # someone else clicks in between: the ids the second session gets differ
        click(sessions, loader, FIELD, i, session=None)
    work(second)
    ids = [[c.id for c in sessions.get(s).corrections] for s in (first, second)]
    assert not set(ids[0]) & set(ids[1])
    maps = [sessions.model(s).predict(stripe_image()) for s in (first, second)]
    np.testing.assert_array_equal(maps[0], maps[1])


def test_correcting_one_class_keeps_the_classes_nobody_corrected(keras_base, stripes_model, loader, tmp_path):
    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    for i in range(6):
        click(sessions, loader, FIELD, i, value=BUILT)  # "this field is built"
    sessions.retrain(None)
    pred = sessions.model(None).predict(stripe_image()).argmax(-1)
    labels = stripe_labels()
    assert np.mean(pred[labels == FIELD] == BUILT) > 0.5
    for k in (WATER, FOREST, BUILT):
        assert np.mean(pred[labels == k] == k) > 0.9


def test_a_network_the_user_sides_with_gets_its_map_back(keras_base, loader, tmp_path):
    """No replay sample, and the network calls Field Built and Built Field. Clicks on Field and
    Built alone make the first retrain map everything as one of them; clicks on Water and Forest,
    where the user then sides with the network against that map, hand those stripes back to the
    network: its map, not only the clicked pixels, comes back."""
    head = keras_base.head
    swap = [WATER, FOREST, BUILT, FIELD]
    wrong = keras_base.with_head(LinearHead(head.kernel[:, swap], head.bias[swap]))
    sessions = SessionManager(wrong, tmp_path, "last_layer")
    for i in range(3):
        click(sessions, loader, FIELD, i)
        click(sessions, loader, BUILT, i)
    sessions.retrain(None)
    labels = stripe_labels()
    first = sessions.model(None).predict(stripe_image()).argmax(-1)
    assert np.mean(first[labels == WATER] == WATER) < 0.5 and np.mean(first[labels == FOREST] == FOREST) < 0.5
    for i in range(3, 15):
        click(sessions, loader, WATER, i)
        click(sessions, loader, FOREST, i)
    sessions.retrain(None)
    pred = sessions.model(None).predict(stripe_image()).argmax(-1)
    right = [float(np.mean(pred[labels == k] == k)) for k in (WATER, FOREST, FIELD, BUILT)]
    assert min(right) > 0.85, right


def test_labelling_points_the_learnt_map_had_right_does_not_keep_its_errors(loader, tmp_path):
    """A first round without Built maps the Built stripe as something else. Then the user labels
    points rather than hunting errors: most confirm the learnt map, a few are in the Built stripe.
    Around those few, the learnt map's wrong class must not outweigh them (with the anchors at full
    weight the stripe stays wrong: 0.0002 Built, checked by hand)."""
    sessions = SessionManager(get_model("features")(None, classes=DEFAULT_CLASSES), tmp_path, "last_layer")
    for k in (WATER, FOREST, FIELD):
        for i in range(3):
            click(sessions, loader, k, i)
    sessions.retrain(None)
    labels = stripe_labels()
    first = sessions.model(None).predict(stripe_image()).argmax(-1)
    assert np.mean(first[labels == BUILT] == BUILT) == 0
    for i in range(3, 7):
        for k in (WATER, FOREST, FIELD):
            click(sessions, loader, k, i)
    for i in range(3):
        click(sessions, loader, BUILT, i)
    sessions.retrain(None)
    pred = sessions.model(None).predict(stripe_image()).argmax(-1)
    right = [float(np.mean(pred[labels == k] == k)) for k in (WATER, FOREST, FIELD, BUILT)]
    assert min(right) > 0.7, right


def test_error_hunting_is_the_share_of_learnt_maps_corrected():
    def correction(shown, value, learnt=True):
        seen = np.full((3, 3), NO_CLASS, np.uint8)
        seen[1, 1] = shown
        one = np.array([1])
        image = np.ones((3, 3, 4), np.uint8)
        transform = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
        trust = 1.0 if learnt else None
        return Correction("d", "EPSG:32618", value, one, one, image, transform, None, seen, trust)

    assert error_hunting([]) == 1.0
    fixes, confirmations = [correction(0, 1)] * 8, [correction(1, 1)] * 8
    assert error_hunting(fixes) == 1.0
    assert error_hunting(confirmations) < 0.5 < error_hunting(fixes[:4] + confirmations[:4]) < 1.0
    # corrections of the base model's map (seen_trust None) say nothing about the learnt maps
    assert error_hunting([correction(1, 1, learnt=False)] * 8) == 1.0


def say_after(clicks):
    """network_say after corrections given as (the network's class, the class the map the user saw
    showed, the user's class); the network is sure of its class."""
    network = LinearHead(np.eye(3, dtype=np.float32) * 10, np.zeros(3, np.float32))
    corrections, x = [], []
    one = np.array([2])
    for said, shown, value in clicks:
        seen = np.full((5, 5), NO_CLASS, np.uint8)
        seen[2, 2] = shown
        image = np.ones((5, 5, 4), np.uint8)
        transform = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
        corrections.append(Correction("d", "EPSG:32618", value, one, one, image, transform, seen=seen))
        x.append(np.eye(3)[said])
    n = len(clicks)
    values = np.array([c.value for c in corrections], np.int64)
    labelled = Samples(np.array(x).reshape(n, 3), values, np.ones(n), np.arange(n), np.ones(n, bool))
    return network_say(network, corrections, labelled)


def test_the_network_has_its_say_where_the_user_sides_with_it_against_the_learnt_map():
    prior = say_after([])
    assert len(prior) == 4 and np.allclose(prior, prior[0])  # three classes, then all together
    # corrections of a map that showed the network's class say nothing: picked for being wrong,
    # or for being right
    assert np.allclose(say_after([(0, 0, 1)] * 4), prior) and np.allclose(say_after([(0, 0, 0)] * 4), prior)
    won = say_after([(0, 2, 0)] * 4)  # the session's map said 2, the network 0, the user sided with it
    lost = say_after([(0, 2, 1)] * 4)  # ... and the user said 1
    assert won[0] > prior[0] > lost[0] and won[3] > prior[3] > lost[3]
    assert np.allclose(won[1:3], prior[1:3]) and np.allclose(lost[1:3], prior[1:3])
    mixed = say_after([(0, 2, 0)] * 3 + [(0, 2, 1)])
    assert lost[0] < mixed[0] < won[0]


def test_the_model_without_weights_predicts_nothing_until_two_classes_are_labelled(loader, tmp_path):
    base = get_model("features")(None, classes=DEFAULT_CLASSES)
    assert base.n_bands is None and not base.trained
    with pytest.raises(NotTrainedError, match="label at least two classes"):
        base.predict(stripe_image())
    sessions = SessionManager(base, tmp_path, "last_layer")
    for i in range(3):
        click(sessions, loader, WATER, i)
    with pytest.raises(RequestError, match="at least two classes"):
        sessions.retrain(None)
    for k in (FOREST, FIELD, BUILT):
        for i in range(3):
            click(sessions, loader, k, i)
    sessions.retrain(None)
    assert stripe_accuracy(sessions.model(None)) > 0.95
    three_bands = sessions.model(None).with_head(None).features(stripe_image()[..., :3])  # any band count
    assert three_bands.shape[:2] == (128, 128)


def test_cross_validation_needs_enough_corrections_and_scores_held_out_ones():
    rng = np.random.default_rng(0)
    values = [0] * 6 + [1] * 6
    x = np.concatenate([rng.normal(v * 3, 1, (4, 2)) for v in values])
    group = np.repeat(np.arange(12), 4)
    samples = Samples(x, np.repeat(values, 4), np.ones(48), group, np.ones(48, bool))
    classes = [{"name": "a"}, {"name": "b"}]

    def fit(part):
        from sklearn.linear_model import LogisticRegression

        from web_tool.ServerModels.heads import ClassifierHead

        return ClassifierHead(LogisticRegression().fit(part.x, part.y), 2)

    few = crossval.cross_validate(samples.subset(group < 8), values[:8], classes, fit)
    assert "too few corrections to measure" in few["note"]
    full = crossval.cross_validate(samples, values, classes, fit)
    assert full["accuracy"] == 1.0 and full["scored"] == 12
    assert [row["corrections"] for row in full["per_class"]] == [6, 6]
    # a label that contradicts its pixels is held out and missed: the score is honest
    flipped = Samples(x, np.repeat([1] + values[1:], 4), np.ones(48), group, np.ones(48, bool))
    assert crossval.cross_validate(flipped, [1] + values[1:], classes, fit)["accuracy"] < 1.0
    assert crossval.compare({"accuracy": 0.5, "accuracy_se": 0.05}, [{"accuracy": 0.9, "accuracy_se": 0.05}])[
        "worse"
    ]


def test_the_replay_sample_is_ready_before_the_first_retrain(keras_base, stripes_model, loader, tmp_path):
    """Its values are computed in the background from the first correction on, once: the first
    retrain finds them cached."""
    import time

    sessions = SessionManager(keras_base, tmp_path, "last_layer", replay_path(stripes_model))
    source = sessions.source
    assert source.replay is not None
    calls = []
    extract = source.replay_values.__func__  # the real method, counted

    def counted(self, *args, **kwargs):
        calls.append(args)
        return extract(self, *args, **kwargs)

    source.replay_values = counted.__get__(source)
    click(sessions, loader, FIELD, 0)
    click(sessions, loader, WATER, 1)
    deadline = time.monotonic() + 60
    while not any(k[0] == "replay" for k in source._cache) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(k[0] == "replay" for k in source._cache), "not computed in the background"
    assert len(calls) == 1  # once, not once per correction
    (cached,) = [v for k, v in source._cache.items() if k[0] == "replay"]
    sessions.retrain(None)
    (after,) = [v for k, v in source._cache.items() if k[0] == "replay"]
    assert after is cached  # the retrain found them, it did not compute them again


def test_the_cached_values_stay_within_their_memory_budget(keras_base, loader, tmp_path):
    sessions = SessionManager(keras_base, tmp_path, "last_layer")
    clicks(sessions, loader, 0)
    *points, stroke = sessions.get(None).corrections
    extract, key = keras_base.features, keras_base.extractor_id
    fresh = [FeatureSource(keras_base, None).values(extract, key, c) for c in points]
    (size,) = {sum(a.nbytes for a in v) for v in fresh}  # every click's values take the same room

    source = FeatureSource(keras_base, None, cache_mb=3.5 * size / 2**20)  # room for three
    for c, expected in zip(points, fresh, strict=True):
        for got, want in zip(source.values(extract, key, c), expected, strict=True):
            np.testing.assert_array_equal(got, want)
        assert source._cache.currsize <= 3.5 * size
    assert [k[-1] for k in source._cache] == [c.id for c in points[-3:]]  # the least recently used went
    got = source.values(extract, key, points[0])  # computed again when asked for
    np.testing.assert_array_equal(got[0], fresh[0][0])
    assert [k[-1] for k in source._cache] == [c.id for c in [*points[-2:], points[0]]]

    source.values(extract, key, stroke)  # more than the whole budget: not kept, nothing let go for it
    assert [k[-1] for k in source._cache] == [c.id for c in [*points[-2:], points[0]]]


# --- the map the user saw --------------------------------------------------------------------------
# A correction keeps its classes at its sampled and anchor pixels only (from the features learning
# caches); corrections stored by earlier versions hold that map over the whole window. Both must
# give learning the same anchors, the same classes and the same samples.


def clicks(sessions, loader, round_: int) -> None:
    """Clicks that confirm the map and clicks that contradict it, and a stroke of over
    PER_CORRECTION pixels (its map is known at a sample of them)."""
    for k in (WATER, FOREST, FIELD, BUILT):
        for i in range(2):
            click(sessions, loader, k, 3 * round_ + i)
    click(sessions, loader, FIELD, 3 * round_ + 2, value=BUILT)  # "this field is built"
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
    click(sessions, loader, WATER, 0)
    sessions.erase(None, "stripes", box(x, Y0 + 10, x + 10, Y0 + 30), UTM18)
    part = sessions.get(None).corrections[-1]
    assert part.value == FOREST and 0 < part.count < 400
    rows, cols = anchor_pixels(part, ANCHORS, keras_base.padding)
    assert len(rows) == ANCHORS and (part.seen[rows, cols] != NO_CLASS).all()
    sessions.retrain(None)
