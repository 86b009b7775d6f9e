"""ServerModels: the registry, finding model files the seed's ways, and real Keras inference."""

import cv2
import numpy as np
import pytest

from web_tool.errors import LandCoverError, ModelError
from web_tool.ServerModels import get_model, list_models
from web_tool.ServerModels.base import smoothed
from web_tool.ServerModels.heads import FeatureCountError, LinearHead
from web_tool.ServerModels.keras_io import resolve_model_path
from web_tool.ServerModels.keras_model import KerasSegmentationModel

CLASSES = [{"name": n, "color": "#000000"} for n in "abcd"]


def test_registry_knows_the_seed_names_and_lists_valid_ones_on_error():
    assert {"nips_hr", "nips_sr"} <= set(list_models())
    assert get_model("nips_hr") is KerasSegmentationModel
    with pytest.raises(LandCoverError, match="nips_hr"):
        get_model("resnet9000")


def test_model_fn_without_extension_finds_keras_or_h5(tiny_model_path, tmp_path):
    assert resolve_model_path(tiny_model_path.with_suffix("")) == (tiny_model_path, None)
    import keras

    model = keras.saving.load_model(tiny_model_path)
    model.save(tmp_path / "m.h5")
    assert resolve_model_path(tmp_path / "m") == (tmp_path / "m.h5", None)


def test_the_seeds_json_plus_weights_pair_loads_and_predicts_the_same(tiny_model_path, tmp_path):
    import keras

    model = keras.saving.load_model(tiny_model_path)
    (tmp_path / "seed.json").write_text(model.to_json())
    # the seed's weights files are legacy HDF5 (Keras 2), which Keras 3 still reads
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(tmp_path / "seed_weights.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    assert resolve_model_path(tmp_path / "seed") == (tmp_path / "seed.json", tmp_path / "seed_weights.h5")
    img = np.random.default_rng(0).integers(0, 255, (40, 40, 4)).astype(np.uint8)
    a = KerasSegmentationModel(tiny_model_path, CLASSES).predict(img)
    b = KerasSegmentationModel(tmp_path / "seed", CLASSES).predict(img)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_missing_demo_model_says_how_to_build_it(tmp_path):
    with pytest.raises(ModelError, match="make demo"):
        resolve_model_path(tmp_path / "demo_model")
    with pytest.raises(ModelError, match="no model found") as info:
        resolve_model_path(tmp_path / "mine")
    assert "make demo" not in str(info.value)  # not the demo's hint for the user's own model


def test_predictions_are_probabilities_equal_to_the_full_network(tiny_model_path):
    import keras

    net = keras.saving.load_model(tiny_model_path)
    model = KerasSegmentationModel(tiny_model_path, CLASSES)
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 4)).astype(np.uint8)
    probs = model.predict(img)
    assert probs.shape == (48, 64, 4)
    np.testing.assert_allclose(probs.sum(-1), 1, atol=1e-5)
    expected = net.predict(img[None].astype(np.float32) / 255, verbose=0)[0]
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_a_model_with_another_head_shares_the_network_and_leaves_the_first_alone(tiny_model_path):
    model = KerasSegmentationModel(tiny_model_path, CLASSES)
    img = np.random.default_rng(1).integers(0, 255, (32, 32, 4)).astype(np.uint8)
    before = model.predict(img)
    zero = LinearHead(np.zeros_like(model.head.kernel), np.zeros_like(model.head.bias))
    other = model.with_head(zero)
    assert other.body is model.body and other.extractor_id == model.extractor_id
    np.testing.assert_allclose(other.predict(img), 0.25)
    np.testing.assert_allclose(model.predict(img), before)


def test_model_with_other_class_count_gets_generic_classes(tiny_model_path):
    model = KerasSegmentationModel(tiny_model_path, CLASSES[:2])
    assert [c["name"] for c in model.classes] == ["Class 0", "Class 1", "Class 2", "Class 3"]


def test_smoothing_removes_a_lone_pixel_keeps_an_area_and_sums_to_one():
    probs = np.zeros((32, 32, 3), np.float32)
    probs[..., 0] = 1  # class 0 everywhere...
    probs[5, 5] = (0, 1, 0)  # ...but one pixel of class 1 (speckle)
    probs[16:24, 16:24] = (0, 0, 1)  # and an 8 x 8 px area of class 2
    out = smoothed(probs)
    np.testing.assert_allclose(out.sum(-1), 1, atol=1e-5)
    classes = out.argmax(-1)
    assert classes[5, 5] == 0
    assert (classes[17:23, 17:23] == 2).all()
    assert (probs.argmax(-1) != classes).sum() < 20  # only the lone pixel and the area's corners


def test_a_learnt_head_is_smoothed_and_the_network_head_is_not(tiny_model_path):
    from sklearn.ensemble import RandomForestClassifier

    from web_tool.ServerModels.heads import ClassifierHead

    model = KerasSegmentationModel(tiny_model_path, CLASSES)
    img = np.random.default_rng(2).integers(0, 255, (40, 40, 4)).astype(np.uint8)
    assert model.predict(img, smooth=True) == pytest.approx(model.predict(img, smooth=False))
    feats = model.features(img).reshape(40 * 40, -1)
    labels = np.random.default_rng(3).integers(0, 4, 40 * 40)  # noise: a speckled map
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(feats, labels)
    learnt = model.with_head(ClassifierHead(forest, 4))
    raw = learnt.predict(img, smooth=False)
    np.testing.assert_allclose(raw.reshape(-1, 4), forest.predict_proba(feats), atol=1e-6)
    np.testing.assert_allclose(learnt.predict(img), smoothed(raw), atol=1e-6)
    assert not np.allclose(learnt.predict(img), raw)


