"""Model files as users have them: the seed's Keras-2 JSON + weights, BatchNorm-last and fixed-size
networks, and damaged, missing or unsuitable files, each with a message that says which and why."""

import json
import zipfile

import h5py
import numpy as np
import pytest

from web_tool.errors import ModelError
from web_tool.ServerModels.keras_io import load_keras_model, resolve_model_path, split_head
from web_tool.ServerModels.keras_model import KerasSegmentationModel

CLASSES = [{"name": n, "color": "#000000"} for n in "abcd"]


# --- the seed's Keras 2 pair, written as Keras 2.1 wrote it ----------------------------------


def keras2_conv(name: str, filters: int, size: int, inbound: str, activation: str = "linear") -> dict:
    config = {
        "name": name,
        "trainable": True,
        "filters": filters,
        "kernel_size": [size, size],
        "strides": [1, 1],
        "padding": "same",
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "activation": activation,
        "use_bias": True,
        "kernel_initializer": {
            "class_name": "VarianceScaling",
            "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None},
        },
        "bias_initializer": {"class_name": "Zeros", "config": {}},
        "kernel_regularizer": None,
        "bias_regularizer": None,
        "activity_regularizer": None,
        "kernel_constraint": None,
        "bias_constraint": None,
    }
    return {"name": name, "class_name": "Conv2D", "config": config, "inbound_nodes": [[[inbound, 0, 0, {}]]]}


def write_keras2_pair(folder, name="seed", bands=4, classes=4, seed=0):
    """`<name>.json` (Keras 2.1.6 `model.to_json()`) + `<name>_weights.h5` (Keras 2 HDF5 weights);
    returns the weights as {layer: [kernel, bias]}."""
    layers = [
        {
            "name": "input_1",
            "class_name": "InputLayer",
            "inbound_nodes": [],
            "config": {
                "batch_input_shape": [None, None, None, bands],
                "dtype": "float32",
                "sparse": False,
                "name": "input_1",
            },
        },
        keras2_conv("conv2d_1", 8, 3, "input_1", "relu"),
        keras2_conv("conv2d_2", classes, 1, "conv2d_1"),
        {
            "name": "activation_1",
            "class_name": "Activation",
            "inbound_nodes": [[["conv2d_2", 0, 0, {}]]],
            "config": {"name": "activation_1", "trainable": True, "activation": "softmax"},
        },
    ]
    config = {
        "class_name": "Model",
        "keras_version": "2.1.6",
        "backend": "tensorflow",
        "config": {
            "name": "model_1",
            "layers": layers,
            "input_layers": [["input_1", 0, 0]],
            "output_layers": [["activation_1", 0, 0]],
        },
    }
    (folder / f"{name}.json").write_text(json.dumps(config))
    rng = np.random.default_rng(seed)
    weights = {
        "conv2d_1": [rng.normal(0, 0.3, (3, 3, bands, 8)).astype("f4"), rng.normal(0, 0.1, 8).astype("f4")],
        "conv2d_2": [
            rng.normal(0, 1, (1, 1, 8, classes)).astype("f4"),
            rng.normal(0, 1, classes).astype("f4"),
        ],
    }
    names = [layer["name"] for layer in layers]
    with h5py.File(folder / f"{name}_weights.h5", "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.1.6"
        for layer in names:
            group = f.create_group(layer)
            arrays = weights.get(layer, [])
            group.attrs["weight_names"] = [
                f"{layer}/{w}:0".encode() for w in ("kernel", "bias")[: len(arrays)]
            ]
            for w, array in zip(("kernel", "bias"), arrays, strict=False):
                group.create_dataset(f"{layer}/{w}:0", data=array)
    return weights


def same_network_in_keras3(weights, bands=4, fixed=None):
    import keras

    inp = keras.Input((fixed, fixed, bands))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2d_1")(inp)
    x = keras.layers.Conv2D(weights["conv2d_2"][1].size, 1, name="conv2d_2")(x)
    net = keras.Model(inp, keras.layers.Activation("softmax")(x))
    for name, arrays in weights.items():
        net.get_layer(name).set_weights(arrays)
    return net


def test_the_seeds_keras2_json_and_weights_load_with_their_weights(tmp_path):
    weights = write_keras2_pair(tmp_path)
    assert resolve_model_path(tmp_path / "seed.json") == (
        tmp_path / "seed.json",
        tmp_path / "seed_weights.h5",
    )
    network = load_keras_model(tmp_path / "seed")
    np.testing.assert_array_equal(network.get_layer("conv2d_2").get_weights()[0], weights["conv2d_2"][0])
    img = np.random.default_rng(1).integers(0, 256, (48, 64, 4)).astype(np.uint8)
    served = KerasSegmentationModel(tmp_path / "seed", CLASSES).predict(img)
    expected = same_network_in_keras3(weights).predict(img[None] / np.float32(255), verbose=0)[0]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_batchnorm_after_the_last_1x1_layer_is_folded_into_the_head(tmp_path):
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(5, 1, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    net = keras.Model(inp, keras.layers.Softmax()(x))
    bn = net.layers[-2]
    bn.set_weights([np.linspace(0.5, 2, 5), np.linspace(-1, 1, 5), np.arange(5) * 0.3, np.arange(1, 6) * 0.5])
    net.save(tmp_path / "bn_last.keras")
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 4)).astype(np.uint8)
    served = KerasSegmentationModel(tmp_path / "bn_last.keras", CLASSES + CLASSES[:1]).predict(img)
    expected = net.predict(img[None] / np.float32(255), verbose=0)[0]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_fixed_size_network_is_tiled_at_its_size_without_seams(tmp_path):
    weights = write_keras2_pair(tmp_path, seed=4)
    fixed = same_network_in_keras3(weights, fixed=32)
    fixed.save(tmp_path / "fixed32.keras")
    body, _, _ = split_head(load_keras_model(tmp_path / "fixed32.keras"))
    assert body.inputs[0].shape[1:3] == (None, None)
    img = np.random.default_rng(2).integers(0, 256, (160, 96, 4)).astype(np.uint8)
    served = KerasSegmentationModel(tmp_path / "fixed32.keras", CLASSES).predict(img)
    # a 3x3 network sees one pixel around: tiles of 32 px with 4 px margins give the same as one pass
    expected = same_network_in_keras3(weights).predict(img[None] / np.float32(255), verbose=0)[0]
    np.testing.assert_allclose(served, expected, atol=1e-5)


