"""Accuracy and IoU of a demo model on held-out synthetic ground and, when it is there, on real NAIP.

    python -m web_tool.demo.evaluate [--data web_tool/data/demo] [--model_fn web_tool/data/demo_model.keras]
                                     [--dev ../shared/data/chesapeake-wv-dev]

Prints a Markdown table: area, pixel accuracy, per-class IoU, mean IoU (over the classes present in
the truth). The areas: the held-out tile of area a; all of area b, the same kinds of ground in
another season and sensor look, where a model trained on area a alone scores clearly lower; and
each look of the real development set (web_tool/demo/devset.py) as the network maps it with no
clicks, on the tiles' own pixel grid (the served map differs a little: the server predicts on the
web map's grid, with the imagery's edge carried on beyond it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import rasterio

from web_tool.demo import devset
from web_tool.demo.scene import CLASSES, DEFAULT_OUT, HOLDOUT

if TYPE_CHECKING:
    import keras

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "demo_model.keras"
PAD_MULTIPLE = 32  # covers U-Nets up to depth 5


class Scores(TypedDict):
    """A model's scores on one area."""

    accuracy: float
    #: per class
    iou: list[float]
    miou: float
    pixels: int
    #: rows = truth, columns = prediction
    confusion: list[list[int]]


def read_tile(data_dir: Path, tile: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(HxWxB uint8 imagery, HxW uint8 labels) of one tile listed in scene.json."""
    with rasterio.open(data_dir / tile["imagery"]) as src:
        image = src.read().transpose(1, 2, 0)
    with rasterio.open(data_dir / tile["labels"]) as src:
        labels = src.read(1)
    return image, labels


def load_scene(data_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(data_dir) / "scene.json"
    if not path.is_file():
        raise SystemExit(
            f"no demo scene at {data_dir} (scene.json missing): run `python -m web_tool.demo.scene`"
        )
    scene: dict[str, Any] = json.loads(path.read_text())
    return scene


def predict_classes(model: keras.Model, image: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """HxW argmax class of `model` (output NxHxWxC) over a uint8 HxWxB image, reflect-padded as needed."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    x = image.astype(np.float32) / 255.0
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    probs: np.ndarray = np.asarray(model(x[None], training=False))[0, :h, :w]
    classes: np.ndarray = probs.argmax(axis=-1)
    return classes.astype(np.uint8)


def confusion(truth: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """n x n counts, rows = truth, columns = prediction (labels outside 0..n-1 are ignored)."""
    valid = truth < n
    return np.bincount(truth[valid].astype(np.int64) * n + pred[valid], minlength=n * n).reshape(n, n)


def scores(cm: np.ndarray) -> Scores:
    """Pixel accuracy, IoU per class (NaN for a class absent from the truth) and their mean."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(cm.sum(1) > 0, tp / np.maximum(union, 1), np.nan)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "iou": [float(v) for v in iou],
        "miou": float(np.nanmean(iou)),
        "pixels": int(cm.sum()),
        "confusion": cm.tolist(),
    }


def evaluation_sets(scene: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{'a (held-out a_r2_c2)': [that tile], 'b': [all tiles of area b]}."""
    areas = {a["name"]: a for a in scene["areas"]}
    holdout = [t for t in areas["a"]["tiles"] if t["name"] == scene.get("holdout", HOLDOUT)]
    return {f"a (held-out {HOLDOUT})": holdout, "b": list(areas["b"]["tiles"])}


def evaluate(model: keras.Model, data_dir: str | os.PathLike[str] = DEFAULT_OUT) -> dict[str, Scores]:
    """{area: {accuracy, iou (per class), miou, pixels, confusion}} for the held-out tile and area b."""
    data_dir = Path(data_dir)
    scene = load_scene(data_dir)
    n = len(scene.get("classes", CLASSES))
    results: dict[str, Scores] = {}
    for name, tiles in evaluation_sets(scene).items():
        cm = np.zeros((n, n), np.int64)
        for tile in tiles:
            image, labels = read_tile(data_dir, tile)
            cm += confusion(labels, predict_classes(model, image), n)
        results[name] = scores(cm)
    return results


def evaluate_real(
    model: keras.Model, classes: Sequence[str], dev_dir: Path = devset.DEV_DIR
) -> dict[str, Scores]:
    """{'real <look>': scores} of the model's own map (no clicks) on each look of the real
    development set, on the tiles' own pixel grid; {} when the set is absent."""
    if not devset.available(dev_dir):
        return {}
    n, lut = len(classes), devset.class_lut(list(classes), len(classes))  # n: ignored by confusion
    results: dict[str, Scores] = {}
    for look in devset.looks(dev_dir):
        cm = np.zeros((n, n), np.int64)
        for tile in devset.tiles(look, dev_dir):
            cm += confusion(lut[tile.codes], predict_classes(model, tile.image), n)
        results[f"real {look} (no clicks)"] = scores(cm)
    return results


def markdown_table(results: dict[str, Scores], classes: Sequence[str] = CLASSES) -> str:
    head = ["area", "pixel acc."] + [f"IoU {c}" for c in classes] + ["mean IoU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, r in results.items():
        ious = ["–" if np.isnan(v) else f"{v:.3f}" for v in r["iou"]]
        cells = [name, f"{r['accuracy']:.3f}", *ious, f"{r['miou']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m web_tool.demo.evaluate",
        description="Evaluate a demo model on the held-out tile a_r2_c2 and on the shifted area b "
        "(pixel accuracy, per-class IoU, mean IoU as a Markdown table).",
    )
    parser.add_argument("--data", default=str(DEFAULT_OUT), help="demo scene folder (default: %(default)s)")
    parser.add_argument(
        "--model_fn",
        default=str(DEFAULT_MODEL),
        help="model file, .keras extension optional (default: %(default)s)",
    )
    parser.add_argument(
        "--dev",
        type=Path,
        default=devset.DEV_DIR,
        help="real development set (label tiles in lc/, a folder of imagery per look), skipped when"
        " absent (default: %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the full results as JSON too")
    args = parser.parse_args(argv)

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from web_tool.errors import ModelError
    from web_tool.ServerModels.keras_io import load_keras_model

    try:  # accepts the path with or without its .keras extension, like the server's --model_fn
        model = load_keras_model(args.model_fn)
    except ModelError as exc:
        raise SystemExit(f"{exc}\n(train the demo model with `python -m web_tool.demo.train`)") from None
    t0 = time.perf_counter()
    classes = load_scene(args.data).get("classes", CLASSES)
    real = evaluate_real(model, classes, args.dev)
    if not real:
        print(f"(no real development set at {args.dev}: real imagery skipped)\n")
    results = evaluate(model, args.data) | real
    print(markdown_table(results, classes))
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