def predict_at_once(model, images: list[np.ndarray]) -> list[np.ndarray]:
    """`model.predict` of each image, each on its own thread, all released at the same moment."""
    import threading

    out: list[np.ndarray] = [np.empty(0)] * len(images)
    start = threading.Barrier(len(images))

    def predict(i: int) -> None:
        start.wait()
        out[i] = model.predict(images[i])

    threads = [threading.Thread(target=predict, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_many_threads_predicting_at_once_get_what_one_thread_gets(tiny_model_path):
    """The server predicts on many threads with one model: the network and a learnt forest head
    must not share anything mutable between calls (the rtree index did: DataLoader.files_for)."""
    from sklearn.ensemble import RandomForestClassifier

    from web_tool.ServerModels.heads import ClassifierHead

    model = KerasSegmentationModel(tiny_model_path, CLASSES)
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 255, (48, 48, 4)).astype(np.uint8) for _ in range(8)]
    feats = model.features(images[0]).reshape(48 * 48, -1)
    forest = RandomForestClassifier(20, n_jobs=2, random_state=0).fit(feats, rng.integers(0, 4, len(feats)))
    for m in (model, model.with_head(ClassifierHead(forest, 4), learnt=True)):
        alone = [m.predict(image) for image in images]
        for together, expected in zip(predict_at_once(m, images), alone, strict=True):
            np.testing.assert_allclose(together, expected, atol=1e-5)


def test_a_deferring_head_hands_its_network_share_to_the_network_head():
    """Labels 0 and 1 are the forest's own; label 2 means "the network knows": its probability goes
    to the network head's classes. Stored and loaded, it predicts the same; grown, the new class
    gets nothing until a retrain."""
    from sklearn.linear_model import LogisticRegression

    from web_tool.ServerModels.heads import DeferringHead, LinearHead, head_from_arrays

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c * 4, 0.5, (30, 2)) for c in (0, 1, 2)]).astype(np.float32)
    y = np.repeat([0, 1, 2], 30)
    network = LinearHead(np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 5.0]], np.float32), np.zeros(3, np.float32))
    head = DeferringHead(LogisticRegression().fit(x, y), 3, network, defer=3)
    # y == 2 is one of the forest's own classes here; the defer label is 3, unseen: nothing deferred
    assert np.allclose(head.predict(x).sum(axis=1), 1)
    deferring = DeferringHead(LogisticRegression().fit(x, np.where(y == 2, 3, y)), 3, network, defer=3)
    probs = deferring.predict(x)
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs[y == 2].argmax(axis=1) == 2).all()  # handed to the network, which says 2 there
    assert (probs[y < 2].argmax(axis=1) == y[y < 2]).all()
    again = head_from_arrays(deferring.to_arrays())
    assert isinstance(again, DeferringHead) and np.allclose(again.predict(x), probs)
    chunked = DeferringHead(deferring.classifier, 3, network, defer=3, chunk=7)  # 90 rows in 13 chunks
    assert np.allclose(chunked.predict(x), probs)
    with pytest.raises(FeatureCountError, match="learnt from 2 features"):
        deferring.predict(np.zeros((4, 3), np.float32))
    grown = deferring.grown()
    assert grown.n_classes == 4 and np.allclose(grown.predict(x)[:, 3], 0, atol=1e-6)
    assert np.allclose(grown.predict(x)[:, :3], probs, atol=1e-5)


def test_beyond_the_imagerys_edge_a_model_sees_the_edge_carried_on_not_black():
    from web_tool.ServerModels.base import edge_filled
    from web_tool.ServerModels.features_model import FeatureModel
    from web_tool.ServerModels.filterbank import filter_bank

    rng = np.random.default_rng(0)
    tile = rng.integers(1, 256, (40, 50, 4), dtype=np.uint8)
    canvas = np.zeros((100, 110, 4), np.uint8)  # no imagery around the tile (as DataLoader reads it)
    canvas[30:70, 30:80] = tile
    filled = edge_filled(canvas)
    assert (filled[30:70, 30:80] == tile).all()  # the imagery itself is untouched
    assert (filled[:30, 45] == tile[0, 15]).all() and (filled[85, 95] == tile[-1, -1]).all()
    # the filter bank at the tile's own pixels is then what it is on the tile with its edges replicated
    replicated = cv2.copyMakeBorder(tile, 30, 30, 30, 30, cv2.BORDER_REPLICATE)
    features = FeatureModel().features(canvas)
    np.testing.assert_allclose(features[30:70, 30:80], filter_bank(replicated)[30:70, 30:80], atol=1e-5)
    assert not np.allclose(filter_bank(canvas)[30:70, 30:80], features[30:70, 30:80], atol=1e-3)
    nothing_missing, all_missing = tile.copy(), canvas[:5, :5]
    assert edge_filled(nothing_missing) is nothing_missing and edge_filled(all_missing) is all_missing
