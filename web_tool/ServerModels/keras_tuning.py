"""Cutting a Keras body for `last_k_layers`: which layers are tuned, the frozen part before them,
and how far a tuned layer's output can see."""

from __future__ import annotations

import keras
import numpy as np

from web_tool.errors import ModelError
from web_tool.ServerModels.tiling import run_tiled


def weighted_layers(body) -> list:
    """The body's layers with a kernel (convolutions, dense), input to output."""
    return [layer for layer in body.layers if any("kernel" in w.path for w in layer.weights)]


def split_body(body, k: int):
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


def split_body_prefix(body, first_tuned: str):
    """The part of `body` before its layer named `first_tuned` (as split_body cuts it)."""
    return keras.Model(body.inputs[0], body.get_layer(first_tuned).input)


def receptive_radius(tail) -> int:
    """How many pixels away a tail output can see (the sum of its kernels' half-sizes)."""
    radius = 0
    for layer in tail.layers:
        size = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if size:
            radius += (max(size) - 1) // 2
    return radius


def run_network(model, network, image: np.ndarray) -> np.ndarray:
    """HxWxB uint8 image → HxWxC output of `network` (a Keras model on the body's input), run the
    way the model runs its body: imagery scaled to [0, 1], tiled, padded to its size multiple."""

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(network(batch.astype(np.float32) / 255.0, training=False), np.float32)]

    return run_tiled(run, image, model.window, model.overlap, model.multiple)[0]
