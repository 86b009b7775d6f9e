"""A Keras (TensorFlow backend) segmentation network served as body + head.

The network is split at its last 1x1 layer: the *body* maps an image to per-pixel features, its
own *head* (a LinearHead) maps them to class probabilities. Learning from corrections gives a
session another head (over the body's features, the network's own probabilities and the
imagery's filter bank) or, with `last_k_layers`, a tuned copy of the body; sessions share the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from web_tool.errors import IncompatibleError, ModelError
from web_tool.ServerModels.base import ServerModel, edge_filled
from web_tool.ServerModels.filterbank import filter_bank
from web_tool.ServerModels.heads import LinearHead
from web_tool.ServerModels.keras_io import load_keras_model, split_head
from web_tool.ServerModels.precision import in_bfloat16
from web_tool.ServerModels.tiling import run_tiled


class KerasSegmentationModel(ServerModel):
    """A Keras U-Net (or any fully convolutional net ending in a 1x1 layer) served as body + head.

    Features (what a learned head sees) are the body's per-pixel features, the network's own class
    probabilities and the imagery's filter bank. With its own head (a LinearHead on the body's
    features) the model predicts with the network alone; a learned head needs all the features.
    """

    #: context on every side: the demo U-Net's class map with 24 px is the one with 128 px on 99.997 %
    #: of the pixels (32 px: 99.9999 %, 16 px: 99.97 %; 12 patches of 256 px), and the padded canvas
    #: is 1.20x the pixels of a 512 px patch instead of 1.27x
    padding = 24
    #: "float32", or "bf16" once `in_bfloat16` made it
    precision = "float32"
    window = 1536  # a padded 1024 px patch runs in one pass; larger inputs are tiled
    overlap = 64
    multiple = 16

    def __init__(
        self, model_fn: str | os.PathLike[str] | None, classes: list[dict[str, Any]], name: str | None = None
    ):
        if model_fn is None:
            raise ModelError("a Keras model needs --model_fn (a .keras or .h5 file)")
        network = load_keras_model(model_fn)
        body, kernel, bias = split_head(network)
        if kernel.shape[1] != len(classes):
            classes = [{"name": f"Class {i}", "color": default_color(i)} for i in range(kernel.shape[1])]
        head = LinearHead(kernel, bias)
        super().__init__(name or Path(model_fn).stem, classes, head)
        self.network_head = head  # the network's own last layer: its probabilities are features
        self.n_bands = int(body.inputs[0].shape[-1])
        self._set_body(body)
        self.base_body = body

    def _set_body(self, body: keras.Model) -> None:
        self.body = body
        self._body_fn = compiled(body)
        kernel, bias = tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([None], tf.float32)
        # the network with a linear head in one graph: softmax(features @ kernel + bias), so the
        # features never leave TensorFlow (one pass; a few % of the forward time saved)
        self._probs_fn = tf.function(
            lambda x, kernel, bias: tf.nn.softmax(
                tf.tensordot(tf.cast(body(x, training=False), tf.float32), kernel, 1) + bias
            ),
            input_signature=[image_spec(body), kernel, bias],
        )

    # --- features ------------------------------------------------------------------------------

    def deep_features(self, image: np.ndarray) -> np.ndarray:
        """HxWxB uint8 → HxWxF float32 features of the network's body (tiled for large images)."""
        self._check_bands(image)
        (feats,) = run_tiled(self._run_body, edge_filled(image), self.window, self.overlap, self.multiple)
        return feats

    def _check_bands(self, image: np.ndarray) -> None:
        """IncompatibleError for imagery of another band count: the served datasets always fit the
        model (start-up checks), so it was saved with another set-up (a session's corrections)."""
        if image.shape[-1] != self.n_bands:
            raise IncompatibleError(
                f"model {self.name!r} takes {self.n_bands} bands but this imagery has {image.shape[-1]}:"
                " it was recorded while the server had another model or other imagery; start a new"
                " session (or reset this one) to correct this model"
            )

    def _run_body(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._body_fn(network_input(batch)).numpy()]

    def features(self, image: np.ndarray) -> np.ndarray:
        image = edge_filled(image)
        deep = self.deep_features(image)
        own = self.network_head.predict(deep)
        return np.concatenate([deep, own, filter_bank(image)], axis=-1)

    @property
    def extractor_id(self) -> object:
        return ("keras", id(self.body))

    # --- predicting ----------------------------------------------------------------------------

    def predict(self, image: np.ndarray, smooth: bool = True) -> np.ndarray:
        head = self.head
        if not isinstance(head, LinearHead):  # a learnt head needs all the features
            return super().predict(image, smooth)
        self._check_bands(image)

        def network(batch: np.ndarray) -> list[np.ndarray]:
            return [self._probs_fn(network_input(batch), head.kernel, head.bias).numpy()]

        (probs,) = run_tiled(network, edge_filled(image), self.window, self.overlap, self.multiple)
        return probs

    def in_bfloat16(self) -> KerasSegmentationModel:
        """This model computing in bf16 (precision.py), with the same weights and head; its learning
        (last_k_layers) computes in bf16 too."""
        try:
            body = in_bfloat16(self.base_body)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"cannot compute this network in bf16: {exc}") from None
        other = self.with_body(body)
        other.base_body, other.precision = body, "bf16"
        return other

    # --- a tuned body (last_k_layers) ------------------------------------------------------------

    def with_body(self, body: keras.Model) -> KerasSegmentationModel:
        """A copy whose body is `body` (a Keras model like `self.body`); the head is kept."""
        other = self._copy()
        other._set_body(body)
        return other

    def extractor_state(self) -> list[np.ndarray] | None:
        if self.body is self.base_body:
            return None
        return [np.asarray(w) for w in self.body.get_weights()]

    def with_extractor_state(self, weights: list[np.ndarray]) -> KerasSegmentationModel:
        body = copy_body(self.base_body)
        mismatch = IncompatibleError(
            f"this saved model tuned the layers of another network than {self.name!r}, the one the server"
            " serves: load it on a server with the model it was saved with"
        )
        if len(body.get_weights()) != len(weights):
            raise mismatch
        try:
            body.set_weights(weights)
        except ValueError:  # as many weights, of other shapes
            raise mismatch from None
        return self.with_body(body)


def image_spec(network: keras.Model) -> tf.TensorSpec:
    """Any batch of images of any size with the network's input bands, float32."""
    return tf.TensorSpec([None, None, None, network.inputs[0].shape[-1]], tf.float32)


def compiled(network: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """`network` as one TensorFlow graph for any batch and image size (traced once), its output
    float32 (a bf16 network's too)."""

    def forward(x: tf.Tensor) -> tf.Tensor:
        return tf.cast(network(x, training=False), tf.float32)

    graph: Callable[[tf.Tensor], tf.Tensor] = tf.function(forward, input_signature=[image_spec(network)])
    return graph


def network_input(batch: np.ndarray) -> tf.Tensor:
    """NxHxWxB uint8 imagery as the network takes it: float32 in [0, 1]."""
    return tf.convert_to_tensor(batch.astype(np.float32) / 255.0)


def copy_body(body: keras.Model) -> keras.Model:
    """An independent, frozen copy of a Keras body (same architecture and weights)."""
    other = keras.models.clone_model(body)
    other.set_weights(body.get_weights())
    other.trainable = False
    return other


def default_color(i: int) -> str:
    palette = [
        "#0000FF",
        "#008000",
        "#80FF80",
        "#806060",
        "#FFA500",
        "#FF00FF",
        "#00FFFF",
        "#FFFF00",
        "#800000",
        "#808080",
    ]
    return palette[i % len(palette)]