def test_a_tiled_body_can_be_copied_for_fine_tuning(tmp_path):
    from web_tool.ServerModels.keras_model import copy_body

    weights = write_keras2_pair(tmp_path, seed=5)
    same_network_in_keras3(weights, fixed=32).save(tmp_path / "fixed.keras")
    body, _, _ = split_head(load_keras_model(tmp_path / "fixed.keras"))
    x = np.random.default_rng(0).random((1, 70, 50, 4)).astype(np.float32)
    np.testing.assert_allclose(copy_body(body)(x), body(x), atol=1e-6)


# --- damaged, missing and unsuitable files ---------------------------------------------------


def test_a_truncated_keras_file_is_called_damaged_not_missing(tiny_model_path, tmp_path):
    data = tiny_model_path.read_bytes()
    (tmp_path / "m.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"m\.keras is damaged") as info:
        load_keras_model(tmp_path / "m.keras")
    assert "not found" not in str(info.value).lower()


def test_a_keras_file_with_a_bad_member_is_damaged(tiny_model_path, tmp_path):
    with zipfile.ZipFile(tiny_model_path) as src, zipfile.ZipFile(tmp_path / "m.keras", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
    raw = bytearray((tmp_path / "m.keras").read_bytes())
    at = raw.index(b"config.json") + 40  # inside the first member's (stored) data
    raw[at] ^= 0xFF
    (tmp_path / "m.keras").write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="damaged"):
        load_keras_model(tmp_path / "m")


def test_a_damaged_weights_file_names_the_weights(tmp_path):
    write_keras2_pair(tmp_path)
    (tmp_path / "seed_weights.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelError, match=r"seed_weights\.h5 is damaged"):
        load_keras_model(tmp_path / "seed")


def test_architecture_without_weights_names_the_missing_file(tmp_path):
    write_keras2_pair(tmp_path)
    (tmp_path / "seed_weights.h5").unlink()
    with pytest.raises(ModelError, match=r"not its weights seed_weights\.h5"):
        load_keras_model(tmp_path / "seed")


def test_weights_of_another_architecture_are_refused_briefly(tmp_path):
    (tmp_path / "a").mkdir()
    write_keras2_pair(tmp_path / "a", classes=4)
    write_keras2_pair(tmp_path, classes=6)
    (tmp_path / "seed_weights.h5").write_bytes((tmp_path / "a" / "seed_weights.h5").read_bytes())
    with pytest.raises(ModelError, match="do not fit the architecture in seed.json") as info:
        load_keras_model(tmp_path / "seed")
    assert len(str(info.value)) < 600  # not a config dump


def test_a_json_that_is_not_an_architecture_is_named(tmp_path):
    (tmp_path / "m.json").write_text('{"layers": []}')
    (tmp_path / "m_weights.h5").write_bytes(b"")
    with pytest.raises(ModelError, match="not a Keras architecture"):
        load_keras_model(tmp_path / "m")
    (tmp_path / "m.json").write_text("{oops")
    with pytest.raises(ModelError, match="not a readable JSON"):
        load_keras_model(tmp_path / "m")


def test_missing_model_names_what_was_looked_for(tmp_path):
    with pytest.raises(ModelError, match=r"nothing\.keras, .*nothing\.h5, or .*nothing\.json"):
        resolve_model_path(tmp_path / "nothing")


def unsuitable(kind: str):
    import keras

    inp = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    if kind == "3x3 head":
        return keras.Model(inp, keras.layers.Conv2D(4, 3, padding="same", activation="softmax")(x))
    if kind == "relu head":
        return keras.Model(inp, keras.layers.Conv2D(4, 1, activation="relu")(x))
    if kind == "classifier":
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))
    if kind == "layer after head":
        x = keras.layers.Conv2D(4, 1)(x)
        return keras.Model(inp, keras.layers.UpSampling2D(1)(x))
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("3x3 head", "is a 3x3 convolution: the server needs a 1x1"),
        ("relu head", "applies 'relu'"),
        ("classifier", "not a segmentation network"),
        ("layer after head", "UpSampling2D.*comes after its 1x1 layer"),
    ],
)
def test_unsuitable_networks_are_refused_saying_why(kind, message):
    with pytest.raises(ModelError, match=message):
        split_head(unsuitable(kind))
