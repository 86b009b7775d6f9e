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
  each weighted by the evidence; over a network, the forest may also hand a pixel back to the
  network's own head (`DeferringHead`), where the corrections have shown that head right. Well
  under a second for hundreds of clicks.
- `last_k_layers` (Keras networks only): backpropagation (Keras optimizer) through the last k
  weighted layers (the head counts as one) of a per-session copy of the network, on windows
  around the corrections (loss only on corrected and anchor pixels) and on replay pixels; the
  rest of the network stays frozen. The head stays the network's own linear layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from web_tool.errors import LandCoverError, RequestError
from web_tool.learning.corrections import Correction
from web_tool.learning.crossval import cross_validate
from web_tool.learning.training_data import (
    Extractor,
    FeatureSource,
    Samples,
    Trust,
    base_trust,
    displace_anchors,
    network_gate,
    network_say,
)
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.heads import ClassifierHead, DeferringHead, LinearHead

#: trees of the forest `last_layer` fits (more cost more to predict, and gained nothing measurable
#: on the real development imagery beyond 40: bench/hitl_real.py)
TREES = 40
#: their depth: shallower trees generalise better from a few hundred clicks, and predict faster
MAX_DEPTH = 12
#: the least weight a leaf may hold, in clicks (a click weighs 1): light samples (anchors, replay)
#: cannot carve out leaves of their own around the corrections that contradict them
MIN_LEAF_WEIGHT = 0.5
#: trees of each forest cross-validation fits (five of them cost about one full forest)
CV_TREES = 8
#: threads the forest fits and predicts with
FOREST_JOBS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True)
class Strategy:
    fit: Callable[..., tuple[ServerModel, dict[str, Any]]]
    crossval: Callable[..., dict[str, Any]]
    prepare: Callable[..., None]
    #: `check(base, **options)` raises ModelError at start-up if the strategy cannot tune `base`
    check: Callable[..., None] = lambda base, **_: None


def fit_info(
    corrections: list[Correction], samples: Samples, trust: Trust, say: np.ndarray | None = None
) -> dict[str, Any]:
    labelled = int(samples.labelled.sum())
    replay = int((samples.group < 0).sum())
    info = {
        "pixels": sum(c.count for c in corrections),
        "sampled_pixels": labelled,
        "anchor_pixels": len(samples) - labelled - replay,
        "replay_pixels": replay,
        "base_agreement": round(trust.agreement, 3),
        "base_agreeing": trust.agreeing,
        "base_precision": [round(float(t), 3) for t in trust.precision],
        "base_recall": [round(float(t), 3) for t in trust.recall],
    }
    if say is not None:
        info["network_say"] = [round(float(t), 3) for t in say]
    return info


def check_two_classes(samples: Samples) -> None:
    if len(np.unique(samples.y)) < 2:
        raise RequestError(
            "nothing to tell apart yet: label at least two classes (corrections) before retraining"
        )


# --- last_layer: a forest over all the features ---------------------------------------------


def model_features(model: ServerModel) -> Extractor:
    return model.features


def network_head(model: ServerModel, base: ServerModel) -> LinearHead | None:
    """The network's own head, when the forest over `model`'s features may hand pixels back to it
    (a network's base model, and `model` computes its features)."""
    head = base.head
    return head if isinstance(head, LinearHead) and model.extractor_id == base.extractor_id else None


def cache_key(model: ServerModel, base: ServerModel) -> object:
    """The key `model`'s features are cached under: the base model's extractor, if it is the same."""
    return model.extractor_id if model.extractor_id == base.extractor_id else None


def labelled_samples(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource
) -> tuple[Samples, Trust]:
    """(the corrected pixels' samples over `model`'s features, how far the base model's replay
    sample counts for each class, judged from them)."""
    labelled = source.samples(
        model_features(model), cache_key(model, base), corrections, model.n_classes, None
    )
    return labelled, base_trust(base, model.n_classes, labelled)


def training_samples(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource
) -> tuple[Samples, Trust, np.ndarray | None]:
    """(samples over `model`'s features, how far the base model's replay sample counts for each
    class, how far the network's own map does (None: no network to hand pixels back to))."""
    key, extract = cache_key(model, base), model_features(model)
    labelled, trust = labelled_samples(model, base, corrections, source)
    samples = source.samples(extract, key, corrections, model.n_classes, base_trust=trust)
    network = network_head(model, base)
    if network is None:
        return samples, trust, None
    say = network_say(network, corrections, labelled)
    samples = displace_anchors(samples, network, network_gate(say))
    back = source.handed_back(extract, key, corrections, network, say, label=model.n_classes)
    return (samples if back is None else Samples.concat([samples, back])), trust, say


