"""Fine-tuning strategies: learn a session's model from its corrections (the `--fine_tune` choice).

A strategy has four functions, all `(model, base, corrections, source, **options)` but `check`:
`fit` → (new model, info) never changes `model` (predictions in flight keep using it);
`crossval` → the cross-validated scores of fitting on these corrections (crossval.py);
`prepare` readies (caches) what `fit` will need from one new correction, while the user clicks;
and `check(base, **options)`, run at start-up, refuses options the base model cannot take.

- `last_layer` (the default, and what every model supports): replace the model's last layer by a
  random forest over all its per-pixel features — for a Keras network its deep features, its own
  class probabilities and the imagery's filter bank; for `--model features` the filter bank. It
  learns from the corrections, the anchors around them and the replay sample (training_data.py),
  each weighted by the evidence. Well under a second for hundreds of clicks.
- `last_k_layers` (Keras networks only): backpropagation (Keras optimizer) through the last k
  weighted layers (the head counts as one) of a per-session copy of the network, on windows
  around the corrections (loss only on corrected and anchor pixels) and on replay pixels; the
  rest of the network stays frozen. The head stays the network's own linear layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from web_tool.corrections import Correction
from web_tool.crossval import cross_validate
from web_tool.errors import LandCoverError, ModelError, RequestError
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.heads import ClassifierHead, LinearHead
from web_tool.training_data import FeatureSource, Samples, Trust, base_trust

#: trees of the forest `last_layer` fits (more cost more to predict, and gained nothing measurable
#: on the real development imagery beyond 40: bench/hitl_real.py)
TREES = 40
#: their depth: shallower trees generalise better from a few hundred clicks, and predict faster
MAX_DEPTH = 12
#: trees of each forest cross-validation fits (five of them cost about one full forest)
CV_TREES = 8
#: threads the forest fits and predicts with
FOREST_JOBS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Strategy:
    fit: Callable[..., tuple[ServerModel, dict]]
    crossval: Callable[..., dict]
    prepare: Callable[..., None]
    #: `check(base, **options)` raises ModelError at start-up if the strategy cannot tune `base`
    check: Callable[..., None] = lambda base, **_: None


def fit_info(corrections: list[Correction], samples: Samples, trust: Trust) -> dict:
    labelled = int(samples.labelled.sum())
    replay = int((samples.group < 0).sum())
    return {
        "pixels": sum(c.count for c in corrections),
        "sampled_pixels": labelled,
        "anchor_pixels": len(samples) - labelled - replay,
        "replay_pixels": replay,
        "base_agreement": round(trust.agreement, 3),
        "base_precision": [round(float(t), 3) for t in trust.precision],
        "base_recall": [round(float(t), 3) for t in trust.recall],
    }


def check_two_classes(samples: Samples) -> None:
    if len(np.unique(samples.y)) < 2:
        raise RequestError(
            "nothing to tell apart yet: label at least two classes (corrections) before retraining"
        )


# --- last_layer: a forest over all the features ---------------------------------------------


def model_features(model: ServerModel):
    return model.features


def training_samples(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource
) -> tuple[Samples, Trust]:
    """(samples over `model`'s features, how far the base model's word counts for each class)."""
    key = model.extractor_id if model.extractor_id == base.extractor_id else None
    extract = model_features(model)
    labelled = source.samples(extract, key, corrections, model.n_classes, base_trust=None)
    trust = base_trust(base, model.n_classes, labelled)
    return source.samples(extract, key, corrections, model.n_classes, base_trust=trust), trust


def fit_forest(samples: Samples, n_classes: int, trees: int = TREES, seed: int = 0) -> ClassifierHead:
    """A forest head fitted on `samples`."""
    from sklearn.ensemble import RandomForestClassifier

    check_two_classes(samples)
    forest = RandomForestClassifier(trees, max_depth=MAX_DEPTH, n_jobs=FOREST_JOBS, random_state=seed)
    forest.fit(samples.x, samples.y, sample_weight=samples.w)
    return ClassifierHead(forest, n_classes)


def last_layer(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource, **_
) -> tuple[ServerModel, dict]:
    """A forest head over the model's features, learnt from corrections, anchors and replay."""
    samples, trust = training_samples(model, base, corrections, source)
    head = fit_forest(samples, model.n_classes)
    return model.with_head(head, learnt=True), fit_info(corrections, samples, trust)


def crossval_last_layer(model: ServerModel, base, corrections, source: FeatureSource, **_) -> dict:
    """Cross-validated scores of last_layer on these corrections (smaller forests, same samples)."""
    samples, _ = training_samples(model, base, corrections, source)
    fit = lambda part: fit_forest(part, model.n_classes, trees=CV_TREES)  # noqa: E731
    return cross_validate(samples, [c.value for c in corrections], model.classes, fit)


