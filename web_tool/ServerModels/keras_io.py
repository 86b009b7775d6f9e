"""Keras model files: find them, load them, and split a network into body and head.

`--model_fn` may name a Keras 3 `.keras` file, a `.h5` file, or the seed's `<name>.json` +
`<name>_weights.h5` pair, with or without its extension. The network is split at its last 1x1
layer: the *body* maps an image to per-pixel features, the *head* is that layer's kernel (F x C)
and bias (C) as numpy arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from web_tool.errors import ModelError  # noqa: E402

MODEL_SUFFIXES = (".keras", ".h5")


def resolve_model_path(model_fn: str | os.PathLike) -> tuple[Path, Path | None]:
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
    raise ModelError(
        f"no model found at {str(model_fn)!r}: expected {base}.keras, {base}.h5, or"
        f" {base}.json with {base}_weights.h5 (for the demo model run `make demo`)"
    )


def load_keras_model(model_fn: str | os.PathLike) -> keras.Model:
    path, weights = resolve_model_path(model_fn)
    try:
        if weights is None:
            return keras.saving.load_model(path, compile=False)
        model = keras.models.model_from_json(path.read_text())
        model.load_weights(weights)
        return model
    except Exception as exc:
        raise ModelError(f"cannot load Keras model from {path}: {exc}") from None


def split_head(model: keras.Model) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """(body model → features, head kernel FxC, head bias C) from a network ending in a 1x1 layer."""
    layers = [layer for layer in model.layers if layer.weights]
    head = next((layer for layer in model.layers if layer.name == "logits"), layers[-1])
    kernel, bias = head.get_weights()[:2]
    if kernel.ndim == 4:
        if kernel.shape[:2] != (1, 1):
            raise ModelError(f"the model's last layer {head.name!r} is not a 1x1 convolution")
        kernel = kernel[0, 0]
    body = keras.Model(model.inputs, head.input)
    return body, kernel.astype(np.float32), bias.astype(np.float32)
