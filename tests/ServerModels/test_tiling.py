"""Tiled inference: windows, blending, and no seams against a single pass of a real network."""

import numpy as np
import pytest

from web_tool.ServerModels.tiling import blend_weights, pad_to_multiple, run_tiled, window_starts


@pytest.mark.parametrize("length,window,overlap", [(100, 100, 10), (1000, 256, 32), (257, 256, 64)])
def test_windows_cover_the_axis_and_end_flush(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] + window == max(length, window)
    covered = np.zeros(max(length, window), bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:], strict=False))


def test_blend_weights_are_one_inside_and_fall_towards_the_edges():
    w = blend_weights(64, 16)
    assert w[32, 32] == 1 and w[0, 0] < 0.01 and (w > 0).all()


def test_pad_to_multiple_keeps_the_original_in_the_corner():
    img = np.arange(2 * 30 * 17, dtype=np.uint8).reshape(30, 17, 2)
    out = pad_to_multiple(img, 16)
    assert out.shape == (32, 32, 2)
    np.testing.assert_array_equal(out[:30, :17], img)


def test_an_identity_network_comes_back_unchanged_through_many_windows():
    img = np.random.default_rng(0).integers(0, 255, (300, 420, 3)).astype(np.float32)
    (out,) = run_tiled(lambda b: [b], img, window=128, overlap=32, multiple=16, batch_size=3)
    np.testing.assert_allclose(out, img, rtol=1e-5)


def test_tiled_keras_inference_shows_no_seams(tiny_model_path):
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    model = KerasSegmentationModel(
        tiny_model_path, classes=[{"name": str(i), "color": "#000"} for i in range(4)]
    )
    img = np.random.default_rng(1).integers(0, 255, (300, 300, 4)).astype(np.uint8)
    whole = model.predict(img)
    model.window, model.overlap = 96, 32  # force 16 windows
    tiled = model.predict(img)
    assert tiled.shape == whole.shape == (300, 300, 4)
    # the tiny net sees 5x5 pixels: far inside the overlap, blended windows match one pass
    np.testing.assert_allclose(tiled, whole, atol=1e-3)
