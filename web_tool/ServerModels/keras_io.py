"""Keras model files: find them, load them, and split a network into body and head.

`--model_fn` may name a Keras 3 `.keras` file, a `.h5` file (Keras 2 or 3), or the seed's
`<name>.json` + `<name>_weights.h5` pair (Keras 2 or 3), with or without its extension. Every
failure is a ModelError that names the file and says why: missing, damaged, or unsuitable.

A servable network has one image input (H x W x bands, any size or a fixed one) and one per-pixel
output whose last weighted layer is a 1x1 convolution (or Dense), optionally followed by a
BatchNormalization (folded into it) and a softmax. It is split at that layer: the *body* maps an
image to per-pixel features, the *head* is the layer's kernel (F x C) and bias (C) as numpy arrays.
A network with a fixed input size gets a body that runs it tile by tile at that size.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Self

import h5py
import keras
import numpy as np
import tensorflow as tf

from web_tool.errors import ModelError

MODEL_SUFFIXES = (".keras", ".h5")
#: layers that may follow the head: they keep the class order and the arg-max
PASSTHROUGH_ACTIVATIONS = {"softmax", "linear"}
#: how much of a library's error message a ModelError quotes (Keras can dump whole configs)
MAX_REASON_CHARS = 300


def resolve_model_path(model_fn: str | os.PathLike[str]) -> tuple[Path, Path | None]:
    """(model file, weights file or None) for `model_fn`, with or without its extension.

    Accepts a `.keras` or `.h5` file, or the seed's `<name>.json` + `<name>_weights.h5` pair.
    """
    base = Path(model_fn)
    if base.suffix == ".json":
        base = base.with_suffix("")
    if base.is_file() and base.suffix in MODEL_SUFFIXES:
        return base, None
    for suffix in MODEL_SUFFIXES:
        if base.with_name(base.name + suffix).is_file():
            return base.with_name(base.name + suffix), None
    json_path, weights = base.with_name(base.name + ".json"), base.with_name(base.name + "_weights.h5")
    if json_path.is_file() and weights.is_file():
        return json_path, weights
    if json_path.is_file():
        raise ModelError(
            f"found the architecture {json_path} but not its weights {weights.name} beside it: the seed's"
            " format is a pair, <name>.json + <name>_weights.h5"
        )
    hint = " (for the demo model run `make demo`)" if base.name == "demo_model" else ""
    raise ModelError(
        f"no model found at {str(model_fn)!r}: expected {base}.keras, {base}.h5, or"
        f" {base}.json with {base}_weights.h5{hint}"
    )


def reason(exc: BaseException) -> str:
    """The first line of a library's error message, cut short."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + " …"


def check_container(path: Path) -> None:
    """ModelError when `path` is not the kind of file its name says (a damaged or truncated copy)."""
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(
                f"{path} is damaged: a .keras file is a zip archive and this one cannot be opened ({exc});"
                " copy or save it again"
            ) from None
        if bad is not None:
            raise ModelError(
                f"{path} is damaged: its member {bad!r} fails its checksum; copy or save it again"
            )
    elif path.suffix == ".h5":
        try:
            with h5py.File(path, "r"):
                pass
        except OSError as exc:
            raise ModelError(
                f"{path} is damaged or not an HDF5 file ({reason(exc)}); copy or save it again"
            ) from None


def model_from_json_file(path: Path) -> keras.Model:
    """A network from a Keras 2 or Keras 3 architecture JSON (`model.to_json()`)."""
    from keras.src.legacy.saving import saving_utils

    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not a readable JSON file ({reason(exc)})") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelError(f"{path} is JSON but not a Keras architecture (no 'class_name' at its top)")
    try:
        return saving_utils.model_from_config(config)
    except Exception as exc:
        raise ModelError(f"Keras cannot build the architecture in {path}: {reason(exc)}") from None


def load_keras_model(model_fn: str | os.PathLike[str]) -> keras.Model:
    """The network at `model_fn`; ModelError saying which file is missing, damaged or unsuitable."""
    path, weights = resolve_model_path(model_fn)
    if weights is None:
        check_container(path)
        try:
            return keras.saving.load_model(path, compile=False)
        except Exception as exc:
            raise ModelError(f"Keras cannot load {path}: {reason(exc)}") from None
    model = model_from_json_file(path)
    check_container(weights)
    try:
        model.load_weights(weights)
    except Exception as exc:
        raise ModelError(
            f"the weights in {weights.name} do not fit the architecture in {path.name}: {reason(exc)}"
        ) from None
    return model


