"""Fine-tuning strategies: learn a session's model from its corrections (the `--fine_tune` choice).

A strategy has three functions, all `(model, base, corrections, source, **options)`:
`fit` → (new model, info) never changes `model` (predictions in flight keep using it);
`predict` → (true, predicted classes) at the corrections' pixels, for the hold-out scores;
`prepare` readies (caches) what `fit` will need from one new correction, while the user clicks;
and `check(base, **options)`, run at start-up, refuses options the base model cannot take.

- `last_layer`: softmax regression of the head on the deep features of the corrected pixels plus
  a replay sample of the base model's training data, started from the current head, class-balanced,
  pulled toward the base head (L2). Solved exactly in numpy (softmax_fit): well under a second.
- `last_k_layers`: backpropagation (Keras optimizer) through the last k weighted layers (the head
  counts as one) of a per-session copy of the network, on windows around the corrections (loss
  only on corrected pixels) and on replay pixels; the rest of the network stays frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from web_tool.corrections import Correction
from web_tool.errors import LandCoverError
from web_tool.modelparts import (
    copy_body,
    receptive_radius,
    reference_head,
    run_network,
    split_body,
    split_body_prefix,
    with_body,
    with_head,
)
from web_tool.ServerModels.base import ServerModel
from web_tool.softmax_fit import fit_head
from web_tool.training_data import FeatureSource, class_weights

#: corrected pixels one retrain learns from at most (spread over the classes)
MAX_PIXELS = 10_000


@dataclass(frozen=True)
class Strategy:
    fit: Callable[..., tuple[ServerModel, dict]]
    predict: Callable[..., tuple[np.ndarray, np.ndarray]]
    prepare: Callable[..., None]
    #: `check(base, **options)` raises ModelError at start-up if the strategy cannot tune `base`
    check: Callable[..., None] = lambda base, **_: None


def per_class_sample(y: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `limit` samples, as evenly over the classes as they allow (a fixed draw)."""
    if len(y) <= limit:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes = sorted(np.unique(y), key=lambda v: np.sum(y == v))  # rarest first
    keep, left = [], limit
    for i, value in enumerate(classes):
        idx = np.flatnonzero(y == value)
        quota = left // (len(classes) - i)
        keep.append(idx if len(idx) <= quota else rng.choice(idx, size=quota, replace=False))
        left -= len(keep[-1])
    return np.sort(np.concatenate(keep))


def training_set(corrections: tuple[np.ndarray, np.ndarray], replay, replay_weight: float):
    """(X, y, weights): corrections weigh 1 in all and the replay `replay_weight`, each spread
    equally over its classes, so a handful of clicks on hard pixels cannot outvote what the base
    model knew."""
    x, y = corrections
    keep = per_class_sample(y, MAX_PIXELS)
    x, y, w = x[keep], y[keep], class_weights(y[keep], 1.0)
    if replay is None:
        return x, y, w
    return (
        np.concatenate([x, replay[0]]),
        np.concatenate([y, replay[1]]),
        np.concatenate([w, class_weights(replay[1], replay_weight)]),
    )


def prior_weight(corrections: list[Correction], settled: int, floor: float) -> float:
    """How hard to hold on to what the model was: 1 up to `settled` corrections, then less, as
    1/sqrt(n) but never below `floor`, so the more the user has shown, the more the model may move
    (and a biased sample of hard pixels can still not drag it anywhere)."""
    return float(max(floor, np.sqrt(settled / max(settled, len(corrections)))))


def head_l2(model: ServerModel, base: ServerModel, l2: float, new_class_l2: float) -> np.ndarray:
    """Per-class pull toward the base head; classes added in the session are held far more loosely."""
    return np.where(np.arange(model.n_classes) < base.n_classes, l2, new_class_l2)


def fit_info(corrections: list[Correction], y: np.ndarray, replay) -> dict:
    n_replay = 0 if replay is None else len(replay[1])
    return {"pixels": sum(c.count for c in corrections), "sampled_pixels": int(len(y) - n_replay),
            "replay_pixels": int(n_replay)}  # fmt: skip


# --- last_layer -------------------------------------------------------------------------------


def last_layer(model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource,
               l2: float = 1.0, new_class_l2: float = 0.01, replay_weight: float = 0.25,
               settled: int = 10, floor: float = 1 / 3, **_) -> tuple[ServerModel, dict]:  # fmt: skip
    """Refit the head on the deep features of corrected pixels + replay pixels."""
    l2 *= prior_weight(corrections, settled, floor)
    replay = source.replay_features(model)
    x, y, w = training_set(source.correction_samples(model, corrections), replay, replay_weight)
    ref = reference_head(base, model.n_classes)
    kernel, bias = fit_head(x, y, w, model.kernel, model.bias, ref, l2=head_l2(model, base, l2, new_class_l2))
    return with_head(model, kernel, bias), fit_info(corrections, y, replay)


def predict_last_layer(model, base, corrections, source: FeatureSource, **_):
    return source.predict(model, corrections)


def prepare_last_layer(model, base, correction, source: FeatureSource, **_) -> None:
    if source.uses_base(model):
        source.features(model, correction)


