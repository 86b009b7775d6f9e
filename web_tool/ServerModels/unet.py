"""A small U-Net for per-pixel land-cover classification (Keras 3, any backend).

Contract relied on by :mod:`web_tool.ServerModels.keras_model`: the network is fully convolutional
(input ``(None, None, n_bands)`` float32 in [0, 1], spatial size a multiple of ``2 ** depth``) and its
last two layers are a 1x1 ``Conv2D(n_classes)`` named ``"logits"`` and a softmax ``Activation`` named
``"probs"`` (the model's output). The input of ``"logits"`` is the per-pixel feature map (``features``
channels) that fine-tuning re-fits a head on. Only stock Keras layers are used, so a saved model
loads with ``keras.saving.load_model(path)`` and no custom objects.
"""

from __future__ import annotations

import keras
from keras import layers

# Batch-norm moving statistics must settle within a few hundred training steps.
BN_MOMENTUM = 0.9


def _conv_bn_relu(x: keras.KerasTensor, filters: int, name: str, kernel_size: int = 3) -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _block(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = _conv_bn_relu(x, filters, f"{name}a")
    return _conv_bn_relu(x, filters, f"{name}b")


def build_unet(
    n_bands: int = 4, n_classes: int = 4, base_filters: int = 16, depth: int = 3, features: int = 32
) -> keras.Model:
    """A U-Net: `depth` 2x poolings, ``base_filters * 2**level`` filters per level, `features`-channel
    per-pixel features, then ``logits`` (1x1 conv) and ``probs`` (softmax).

    Inputs must be float32 in [0, 1] (uint8 imagery / 255) with height and width multiples of
    ``2 ** depth``.
    """
    if depth < 1:
        raise ValueError("depth must be at least 1")
    inputs = keras.Input(shape=(None, None, n_bands), dtype="float32", name="image")
    x = inputs
    skips = []
    for level in range(depth):
        x = _block(x, base_filters * 2**level, f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _block(x, base_filters * 2**depth, "bottleneck")
    for level in reversed(range(depth)):
        # nearest, not bilinear: Keras' bilinear resize cannot trace with a fully unknown input shape,
        # which is how the server runs the body (tf.function over [None, None, None, bands])
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _block(x, base_filters * 2**level, f"dec{level}")
    x = _conv_bn_relu(x, features, "features")
    logits = layers.Conv2D(n_classes, 1, name="logits")(x)
    probs = layers.Activation("softmax", name="probs", dtype="float32")(logits)
    return keras.Model(inputs, probs, name=f"unet_d{depth}_f{base_filters}")