# --------------------------------------------------------------------------------------------
# body and head


def has_kernel(layer: keras.layers.Layer) -> bool:
    return any(w.path.rsplit("/", 1)[-1] == "kernel" for w in layer.weights)


def producer(tensor: keras.KerasTensor) -> keras.layers.Layer:
    """The layer that made a symbolic tensor."""
    layer: keras.layers.Layer = tensor._keras_history.operation
    return layer


def head_and_tail(model: keras.Model) -> tuple[keras.layers.Layer, list[keras.layers.Layer]]:
    """(the head: the last layer with a kernel, the layers after it up to the output, in order)."""
    tail: list[keras.layers.Layer] = []
    tensor = model.outputs[0]
    while True:
        layer = producer(tensor)
        if isinstance(layer, keras.layers.InputLayer):
            raise ModelError("the model has no weighted layer before its output, so nothing to predict with")
        if has_kernel(layer):
            return layer, tail[::-1]
        if isinstance(layer.input, list | tuple):
            raise ModelError(
                f"the model's layer {layer.name!r} after its last weighted layer merges several tensors:"
                " the server needs a single 1x1 layer before the softmax"
            )
        tail.append(layer)
        tensor = layer.input


def head_weights(head: keras.layers.Layer) -> tuple[np.ndarray, np.ndarray]:
    """(kernel F x C, bias C) of a 1x1 convolution or a Dense layer."""
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(w.numpy()) for w in head.weights}
    kernel = weights["kernel"]
    if kernel.ndim == 4:
        if kernel.shape[:2] != (1, 1):
            raise ModelError(
                f"the model's last weighted layer {head.name!r} is a {kernel.shape[0]}x{kernel.shape[1]}"
                " convolution: the server needs a 1x1 convolution before the softmax"
            )
        kernel = kernel[0, 0]
    elif kernel.ndim != 2:
        raise ModelError(f"the model's last weighted layer {head.name!r} is not a 1x1 convolution or Dense")
    bias = weights.get("bias", np.zeros(kernel.shape[1], np.float32))
    return kernel.astype(np.float32), bias.astype(np.float32)