# --- last_k_layers ----------------------------------------------------------------------------


@dataclass
class Tail:
    """A body cut for last_k_layers: the tuned layers, how to get their input, and its cache key."""

    tail: object
    tuned: list
    radius: int
    extract: Callable[[np.ndarray], np.ndarray]
    key: object

    def centre(self, patches):
        """Tail output at the centre of each (2r+1)^2 patch of frozen-part outputs."""
        return self.tail(patches, training=False)[:, self.radius, self.radius]


def cut(model: ServerModel, body, base: ServerModel, k: int) -> Tail:
    prefix, tail, tuned = split_body(body, k)
    frozen_as_base = body is base.body or _same_weights(
        prefix.get_weights(), _base_prefix(base.body, tuned[0].name)
    )
    return Tail(tail, tuned, receptive_radius(tail), lambda image: run_network(model, prefix, image),
                (tuned[0].name, "frozen") if frozen_as_base else None)  # fmt: skip


def last_k_layers(model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource,
                  k: int = 2, steps: int = 100, lr: float = 1e-3, l2: float = 1.0,
                  new_class_l2: float = 0.01, tail_l2: float = 3.0, replay_weight: float = 0.25,
                  settled: int = 10, floor: float = 1 / 3, **_) -> tuple[ServerModel, dict]:  # fmt: skip
    """Tune the last `k` weighted layers of a copy of the network.

    The frozen part runs once on each correction's window (cached: it never changes); training sees,
    for every corrected and replay pixel, the frozen part's output in the patch the tuned layers see
    from it. The head starts from the exact `last_layer` fit on the tail's current features, then
    the tail and head are tuned together (Adam, full batch, L2 toward where they began).
    """
    import tensorflow as tf

    tail_l2 *= prior_weight(corrections, settled, floor)
    body = copy_body(model.body)
    part = cut(model, body, base, k)
    samples = source.samples(part.extract, part.key, corrections, part.radius)
    replay = source.replay_samples(part.extract, part.key, model.n_classes, part.radius)
    x, y, w = training_set(samples, replay, replay_weight)
    patches = tf.constant(x, tf.float32)
    ref = reference_head(base, model.n_classes)
    kernel, bias = fit_head(np.asarray(part.centre(patches)), y, w, model.kernel, model.bias, ref,
                            l2=head_l2(model, base, l2, new_class_l2))  # fmt: skip
    kernel, bias, loss = _tune(part, patches, y, w / w.sum(), kernel, bias, steps, lr, tail_l2)
    layers = [t.name for t in part.tuned] + ["head"]
    info = {**fit_info(corrections, y, replay), "loss": loss, "layers": layers}
    return with_head(with_body(model, body), kernel, bias), info


def _tune(part: Tail, patches, y, w, kernel, bias, steps: int, lr: float, tail_l2: float):
    """Adam on the tuned layers and the head together; → (kernel, bias, final loss)."""
    import keras
    import tensorflow as tf

    for layer in part.tuned:
        layer.trainable = True
    kernel, bias = tf.Variable(kernel), tf.Variable(bias)
    variables = [v for layer in part.tuned for v in layer.trainable_weights] + [kernel, bias]
    start = [tf.constant(v.numpy()) for v in variables]
    optimizer = keras.optimizers.Adam(learning_rate=lr)
    optimizer.build(variables)
    labels, weights = tf.constant(y, tf.int32), tf.constant(w, tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = tf.matmul(part.centre(patches), kernel) + bias
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
    return kernel.numpy(), bias.numpy(), float(loss)


def predict_last_k(model, base, corrections, source: FeatureSource, k: int = 2, **_):
    """Predictions through the model's own tail (no full-network run: the frozen part is cached)."""
    import tensorflow as tf

    part = cut(model, model.body, base, k)
    x, y = source.samples(part.extract, part.key, corrections, part.radius)
    feats = np.asarray(part.centre(tf.constant(x, tf.float32)))
    return y, model.head(feats).argmax(axis=-1)


def check_last_k(base: ServerModel, k: int = 2, **_) -> None:
    split_body(base.body, k)


def prepare_last_k(model, base, correction, source: FeatureSource, k: int = 2, **_) -> None:
    part = cut(model, model.body, base, k)
    if part.key is not None:
        source.values(part.extract, part.key, correction, part.radius)


@lru_cache(maxsize=4)
def _base_prefix(base_body, first_tuned: str) -> list[np.ndarray]:
    """The weights of the base body's frozen part (they never change)."""
    return split_body_prefix(base_body, first_tuned).get_weights()


def _same_weights(mine: list[np.ndarray], theirs: list[np.ndarray]) -> bool:
    return len(mine) == len(theirs) and all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))


STRATEGIES: dict[str, Strategy] = {
    "last_layer": Strategy(last_layer, predict_last_layer, prepare_last_layer),
    "last_k_layers": Strategy(last_k_layers, predict_last_k, prepare_last_k, check_last_k),
}


def get_strategy(name: str) -> Strategy:
    """The strategy registered under `name`; an error listing the valid names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        choices = ", ".join(STRATEGIES)
        raise LandCoverError(f"unknown fine-tune strategy {name!r}; choose one of: {choices}") from None
