"""`last_k_layers` on a Keras network: which layers are tuned, the frozen part before them, how far
a tuned layer's output can see, and the tuning itself. finetune.py calls `check`, `cut` and `tune`
with any ServerModel; only here is it known to be a Keras network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import keras
import numpy as np

from web_tool.errors import IncompatibleError, ModelError
from web_tool.ServerModels.base import ServerModel, edge_filled
from web_tool.ServerModels.heads import LinearHead
from web_tool.ServerModels.keras_model import KerasSegmentationModel, copy_body
from web_tool.ServerModels.tiling import run_tiled

if TYPE_CHECKING:
    import tensorflow as tf


def keras_network(model: ServerModel) -> KerasSegmentationModel:
    """`model` as the Keras network last_k_layers tunes; ModelError for any other kind of model."""
    if not isinstance(model, KerasSegmentationModel):
        raise ModelError(
            f"last_k_layers tunes a network's layers; model {model.name!r} has none:"
            " use --fine_tune last_layer"
        )
    return model


def check(model: ServerModel, k: int) -> None:
    """ModelError unless last_k_layers can tune the last `k` layers of `model` (at start-up)."""
    split_body(keras_network(model).body, k)


def weighted_layers(body: keras.Model) -> list[keras.layers.Layer]:
    """The body's layers with a kernel (convolutions, dense), input to output."""
    return [layer for layer in body.layers if any("kernel" in w.path for w in layer.weights)]


def split_body(body: keras.Model, k: int) -> tuple[keras.Model, keras.Model, list[keras.layers.Layer]]:
    """(frozen prefix, tuned tail, tuned layers) of a body whose last `k - 1` weighted layers are tuned
    (the head is the k-th). The tail must hang off one tensor (no skip connection may reach into
    it); ModelError otherwise, saying how large k may be."""
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


def split_body_prefix(body: keras.Model, first_tuned: str) -> keras.Model:
    """The part of `body` before its layer named `first_tuned` (as split_body cuts it)."""
    return keras.Model(body.inputs[0], body.get_layer(first_tuned).input)


def receptive_radius(tail: keras.Model) -> int:
    """How many pixels away a tail output can see (the sum of its kernels' half-sizes)."""
    radius = 0
    for layer in tail.layers:
        size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if size:
            radius += (max(size) - 1) // 2
    return radius


def run_network(model: KerasSegmentationModel, network: keras.Model, image: np.ndarray) -> np.ndarray:
    """HxWxB uint8 image → HxWxC output of `network` (a Keras model on the body's input), run the
    way the model runs its body: imagery scaled to [0, 1], tiled, padded to its size multiple."""

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(network(batch.astype(np.float32) / 255.0, training=False), np.float32)]

    return run_tiled(run, edge_filled(image), model.window, model.overlap, model.multiple)[0]


@dataclass
class Tail:
    """A body cut for last_k_layers: the model and body it is cut from, the tuned layers (and the
    Keras model they form), how to get their input, and its cache key."""

    model: KerasSegmentationModel
    body: keras.Model
    tail: keras.Model
    tuned: list[keras.layers.Layer]
    radius: int
    extract: Callable[[np.ndarray], np.ndarray]
    key: object

    def centre(self, patches: tf.Tensor) -> tf.Tensor:
        """Tail output at the centre of each (2r+1)^2 patch of frozen-part outputs."""
        return self.tail(patches, training=False)[:, self.radius, self.radius]


def cut(model: ServerModel, base: ServerModel, k: int, own_copy: bool = False) -> Tail:
    """`model`'s body (or, `own_copy`, a copy of it to tune) cut before its last `k - 1` weighted
    layers; the frozen part's output is cached (`key`) when it is the base model's."""
    net, base_body = keras_network(model), keras_network(base).body
    body = copy_body(net.body) if own_copy else net.body
    prefix, tail, tuned = split_body(body, k)
    frozen_as_base = body is base_body or _same_weights(
        prefix.get_weights(), _base_prefix(base_body, tuned[0].name)
    )
    return Tail(
        net,
        body,
        tail,
        tuned,
        receptive_radius(tail),
        lambda image: run_network(net, prefix, image),
        (tuned[0].name, "frozen") if frozen_as_base else None,
    )


def tune(
    part: Tail, patches: np.ndarray, y: np.ndarray, w: np.ndarray, steps: int, lr: float, tail_l2: float
) -> tuple[KerasSegmentationModel, float]:
    """Adam on the tuned layers and the network's head together, from where they are, with L2 toward
    there; `w` are the samples' weights (summing to 1). → (the model with both tuned, final loss)."""
    import tensorflow as tf

    head = part.model.head
    if not isinstance(head, LinearHead):
        raise IncompatibleError(
            "last_k_layers tunes the network's own last layer, but this session's model was learnt with"
            " another strategy: reset the session (or load a checkpoint saved with last_k_layers)"
        )
    for layer in part.tuned:
        layer.trainable = True
    kernel, bias = tf.Variable(head.kernel), tf.Variable(head.bias)
    variables = [v for layer in part.tuned for v in layer.trainable_weights] + [kernel, bias]
    start = [tf.constant(v.numpy()) for v in variables]
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(variables)
    x = tf.constant(patches, tf.float32)
    labels, weights = tf.constant(y, tf.int32), tf.constant(w, tf.float32)

    @tf.function  # type: ignore[untyped-decorator]  # TensorFlow ships no types
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.matmul(tf.cast(part.centre(x), tf.float32), kernel) + bias  # a bf16 tail too
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            drift = tf.add_n([tf.reduce_sum(tf.square(v - s)) for v, s in zip(variables, start, strict=True)])
            loss = tf.reduce_sum(ce * weights) + tail_l2 * drift
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    loss = 0.0
    for _ in range(steps):
        loss = step()
    for layer in part.tuned:
        layer.trainable = False
    tuned_head = LinearHead(kernel.numpy(), bias.numpy())
    return part.model.with_body(part.body).with_head(tuned_head, learnt=True), float(loss)


@lru_cache(maxsize=4)
def _base_prefix(base_body: keras.Model, first_tuned: str) -> list[np.ndarray]:
    """The weights of the base body's frozen part (they never change)."""
    weights: list[np.ndarray] = split_body_prefix(base_body, first_tuned).get_weights()
    return weights


def _same_weights(mine: list[np.ndarray], theirs: list[np.ndarray]) -> bool:
    return len(mine) == len(theirs) and all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))