def fold_batchnorm(
    kernel: np.ndarray, bias: np.ndarray, bn: keras.layers.BatchNormalization
) -> tuple[np.ndarray, np.ndarray]:
    """The head that equals `kernel`, `bias` followed by the BatchNormalization `bn` at inference."""
    if bn.axis not in (-1, 3, [-1], [3]):
        raise ModelError(
            f"the model's final BatchNormalization {bn.name!r} normalises axis {bn.axis}, not classes"
        )
    c = kernel.shape[1]
    gamma = np.asarray(bn.gamma.numpy()) if bn.gamma is not None else np.ones(c, np.float32)
    beta = np.asarray(bn.beta.numpy()) if bn.beta is not None else np.zeros(c, np.float32)
    mean, var = np.asarray(bn.moving_mean.numpy()), np.asarray(bn.moving_variance.numpy())
    scale = gamma / np.sqrt(var + bn.epsilon)
    return (kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def fold_tail(
    kernel: np.ndarray, bias: np.ndarray, tail: list[keras.layers.Layer]
) -> tuple[np.ndarray, np.ndarray]:
    """The head with the layers after it folded in; ModelError for a layer that cannot be."""
    for layer in tail:
        if isinstance(layer, keras.layers.BatchNormalization):
            kernel, bias = fold_batchnorm(kernel, bias, layer)
            continue
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if isinstance(layer, keras.layers.Softmax) or (
            isinstance(layer, keras.layers.Activation) and activation in PASSTHROUGH_ACTIVATIONS
        ):
            continue
        raise ModelError(
            f"the model's layer {layer.name!r} ({type(layer).__name__}) comes after its 1x1 layer: the"
            " server needs that layer to be followed by nothing but BatchNormalization and a softmax"
        )
    return kernel, bias


def check_io(model: keras.Model) -> tuple[int | None, int | None, int]:
    """(fixed input height or None, width or None, bands) of a one-image-in, one-map-out network."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"the model has {len(model.inputs)} input(s) and {len(model.outputs)} output(s): the server"
            " feeds one image and reads one class map"
        )
    shape_in, shape_out = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(shape_in) != 4 or shape_in[-1] is None:
        raise ModelError(f"the model's input has shape {shape_in}: the server needs (None, H, W, bands)")
    if len(shape_out) != 4:
        raise ModelError(
            f"the model's output has shape {shape_out}, not one class per pixel (None, H, W, classes):"
            " it is not a segmentation network"
        )
    if shape_in[1:3] != shape_out[1:3]:
        raise ModelError(
            f"the model's output {shape_out[1:3]} is not the size of its input {shape_in[1:3]}: the server"
            " needs one prediction per input pixel"
        )
    return shape_in[1], shape_in[2], int(shape_in[-1])


def split_head(model: keras.Model) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """(body model → features, head kernel FxC, head bias C) from a network ending in a 1x1 layer.

    A BatchNormalization after that layer is folded into the head; a network with a fixed input
    size gets a body that takes any size (it runs the network tile by tile at its size).
    """
    height, width, _ = check_io(model)
    head, tail = head_and_tail(model)
    activation = getattr(getattr(head, "activation", None), "__name__", "linear")
    if activation not in PASSTHROUGH_ACTIVATIONS:
        raise ModelError(
            f"the model's last weighted layer {head.name!r} applies {activation!r}: the server needs its"
            " logits (a linear 1x1 layer, then softmax)"
        )
    kernel, bias = fold_tail(*head_weights(head), tail)
    body = keras.Model(model.inputs, head.input)
    if height is not None or width is not None:
        body = tiled_body(body, height, width)
    return body, kernel, bias


# --------------------------------------------------------------------------------------------
# fixed input sizes


@keras.saving.register_keras_serializable(package="landcover")
class FixedSizeTiles(keras.layers.Layer):
    """Runs `network` (which takes tiles of exactly `size` = (h, w) pixels) over images of any size.

    The image is cut into tiles of that size that overlap by twice `margin`; each output pixel comes
    from the centre of one tile (at least `margin` px from its edge), so there are no seams. Edges of
    the image are padded with zeros to fill the last tiles.
    """

    def __init__(self, network: keras.Model, size: tuple[int, int], margin: tuple[int, int], **kwargs: Any):
        super().__init__(**kwargs)
        self.network, self.size, self.margin = network, tuple(size), tuple(margin)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        (sh, sw), (mh, mw) = self.size, self.margin
        step_h, step_w = sh - 2 * mh, sw - 2 * mw
        shape = tf.shape(x)
        n, h, w, bands = shape[0], shape[1], shape[2], x.shape[-1]
        nh, nw = (h + step_h - 1) // step_h, (w + step_w - 1) // step_w
        pad = [[0, 0], [mh, mh + nh * step_h - h], [mw, mw + nw * step_w - w], [0, 0]]
        padded = tf.pad(x, pad)
        tiles = tf.image.extract_patches(
            padded, [1, sh, sw, 1], [1, step_h, step_w, 1], [1, 1, 1, 1], "VALID"
        )
        out = self.network(tf.reshape(tiles, [-1, sh, sw, bands]), training=False)
        out = out[:, mh : mh + step_h, mw : mw + step_w, :]
        features = out.shape[-1]
        out = tf.reshape(out, [n, nh, nw, step_h, step_w, features])
        out = tf.reshape(tf.transpose(out, [0, 1, 3, 2, 4, 5]), [n, nh * step_h, nw * step_w, features])
        return out[:, :h, :w, :]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*input_shape[:3], self.network.outputs[0].shape[-1])

    def get_config(self) -> dict[str, Any]:
        network = keras.saving.serialize_keras_object(self.network)
        return {**super().get_config(), "network": network, "size": self.size, "margin": self.margin}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Self:
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def tiled_body(body: keras.Model, height: int | None, width: int | None) -> keras.Model:
    """A body that takes any image size, running `body` (fixed height and/or width) in tiles."""
    if height is None or width is None:
        raise ModelError(
            f"the model's input is fixed on one side only ({height} x {width}): give it a fixed size"
            " on both sides, or on neither"
        )
    margin = (height // 8, width // 8)
    if min(height, width) < 16:
        raise ModelError(
            f"the model's fixed input size {height} x {width} is too small to tile (16 px at least)"
        )
    bands = int(body.inputs[0].shape[-1])
    image = keras.Input((None, None, bands), dtype="float32", name="image")
    features = FixedSizeTiles(body, (height, width), margin, name=f"tiles_{height}x{width}")(image)
    return keras.Model(image, features, name=f"{body.name}_tiled")
