"""Did retraining help? A stratified hold-out of the corrections and per-class scores on it.

Whole corrections (a click, a stroke) are held out, never single pixels of one, so the score is
measured on places the model did not learn from. A class takes part once it has `min_per_class`
corrections; with none that does, there are too few corrections for a hold-out.
"""

from __future__ import annotations

import numpy as np

from web_tool.corrections import Correction

MIN_PER_CLASS = 3
FRACTION = 0.2


def split(corrections: list[Correction], fraction: float = FRACTION, min_per_class: int = MIN_PER_CLASS,
          seed: int = 0) -> tuple[list[Correction], list[Correction]]:  # fmt: skip
    """(train, held out): about `fraction` of each class's corrections held out (a fixed draw)."""
    rng = np.random.default_rng(seed)
    held_idx: set[int] = set()
    values = np.array([c.value for c in corrections])
    for value in np.unique(values):
        idx = np.flatnonzero(values == value)
        if idx.size >= min_per_class:
            n = max(1, int(round(fraction * idx.size)))
            held_idx.update(rng.choice(idx, size=n, replace=False).tolist())
    train = [c for i, c in enumerate(corrections) if i not in held_idx]
    held = [c for i, c in enumerate(corrections) if i in held_idx]
    return train, held


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, macro F1 and per-class precision/recall/F1/support."""
    per_class = []
    for k in range(n_classes):
        tp = int(np.sum((y_pred == k) & (y_true == k)))
        predicted, actual = int(np.sum(y_pred == k)), int(np.sum(y_true == k))
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append({"precision": precision, "recall": recall, "f1": f1, "support": actual})
    present = [p["f1"] for p in per_class if p["support"]]
    return {"accuracy": float(np.mean(y_true == y_pred)) if y_true.size else 0.0,
            "macro_f1": float(np.mean(present)) if present else 0.0, "per_class": per_class}  # fmt: skip


def report(y_true: np.ndarray, before: np.ndarray, after: np.ndarray, classes: list[dict], held: int) -> dict:
    """The `metrics` of a /retrainModel answer: scores after retraining, and before for comparison."""
    old, new = scores(y_true, before, len(classes)), scores(y_true, after, len(classes))
    per_class = []
    for k, (cls, o, n) in enumerate(zip(classes, old["per_class"], new["per_class"], strict=True)):
        if n["support"] or o["support"]:
            row = {"class": k, "name": cls["name"], **_rounded(n), "f1_before": round(o["f1"], 4)}
            per_class.append(row)
    return {"holdout_corrections": held, "holdout_pixels": int(y_true.size),
            "accuracy": round(new["accuracy"], 4), "accuracy_before": round(old["accuracy"], 4),
            "macro_f1": round(new["macro_f1"], 4), "macro_f1_before": round(old["macro_f1"], 4),
            "per_class": per_class}  # fmt: skip


def too_few(corrections: list[Correction], min_per_class: int = MIN_PER_CLASS) -> dict:
    return {"holdout_corrections": 0, "holdout_pixels": 0,
            "note": f"too few corrections for a hold-out: a class needs at least {min_per_class}"
                    f" corrections (have {len(corrections)} in all)"}  # fmt: skip


def summary(metrics: dict) -> str:
    """One line for the retrain message."""
    if not metrics.get("holdout_pixels"):
        return metrics.get("note", "no hold-out")
    return (f"hold-out of {metrics['holdout_corrections']} corrections ({metrics['holdout_pixels']} px):"
            f" accuracy {metrics['accuracy_before']:.2f} -> {metrics['accuracy']:.2f},"
            f" macro F1 {metrics['macro_f1_before']:.2f} -> {metrics['macro_f1']:.2f}")  # fmt: skip


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}
