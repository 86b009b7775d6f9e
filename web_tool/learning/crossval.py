"""Did retraining help? Cross-validation over the corrections, with counts, and a learning curve.

The corrections are split into folds, whole corrections at a time (a click, a stroke) and each
class spread over the folds; each fold is predicted by a model fitted without it (nor its anchors:
they lie right next to it). So every score is measured where the model did not learn. A correction
counts once however many pixels it labels. A class is scored once it has MIN_PER_CLASS
corrections; below MIN_CORRECTIONS in all, or with fewer than two classes scored, there are "too
few corrections to measure".

Corrections are chosen where the map was wrong, so these scores are pessimistic and say nothing
unbiased about the map as a whole: that is what a validation sample is for (web_tool.validate).
They do say whether more clicks help, and a retrain whose score falls clearly below the last one
is flagged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from web_tool.learning.training_data import Samples
from web_tool.ServerModels.heads import Head

FOLDS = 5
MIN_CORRECTIONS = 10
MIN_PER_CLASS = 5


def fold_of(values: list[int], folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold for each correction (by its class `values`): each class dealt round the folds in a
    seeded random order."""
    rng = np.random.default_rng(seed)
    values_arr = np.asarray(values)
    out = np.zeros(len(values_arr), np.int64)
    start = 0
    for value in np.unique(values_arr):
        idx = rng.permutation(np.flatnonzero(values_arr == value))
        out[idx] = (start + np.arange(len(idx))) % folds
        start += len(idx)
    return out


def too_few(n: int, scored: int) -> dict[str, Any]:
    return {
        "corrections": n,
        "note": f"too few corrections to measure: {n} in all ({scored} classes with"
        f" at least {MIN_PER_CLASS}); cross-validation needs {MIN_CORRECTIONS} in all and two classes"
        f" with {MIN_PER_CLASS} each",
    }


def cross_validate(
    samples: Samples,
    values: list[int],
    classes: list[dict[str, Any]],
    fit: Callable[[Samples], Head],
    folds: int = FOLDS,
) -> dict[str, Any]:
    """Per-correction accuracy and per-class precision/recall/F1 from `folds`-fold cross-validation.

    `samples` are the training samples (`group` = index into `values`, the corrections' classes);
    `fit` makes a head from samples.
    """
    counts = np.bincount(np.asarray(values, np.int64), minlength=len(classes))
    scored = int(np.sum(counts >= MIN_PER_CLASS))
    if len(values) < MIN_CORRECTIONS or scored < 2:
        return too_few(len(values), scored)
    fold = fold_of(values, folds)
    truth, predicted = np.asarray(values), np.full(len(values), -1)
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        is_held = np.isin(samples.group, held)
        train = samples.subset(~is_held)
        if len(np.unique(train.y)) < 2:
            continue
        head = fit(train)
        test = samples.subset(is_held & samples.labelled)
        probs = head.predict(test.x)
        for g in held:  # a correction's vote: the mean of its pixels' probabilities
            mine = test.group == g
            if mine.any():
                predicted[g] = int(probs[mine].mean(axis=0).argmax())
    return scores(truth, predicted, classes, counts)


def scores(
    truth: np.ndarray, predicted: np.ndarray, classes: list[dict[str, Any]], counts: np.ndarray
) -> dict[str, Any]:
    done = predicted >= 0
    n = int(done.sum())
    accuracy = float(np.mean(truth[done] == predicted[done])) if n else 0.0
    per_class = []
    for k, cls in enumerate(classes):
        if not counts[k]:
            continue
        row: dict[str, Any] = {"class": k, "name": cls["name"], "corrections": int(counts[k])}
        if counts[k] < MIN_PER_CLASS:
            row["note"] = f"too few corrections to measure ({counts[k]} of {MIN_PER_CLASS})"
        else:
            tp = int(np.sum(done & (predicted == k) & (truth == k)))
            said, actual = int(np.sum(done & (predicted == k))), int(np.sum(done & (truth == k)))
            precision = tp / said if said else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            row.update(precision=round(precision, 4), recall=round(recall, 4), f1=round(f1, 4))
        per_class.append(row)
    return {
        "corrections": int(len(truth)),
        "scored": n,
        "folds": FOLDS,
        "accuracy": round(accuracy, 4),
        "accuracy_se": round(float(np.sqrt(accuracy * (1 - accuracy) / max(n, 1))), 4),
        "per_class": per_class,
    }


def compare(metrics: dict[str, Any], curve: list[dict[str, Any]]) -> dict[str, Any]:
    """`metrics` with `worse` set when its accuracy is more than two standard errors below the last
    measured point of `curve` (the learning curve so far)."""
    last = next((p for p in reversed(curve) if "accuracy" in p), None)
    if "accuracy" not in metrics or last is None:
        return {**metrics, "worse": False}
    se = np.hypot(metrics["accuracy_se"], last["accuracy_se"])
    return {
        **metrics,
        "worse": bool(metrics["accuracy"] < last["accuracy"] - 2 * se),
        "accuracy_before": last["accuracy"],
    }


def summary(metrics: dict[str, Any]) -> str:
    """One line for the retrain message."""
    if "accuracy" not in metrics:
        note: str = metrics.get("note", "not measured")  # too_few's and crossval_last_k's note
        return note
    line = (
        f"cross-validated on {metrics['scored']} corrections: accuracy {metrics['accuracy']:.2f}"
        f" ± {2 * metrics['accuracy_se']:.2f}"
    )
    if metrics.get("worse"):
        line += f", WORSE than before ({metrics['accuracy_before']:.2f}): undo this retrain?"
    return line
