"""A Keras (TensorFlow backend) segmentation network served as body + head.

The network is split at its last 1x1 layer: the *body* maps an image to per-pixel features,
the *head* (a kernel F x C and a bias C, kept as numpy) maps features to class logits. Fine-tuning
the last layer, or growing a class, only swaps the head; sessions share the body.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from web_tool.errors import ModelError  # noqa: E402
from web_tool.ServerModels.base import ServerModel  # noqa: E402
from web_tool.ServerModels.keras_io import load_keras_model, split_head  # noqa: E402
from web_tool.ServerModels.tiling import run_tiled  # noqa: E402


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class KerasSegmentationModel(ServerModel):
    """A Keras U-Net (or any fully convolutional net ending in a 1x1 layer) with a swappable head."""

    padding = 32
    window = 1536  # a padded 1024 px patch runs in one pass; larger inputs are tiled
    overlap = 64
    multiple = 16

    def __init__(self, model_fn: str | os.PathLike, classes: list[dict], name: str | None = None):
        network = load_keras_model(model_fn)
        body, kernel, bias = split_head(network)
        if kernel.shape[1] != len(classes):
            classes = [{"name": f"Class {i}", "color": default_color(i)} for i in range(kernel.shape[1])]
        super().__init__(name or Path(model_fn).stem, classes)
        self.body = body
        self.kernel, self.bias = kernel, bias
        self.n_bands = int(body.inputs[0].shape[-1])
        self._body_fn = tf.function(
            lambda x: self.body(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, self.n_bands], tf.float32)],
            reduce_retracing=True,
        )

    def clone(self) -> KerasSegmentationModel:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.kernel, other.bias = self.kernel.copy(), self.bias.copy()
        other.classes = [dict(c) for c in self.classes]
        return other

    def _run_body(self, batch: np.ndarray) -> list[np.ndarray]:
        x = tf.convert_to_tensor(batch.astype(np.float32) / 255.0)
        return [self._body_fn(x).numpy()]

    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[-1] != self.n_bands:
            raise ModelError(f"model expects {self.n_bands} bands, the image has {image.shape[-1]}")
        (feats,) = run_tiled(self._run_body, image, self.window, self.overlap, self.multiple)
        return feats, self.head(feats)

    def head(self, feats: np.ndarray) -> np.ndarray:
        """Features (...xF) → probabilities (...xC) through the current head."""
        return softmax(feats @ self.kernel + self.bias)

    def predict(self, image: np.ndarray) -> np.ndarray:
        return self.features(image)[1]


def default_color(i: int) -> str:
    palette = ["#0000FF", "#008000", "#80FF80", "#806060", "#FFA500", "#FF00FF", "#00FFFF",
               "#FFFF00", "#800000", "#808080"]  # fmt: skip
    return palette[i % len(palette)]