def prepare_last_layer(model: ServerModel, base, correction, source: FeatureSource, **_) -> None:
    if model.extractor_id == base.extractor_id:
        source.values(model_features(model), model.extractor_id, correction)


# --- last_k_layers (Keras networks) ----------------------------------------------------------


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


def cut(model, body, base, k: int) -> Tail:
    from web_tool.ServerModels.keras_tuning import receptive_radius, run_network, split_body

    prefix, tail, tuned = split_body(body, k)
    frozen_as_base = body is base.body or _same_weights(
        prefix.get_weights(), _base_prefix(base.body, tuned[0].name)
    )
    return Tail(
        tail,
        tuned,
        receptive_radius(tail),
        lambda image: run_network(model, prefix, image),
        (tuned[0].name, "frozen") if frozen_as_base else None,
    )


def last_k_layers(
    model,
    base,
    corrections: list[Correction],
    source: FeatureSource,
    k: int = 2,
    steps: int = 100,
    lr: float = 1e-3,
    tail_l2: float = 3.0,
    **_,
):
    """Tune the last `k` weighted layers of a copy of the network.

    The frozen part runs once on each correction's window (cached: it never changes); training sees,
    for every corrected, anchor and replay pixel, the frozen part's output in the patch the tuned
    layers see from it. The head starts from the network's own, then the tail and head are tuned
    together (Adam, full batch, L2 toward where they began).
    """
    import tensorflow as tf

    from web_tool.ServerModels.keras_model import copy_body

    trust = _base_trust(model, base, corrections, source)
    body = copy_body(model.body)
    part = cut(model, body, base, k)
    samples = source.samples(part.extract, part.key, corrections, model.n_classes, trust, part.radius)
    check_two_classes(samples)
    patches = tf.constant(samples.x, tf.float32)
    head = model.head  # last_k_layers models keep a network's linear head (grown with new classes)
    w = samples.w / samples.w.sum()
    kernel, bias, loss = _tune(part, patches, samples.y, w, head.kernel, head.bias, steps, lr, tail_l2)
    layers = [t.name for t in part.tuned] + ["head"]
    info = {**fit_info(corrections, samples, trust), "loss": loss, "layers": layers}
    return model.with_body(body).with_head(LinearHead(kernel, bias), learnt=True), info


def _base_trust(model, base, corrections, source: FeatureSource) -> Trust:
    return training_samples(base, base, corrections, source)[1]


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
            logits = tf.matmul(tf.cast(part.centre(patches), tf.float32), kernel) + bias  # a bf16 tail too
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


def crossval_last_k(model, base, corrections, source: FeatureSource, **_) -> dict:
    note = "not measured: cross-validating last_k_layers would retrain the network once per fold"
    return {"corrections": len(corrections), "note": note}


def check_last_k(base, k: int = 2, **_) -> None:
    if not hasattr(base, "body"):
        raise ModelError(
            f"last_k_layers tunes a network's layers; model {base.name!r} has none:"
            " use --fine_tune last_layer"
        )
    from web_tool.ServerModels.keras_tuning import split_body

    split_body(base.body, k)


def prepare_last_k(model, base, correction, source: FeatureSource, k: int = 2, **_) -> None:
    part = cut(model, model.body, base, k)
    if part.key is not None:
        source.values(part.extract, part.key, correction, part.radius)


@lru_cache(maxsize=4)
def _base_prefix(base_body, first_tuned: str) -> list[np.ndarray]:
    """The weights of the base body's frozen part (they never change)."""
    from web_tool.ServerModels.keras_tuning import split_body_prefix

    return split_body_prefix(base_body, first_tuned).get_weights()


def _same_weights(mine: list[np.ndarray], theirs: list[np.ndarray]) -> bool:
    return len(mine) == len(theirs) and all(np.array_equal(x, y) for x, y in zip(mine, theirs, strict=True))


STRATEGIES: dict[str, Strategy] = {
    "last_layer": Strategy(last_layer, crossval_last_layer, prepare_last_layer),
    "last_k_layers": Strategy(last_k_layers, crossval_last_k, prepare_last_k, check_last_k),
}


def get_strategy(name: str) -> Strategy:
    """The strategy registered under `name`; an error listing the valid names otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        choices = ", ".join(STRATEGIES)
        raise LandCoverError(f"unknown fine-tune strategy {name!r}; choose one of: {choices}") from None
