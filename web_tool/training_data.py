"""What fine-tuning learns from: per-pixel values (deep features, or the output of a network's
frozen part) at corrected pixels, and at a replay sample of the base model's training data (so
classes nobody corrected are not forgotten).

The replay file sits next to the model: `<model_fn without extension>.replay.npz` with arrays
`images` (N, 64, 64, B) uint8 and `labels` (N, 64, 64) uint8 (values beyond the classes = none).

Values that do not depend on the session (the base body's features, the frozen part's outputs)
are cached per correction and for the replay sample, so retraining with hundreds of clicks takes
a fraction of a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from web_tool.corrections import Correction, sample_pixels
from web_tool.ServerModels.base import ServerModel

log = logging.getLogger(__name__)

#: cached sample arrays (one per correction and way of making them) before the cache starts afresh
MAX_CACHED = 20_000


@dataclass
class Replay:
    """Image tiles (N, S, S, B) uint8 and their labels (N, S, S) uint8."""

    images: np.ndarray
    labels: np.ndarray


def replay_path(model_fn: str | Path) -> Path:
    """`<model_fn without extension>.replay.npz`."""
    path = Path(model_fn)
    if path.suffix in (".keras", ".h5", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".replay.npz")


def load_replay(path: str | Path | None) -> Replay | None:
    """The replay sample at `path`, or None (logged) when there is none or it cannot be read."""
    if path is None or not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except Exception as exc:
        log.warning("ignoring replay file %s: %s", path, exc)
        return None
    if images.ndim != 4 or labels.shape != images.shape[:3]:
        log.warning("ignoring replay file %s: images %s and labels %s do not match", path, images.shape,
                    labels.shape)  # fmt: skip
        return None
    return Replay(images.astype(np.uint8), labels.astype(np.uint8))


def class_weights(y: np.ndarray, total: float) -> np.ndarray:
    """Per-sample weights, equal in sum for every class present, summing to `total`."""
    if y.size == 0:
        return np.zeros(0, np.float32)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (total / len(classes) / counts)[inverse].astype(np.float32)


#: what a sample is made from: HxWxB uint8 imagery -> HxWxC per-pixel values (features, activations)
Extractor = Callable[[np.ndarray], np.ndarray]


def pixel_values(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: int | None) -> np.ndarray:
    """(n, C) values at the pixels, or (n, 2r+1, 2r+1, C) patches around them (zeros outside)."""
    if radius is None:
        return values[rows, cols]
    padded = np.pad(values, ((radius, radius), (radius, radius), (0, 0)))
    offsets = np.arange(2 * radius + 1)
    return padded[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]


class FeatureSource:
    """Training samples for one base model: values at corrected and replay pixels, cached.

    Callers say how values are made (an Extractor) and give a cache `key` naming it when it is the
    same for every session (the base model's body, or its frozen part); None = do not cache.
    """

    def __init__(self, base: ServerModel, replay: Replay | None, per_correction: int = 1000,
                 replay_per_class: int = 500, seed: int = 0):  # fmt: skip
        self.base_body = getattr(base, "body", None)
        self.replay = replay
        self.per_correction = per_correction
        self.replay_per_class = replay_per_class
        self.seed = seed
        self._cache: dict[tuple, np.ndarray] = {}
        self._lock = threading.Lock()

    def uses_base(self, model: ServerModel) -> bool:
        return getattr(model, "body", None) is self.base_body

    def values(self, extract: Extractor, key, c: Correction, radius: int | None = None) -> np.ndarray:
        """Values at (a fixed sample of at most `per_correction` of) the correction's pixels."""
        cache_key = (key, radius, c.id)
        if key is not None and c.id is not None and cache_key in self._cache:
            return self._cache[cache_key]
        idx = sample_pixels(c, self.per_correction)
        out = pixel_values(extract(c.image), c.rows[idx], c.cols[idx], radius)
        if key is not None and c.id is not None:
            if len(self._cache) >= MAX_CACHED:  # undone corrections leave entries behind
                self._cache.clear()
            self._cache[cache_key] = out
        return out

    def samples(self, extract: Extractor, key, corrections: list[Correction], radius: int | None = None):
        """(X, y) over all corrections (X: (N, C) values or (N, P, P, C) patches)."""
        x = np.concatenate([self.values(extract, key, c, radius) for c in corrections])
        y = np.concatenate([np.full(min(c.count, self.per_correction), c.value) for c in corrections])
        return x, y.astype(np.int64)

    def replay_samples(self, extract: Extractor, key, n_classes: int, radius: int | None = None):
        """(X, y) at up to `replay_per_class` replay pixels per class (a fixed draw), or None."""
        if self.replay is None:
            return None
        with self._lock:
            cache_key = ("replay", key, radius, n_classes)
            if key is not None and cache_key in self._cache:
                return self._cache[cache_key]
            n, r, c = self._replay_pixels(n_classes)
            xs = [
                pixel_values(extract(self.replay.images[i]), r[n == i], c[n == i], radius)
                for i in np.unique(n)
            ]
            out = (np.concatenate(xs) if xs else np.zeros((0,)), self.replay.labels[n, r, c].astype(np.int64))
            if key is not None:
                self._cache[cache_key] = out
            return out

    def _replay_pixels(self, n_classes: int):
        labels = self.replay.labels
        rng = np.random.default_rng(self.seed)
        picks = []
        for value in range(n_classes):
            where = np.flatnonzero(labels.reshape(-1) == value)
            if where.size:
                picks.append(rng.choice(where, size=min(self.replay_per_class, where.size), replace=False))
        flat = np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
        return np.unravel_index(flat, labels.shape)

    # --- deep features under a model's body (what the head sees) ------------------------------

    def feature_key(self, model: ServerModel):
        return "base features" if self.uses_base(model) else None

    def features(self, model: ServerModel, c: Correction) -> np.ndarray:
        """(n, F) deep features at (a sample of) the correction's pixels under `model`'s body."""
        return self.values(_features_of(model), self.feature_key(model), c)

    def correction_samples(self, model: ServerModel, corrections: list[Correction]):
        return self.samples(_features_of(model), self.feature_key(model), corrections)

    def replay_features(self, model: ServerModel):
        return self.replay_samples(_features_of(model), self.feature_key(model), model.n_classes)

    def predict(self, model: ServerModel, corrections: list[Correction]):
        """(true classes, predicted classes) at the corrections' (sampled) pixels."""
        x, y = self.correction_samples(model, corrections)
        return y, model.head(x).argmax(axis=-1)


def _features_of(model: ServerModel) -> Extractor:
    return lambda image: model.features(image)[0]
