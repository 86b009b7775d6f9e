"""Class colours, softmax reweighting and PNG encoding."""

import base64

import cv2
import numpy as np
import pytest

from web_tool.errors import ClassIndexError
from web_tool.rendering.images import class_colors, hard_rgb, png_base64, reweight, soft_rgb, with_alpha

CLASSES = [{"name": "a", "color": "#0000FF"}, {"name": "b", "color": "#00FF00"}]


def test_equal_weights_change_nothing():
    probs = np.random.default_rng(0).dirichlet([1, 1, 1, 1], size=(5, 5)).astype(np.float32)
    np.testing.assert_allclose(reweight(probs, [0.25] * 4), probs, rtol=1e-6)


def test_weights_reweight_and_renormalise():
    probs = np.array([[[0.6, 0.4]]], np.float32)
    out = reweight(probs, [1, 3])
    np.testing.assert_allclose(out, [[[0.6 / 1.8, 1.2 / 1.8]]], rtol=1e-6)
    assert out.argmax() == 1


def test_only_the_ratios_of_weights_count_however_large_or_small():
    probs = np.array([[[0.6, 0.4]]], np.float32)
    for scale in (1e-300, 1e300):
        out = reweight(probs, [scale, 3 * scale])
        np.testing.assert_allclose(out, reweight(probs, [1, 3]), rtol=1e-6)
    assert np.isfinite(reweight(probs, [1e300, 1])).all()


@pytest.mark.parametrize("weights", [[1], [0, 0], [1, 2, 3]])
def test_weights_must_fit_the_classes(weights):
    with pytest.raises(ClassIndexError):
        reweight(np.full((1, 1, 2), 0.5, np.float32), weights)


def test_hard_and_soft_colours():
    colors = class_colors(CLASSES)
    probs = np.array([[[0.8, 0.2], [0.3, 0.7]]], np.float32)
    np.testing.assert_array_equal(hard_rgb(probs, colors), [[[0, 0, 255], [0, 255, 0]]])
    np.testing.assert_array_equal(soft_rgb(probs, colors), [[[0, 51, 204], [0, 178, 76]]])


def test_png_round_trip_keeps_rgba():
    rgb = np.random.default_rng(0).integers(0, 255, (7, 9, 3)).astype(np.uint8)
    valid = np.ones((7, 9), bool)
    valid[0, 0] = False
    decoded = cv2.imdecode(
        np.frombuffer(base64.b64decode(png_base64(with_alpha(rgb, valid))), np.uint8), cv2.IMREAD_UNCHANGED
    )
    np.testing.assert_array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)[..., :3], rgb)
    assert decoded[0, 0, 3] == 0 and decoded[1, 1, 3] == 255


def test_bad_colour_is_a_class_error():
    with pytest.raises(ClassIndexError):
        class_colors([{"name": "x", "color": "#GGGGGG"}])
