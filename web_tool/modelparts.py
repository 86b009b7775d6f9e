"""Derive a session's model from the base model without touching the base: swap or grow the head,
copy the body for layers that are tuned, and turn a model into the state a checkpoint keeps.

Models are never changed in place once served: every function here returns a new model
(`ServerModel.clone()` shares the body and copies the head).
"""

from __future__ import annotations

import numpy as np

from web_tool.errors import ModelError
from web_tool.ServerModels.base import ServerModel
from web_tool.store import ModelState

#: a new class starts this far (in logits) below the mean of the others: never predicted untrained
NEW_CLASS_OFFSET = 2.0


def with_head(model: ServerModel, kernel: np.ndarray, bias: np.ndarray, classes: list[dict] | None = None):
    """A copy of `model` with head (kernel F x C, bias C) and, optionally, a new class list."""
    classes = classes if classes is not None else model.classes
    if kernel.shape[1] != len(classes) or bias.shape != (len(classes),):
        raise ModelError(f"head has {kernel.shape[1]} outputs but there are {len(classes)} classes")
    other = model.clone()
    other.kernel, other.bias = kernel.astype(np.float32), bias.astype(np.float32)
    other.classes = [dict(c) for c in classes]
    return other


def new_class_column(kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, float]:
    """Head weights for an extra class: the mean of the others, pushed down by NEW_CLASS_OFFSET."""
    return kernel.mean(axis=1), float(bias.mean() - NEW_CLASS_OFFSET)


def grow_head(model: ServerModel, new_class: dict):
    """A copy of `model` with one more output (class `new_class`), initialised by new_class_column."""
    column, b = new_class_column(model.kernel, model.bias)
    kernel = np.concatenate([model.kernel, column[:, None]], axis=1)
    bias = np.append(model.bias, b)
    return with_head(model, kernel, bias, [*model.classes, dict(new_class)])


def reference_head(base: ServerModel, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The base head widened to `n_classes` (extra columns as grow_head makes them): the L2 anchor."""
    kernel, bias = base.kernel, base.bias
    while kernel.shape[1] < n_classes:
        column, b = new_class_column(base.kernel, base.bias)
        kernel, bias = np.concatenate([kernel, column[:, None]], axis=1), np.append(bias, b)
    return kernel.astype(np.float32), bias.astype(np.float32)


def weighted_layers(body) -> list:
    """The body's layers with a kernel (convolutions, dense), input to output."""
    return [layer for layer in body.layers if any("kernel" in w.path for w in layer.weights)]


def split_body(body, k: int):
    """(frozen prefix, tuned tail, tuned layers) of a body whose last `k - 1` weighted layers are tuned
    (the head is the k-th). The tail must hang off one tensor (no skip connection may reach into
    it); ModelError otherwise, saying how large k may be."""
    import keras

    layers = weighted_layers(body)
    if not 2 <= k <= len(layers) + 1:
        raise ModelError(f"k must be between 2 and {len(layers) + 1} for this network, got {k}")
    tuned = layers[len(layers) - (k - 1) :]
    try:
        tail = keras.Model(tuned[0].input, body.output)
    except ValueError:
        raise ModelError(
            f"cannot tune the last {k} layers: a skip connection enters after {tuned[0].name!r};"
            " use a smaller k"
        ) from None
    return split_body_prefix(body, tuned[0].name), tail, tuned


def split_body_prefix(body, first_tuned: str):
    """The part of `body` before its layer named `first_tuned` (as split_body cuts it)."""
    import keras

    return keras.Model(body.inputs[0], body.get_layer(first_tuned).input)


def receptive_radius(tail) -> int:
    """How many pixels away a tail output can see (the sum of its kernels' half-sizes)."""
    radius = 0
    for layer in tail.layers:
        size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if size:
            radius += (max(size) - 1) // 2
    return radius


def run_network(model: ServerModel, network, image: np.ndarray) -> np.ndarray:
    """HxWxB uint8 image → HxWxC output of `network` (a Keras model on the body's input), run the
    way the model runs its body: imagery scaled to [0, 1], tiled, padded to its size multiple."""
    from web_tool.ServerModels.tiling import run_tiled

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(network(batch.astype(np.float32) / 255.0, training=False))]

    return run_tiled(run, image, model.window, model.overlap, model.multiple)[0]


def copy_body(body):
    """An independent copy of a Keras body (same architecture and weights)."""
    import keras

    other = keras.models.clone_model(body)
    other.set_weights(body.get_weights())
    other.trainable = False
    return other


def with_body(model: ServerModel, body):
    """A copy of `model` whose feature extractor is `body` (a Keras model like `model.body`)."""
    import tensorflow as tf

    other = model.clone()
    other.body = body
    # KerasSegmentationModel runs its body through this compiled function: rebind it to `body`
    other._body_fn = tf.function(
        lambda x: body(x, training=False),
        input_signature=[tf.TensorSpec([None, None, None, model.n_bands], tf.float32)],
        reduce_retracing=True,
    )
    return other


def state_of(model: ServerModel, base: ServerModel) -> ModelState:
    """What a checkpoint keeps of `model`: head and classes, and body weights if it has its own body."""
    body = None if model.body is base.body else [np.asarray(w) for w in model.body.get_weights()]
    return ModelState(model.kernel.copy(), model.bias.copy(), [dict(c) for c in model.classes], body)


def from_state(base: ServerModel, state: ModelState) -> ServerModel:
    """The model a checkpoint describes, built on `base` (which must have the same architecture)."""
    model = base
    if state.body_weights is not None:
        body = copy_body(base.body)
        if len(body.get_weights()) != len(state.body_weights):
            raise ModelError("the checkpoint's body weights do not fit the served model's architecture")
        body.set_weights(state.body_weights)
        model = with_body(base, body)
    if state.kernel.shape[0] != base.kernel.shape[0]:
        raise ModelError(
            f"the checkpoint's head expects {state.kernel.shape[0]} features, the served model gives"
            f" {base.kernel.shape[0]}: it was saved with another model"
        )
    return with_head(model, state.kernel, state.bias, state.classes)
