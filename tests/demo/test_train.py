"""The demo training's crops, plain and domain randomised (no TensorFlow)."""

from __future__ import annotations

import numpy as np

from web_tool.demo.train import SCALES, CropSampler, randomise


def stripes(size: int = 256, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A tile of vertical stripes 8 px wide whose four equal bands are brighter the higher the class."""
    labels = np.tile((np.arange(size) // 8 % n_classes).astype(np.uint8), (size, 1))
    image = np.repeat((40 + 60 * labels)[..., None], 4, axis=-1).astype(np.uint8)
    return image, labels


def across(y: np.ndarray) -> int:
    """The axis a crop's stripes change along (they run either way: rotations)."""
    return 1 if np.diff(y[y.shape[0] // 2].astype(int)).any() else 0


def stripe_width(y: np.ndarray) -> float:
    """px per stripe across the middle of a crop."""
    mid = y.shape[0] // 2
    line = y[mid] if across(y) == 1 else y[:, mid]
    return y.shape[0] / max(1, np.count_nonzero(np.diff(line.astype(int))))


def test_randomised_crops_keep_their_labels_in_place():
    """Whatever the scale, colours, haze, blur and noise, the brighter pixels are the higher
    classes' (however a look saturates one of them): the labels were resampled with the pixels."""
    sampler = CropSampler([stripes()], 4, np.random.default_rng(0))
    xs, ys = sampler.batch(24, 64, randomised=True)
    assert xs.shape == (24, 64, 64, 4) and ys.shape == (24, 64, 64)
    assert xs.dtype == np.float32 and 0 <= xs.min() and xs.max() <= 1
    for x, y in zip(xs, ys, strict=True):
        assert np.corrcoef(x.mean(axis=-1).ravel(), y.ravel())[0, 1] > 0.8
        shifted = np.roll(y, 4, axis=across(y))
        assert np.corrcoef(x.mean(axis=-1).ravel(), shifted.ravel())[0, 1] < 0.8  # the check can tell


def test_randomised_crops_vary_in_scale():
    """A stripe is 8 px wide at the scene's resolution; randomised crops show it 4-16 px wide."""
    sampler = CropSampler([stripes()], 4, np.random.default_rng(1))
    _, ys = sampler.batch(40, 64, randomised=True)
    widths = [stripe_width(y) for y in ys]
    assert min(widths) < 8 / 1.3 and max(widths) > 8 * 1.3
    assert 8 / SCALES[1] / 1.5 < min(widths) and max(widths) < 8 / SCALES[0] * 1.5
    _, plain = CropSampler([stripes()], 4, np.random.default_rng(1)).batch(10, 64)
    assert all(7 <= stripe_width(y) <= 64 / 7 for y in plain)


def test_randomise_changes_looks_not_shapes():
    image, _ = stripes(32)
    x = image.astype(np.float32) / 255
    looks = [randomise(x, np.random.default_rng(seed)) for seed in range(6)]
    for out in looks:
        assert out.shape == x.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    band_means = np.array([out.mean(axis=(0, 1)) for out in looks])
    assert band_means.std(axis=0).min() > 0.02  # brightness and colour differ from look to look
    assert not np.allclose(band_means[:, 0], band_means[:, 3])  # and the bands no longer move together


def test_randomised_looks_vary_a_bands_brightness_several_fold():
    """Wide enough that a band's level says little about the class (a grey pixel's band between
    the 10th and 90th percentile of looks: over three-fold; the narrower ranges the real summer
    NAIP defeated gave 2.2-2.9-fold)."""
    x = np.full((8, 8, 4), 0.4, np.float32)
    means = np.array([randomise(x, np.random.default_rng(seed)).mean(axis=(0, 1)) for seed in range(400)])
    low, high = np.percentile(means, [10, 90], axis=0)
    assert (high / low > 3).all()