def fit_forest(
    samples: Samples, n_classes: int, network: LinearHead | None, trees: int = TREES
) -> ClassifierHead:
    """A forest head fitted on `samples`; with a `network`, label `n_classes` hands a pixel back to it."""
    from sklearn.ensemble import RandomForestClassifier

    check_two_classes(samples)
    forest = RandomForestClassifier(
        trees,
        max_depth=MAX_DEPTH,
        n_jobs=FOREST_JOBS,
        random_state=0,
        min_weight_fraction_leaf=min(0.5, MIN_LEAF_WEIGHT / float(samples.w.sum())),
    )
    forest.fit(samples.x, samples.y, sample_weight=samples.w)
    if network is None:
        return ClassifierHead(forest, n_classes)
    return DeferringHead(forest, n_classes, network, defer=n_classes)


def last_layer(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource, **_: object
) -> tuple[ServerModel, dict[str, Any]]:
    """A forest head over the model's features, learnt from corrections, anchors, replay and the
    pixels handed back to the network."""
    samples, trust, say = training_samples(model, base, corrections, source)
    head = fit_forest(samples, model.n_classes, network_head(model, base))
    return model.with_head(head, learnt=True), fit_info(corrections, samples, trust, say)


def crossval_last_layer(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource, **_: object
) -> dict[str, Any]:
    """Cross-validated scores of last_layer on these corrections (smaller forests, same samples)."""
    samples = training_samples(model, base, corrections, source)[0]
    network = network_head(model, base)
    fit = lambda part: fit_forest(part, model.n_classes, network, trees=CV_TREES)  # noqa: E731
    return cross_validate(samples, [c.value for c in corrections], model.classes, fit)


def prepare_last_layer(
    model: ServerModel, base: ServerModel, correction: Correction, source: FeatureSource, **_: object
) -> None:
    if model.extractor_id == base.extractor_id:
        source.values(model_features(model), model.extractor_id, correction)
        if base.trained:
            source.warm_replay(model_features(base), base.extractor_id, model.n_classes)


# --- last_k_layers (Keras networks: ServerModels/keras_tuning.py) ----------------------------


def last_k_layers(
    model: ServerModel,
    base: ServerModel,
    corrections: list[Correction],
    source: FeatureSource,
    k: int = 2,
    steps: int = 100,
    lr: float = 1e-3,
    tail_l2: float = 3.0,
    **_: object,
) -> tuple[ServerModel, dict[str, Any]]:
    """Tune the last `k` weighted layers of a copy of the network.

    The frozen part runs once on each correction's window (cached: it never changes); training sees,
    for every corrected, anchor and replay pixel, the frozen part's output in the patch the tuned
    layers see from it. The head starts from the network's own, then the tail and head are tuned
    together (Adam, full batch, L2 toward where they began).
    """
    from web_tool.ServerModels.keras_tuning import cut, tune

    trust = _base_trust(base, corrections, source)
    part = cut(model, base, k, own_copy=True)
    samples = source.samples(part.extract, part.key, corrections, model.n_classes, trust, part.radius)
    check_two_classes(samples)
    tuned, loss = tune(part, samples.x, samples.y, samples.w / samples.w.sum(), steps, lr, tail_l2)
    layers = [t.name for t in part.tuned] + ["head"]
    info = {**fit_info(corrections, samples, trust), "loss": loss, "layers": layers}
    return tuned, info


def _base_trust(base: ServerModel, corrections: list[Correction], source: FeatureSource) -> Trust:
    return labelled_samples(base, base, corrections, source)[1]


def crossval_last_k(
    model: ServerModel, base: ServerModel, corrections: list[Correction], source: FeatureSource, **_: object
) -> dict[str, Any]:
    note = "not measured: cross-validating last_k_layers would retrain the network once per fold"
    return {"corrections": len(corrections), "note": note}


def check_last_k(base: ServerModel, k: int = 2, **_: object) -> None:
    from web_tool.ServerModels.keras_tuning import check

    check(base, k)


def prepare_last_k(
    model: ServerModel,
    base: ServerModel,
    correction: Correction,
    source: FeatureSource,
    k: int = 2,
    **_: object,
) -> None:
    from web_tool.ServerModels.keras_tuning import cut

    part = cut(model, base, k)
    if part.key is not None:
        source.values(part.extract, part.key, correction, part.radius)


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
