"""ServerModels: the registry, finding model files the seed's ways, and real Keras inference."""

import numpy as np
import pytest

from web_tool.errors import LandCoverError, ModelError
from web_tool.ServerModels import get_model, list_models
from web_tool.ServerModels.heads import LinearHead
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
