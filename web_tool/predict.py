"""The seed's two operations, free of HTTP: imagery for an extent, and a prediction for it.

request (validated) → DataLoader (padded read) → ServerModel (probabilities) → rendering (PNGs).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from web_tool.DataLoader import DataLoader, Patch
from web_tool.errors import ClassIndexError
from web_tool.geometry import Extent
from web_tool.rendering import (
    class_colors,
    hard_rgb,
    png_base64,
    reweight,
    soft_rgb,
    with_alpha,
)
from web_tool.ServerModels.base import ServerModel
from web_tool.uncertainty import suggestions, uncertainty, uncertainty_rgba

#: renders and encodes a response's PNGs side by side (OpenCV and numpy release the GIL)
RENDER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="render")


def input_rgb(patch: Patch) -> np.ndarray:
    """HxWx4 RGBA of the imagery as the map shows it, transparent where there is none."""
    return with_alpha(patch.display, patch.valid)


def read_padded(loader: DataLoader, extent: Extent, pad: int) -> tuple[Patch, Patch]:
    """(patch with `pad` px of context on every side, the same patch cropped to the extent)."""
    grid = loader.grid_for(extent)
    padded = loader.read(grid.padded(pad))
    inner = (slice(pad, pad + grid.height), slice(pad, pad + grid.width))
    return padded, padded.crop(grid, *inner)


def get_input(loader: DataLoader, extent: Extent) -> dict:
    patch = loader.read(loader.grid_for(extent))
    return {"input_naip": png_base64(input_rgb(patch))}


def predict_probs(loader: DataLoader, model: ServerModel, extent: Extent):
    """(patch cropped to the extent, HxWxC probabilities on it)."""
    padded, patch = read_padded(loader, extent, model.padding)
    probs = model.predict(padded.data)
    pad = model.padding
    return patch, probs[pad : pad + patch.grid.height, pad : pad + patch.grid.width]


def pred_patch(
    loader: DataLoader,
    model: ServerModel,
    extent: Extent,
    weights: list[float] | None = None,
    classes: list[dict] | None = None,
) -> dict:
    """The /predPatch response fields for `extent` (besides the echoed request fields)."""
    classes = list(classes or [])
    colors = class_colors(classes + model.classes[len(classes) :])  # classes the request omits: the model's
    if len(colors) != model.n_classes:  # checked before any pixel is read
        raise ClassIndexError(
            f"classes has {len(colors)} entries but the model predicts {model.n_classes} classes"
        )
    if weights is not None and len(weights) != model.n_classes:
        raise ClassIndexError(
            f"weights has {len(weights)} values but the model has {model.n_classes} classes"
        )
    patch, probs = predict_probs(loader, model, extent)
    probs = reweight(probs, weights)
    score = uncertainty(probs)
    images = {
        "input_naip": lambda: input_rgb(patch),
        "output_hard": lambda: with_alpha(hard_rgb(probs, colors), patch.valid),
        "output_soft": lambda: with_alpha(soft_rgb(probs, colors), patch.valid),
        "output_uncertainty": lambda: uncertainty_rgba(score, patch.valid),
    }
    encoded = RENDER_POOL.map(lambda render: png_base64(render()), images.values())
    return {
        "model_name": model.name,
        **dict(zip(images, encoded, strict=True)),
        "suggestions": suggestions(score, patch.valid, patch.grid),
    }
