"""The seed's two operations, free of HTTP: imagery for an extent, and a prediction for it.

request (validated) → DataLoader (padded read) → ServerModel (probabilities) → rendering (PNGs).

The pixel cap counts the canvas the model sees (the extent with its context around it), and the
model sees it in blocks (`tiling.predict_blocks`): the probabilities of all the classes are never
held for the whole extent, only the rendered colours and the uncertainty.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from web_tool.DataLoader import DataLoader, Patch
from web_tool.errors import ClassIndexError, TooLargeError
from web_tool.geometry import Extent, Grid
from web_tool.rendering.images import (
    check_weights,
    class_colors,
    class_rgb,
    png_base64,
    reweight,
    soft_rgb,
    with_alpha,
)
from web_tool.rendering.uncertainty import SuggestionRule, suggestions, uncertainty, uncertainty_rgba
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.tiling import predict_blocks

#: renders and encodes a response's PNGs side by side (OpenCV and numpy release the GIL)
RENDER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="render")


def input_rgb(patch: Patch) -> np.ndarray:
    """HxWx4 RGBA of the imagery as the map shows it, transparent where there is none."""
    return with_alpha(patch.display, patch.valid)


def check_canvas(grid: Grid, pad: int, max_pixels: int) -> None:
    """TooLargeError, before anything is read, when `grid` with `pad` px of context on every side
    holds more than `max_pixels`."""
    width, height = grid.width + 2 * pad, grid.height + 2 * pad
    if width * height > max_pixels:
        raise TooLargeError(
            f"extent is {grid.width} x {grid.height} px; with the {pad} px of context the model needs on"
            f" every side it sees {width} x {height} = {width * height} px, and the limit is {max_pixels}"
            " (the server's --max_patch_pixels): request a smaller extent or use /predTile"
        )


def read_padded(loader: DataLoader, extent: Extent, pad: int) -> tuple[Patch, Patch]:
    """(patch with `pad` px of context on every side, the same patch cropped to the extent)."""
    grid = loader.grid_for(extent)
    check_canvas(grid, pad, loader.max_pixels)
    return loader.read_padded(grid, pad)


def get_input(loader: DataLoader, extent: Extent) -> dict[str, str]:
    patch = loader.read(loader.grid_for(extent))
    return {"input_naip": png_base64(input_rgb(patch))}


def predicted_maps(
    model: ServerModel, padded: Patch, weights: list[float] | None, colors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, hard RGB, soft RGB, uncertainty) HxW maps of the extent inside `padded` (which has
    the model's context on every side), predicted block by block."""
    pad = model.padding
    shape = (padded.grid.height - 2 * pad, padded.grid.width - 2 * pad)
    classes = np.empty(shape, np.uint8)
    hard, soft = np.empty((*shape, 3), np.uint8), np.empty((*shape, 3), np.uint8)
    score = np.empty(shape, np.float32)
    for block, probs in predict_blocks(model.predict, padded.data, pad, model.n_classes):
        classes[block], hard[block], soft[block], score[block] = render_maps(probs, weights, colors)
    return classes, hard, soft, score


def render_maps(
    probs: np.ndarray, weights: list[float] | None, colors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(classes, hard RGB, soft RGB, uncertainty) of HxWxC probabilities, reweighted by `weights`."""
    probs = reweight(probs, weights)
    classes = probs.argmax(axis=-1).astype(np.uint8)
    return classes, class_rgb(classes, colors), soft_rgb(probs, colors), uncertainty(probs)


def encode_maps(patch: Patch, hard: np.ndarray, soft: np.ndarray, score: np.ndarray) -> dict[str, str]:
    """The response's predicted maps as base64 PNGs, transparent where `patch` has no imagery,
    encoded side by side."""
    images = {
        "output_hard": lambda: with_alpha(hard, patch.valid),
        "output_soft": lambda: with_alpha(soft, patch.valid),
        "output_uncertainty": lambda: uncertainty_rgba(score, patch.valid),
    }
    encoded = RENDER_POOL.map(lambda render: png_base64(render()), images.values())
    return dict(zip(images, encoded, strict=True))


def pred_patch(
    loader: DataLoader,
    model: ServerModel,
    extent: Extent,
    weights: list[float] | None = None,
    classes: list[dict[str, Any]] | None = None,
    with_input: bool = True,
) -> dict[str, Any]:
    """The /predPatch response fields for `extent` (besides the echoed request fields); without
    `with_input`, no imagery (`input_naip`): nothing encodes it."""
    classes = list(classes or [])
    colors = class_colors(classes + model.classes[len(classes) :])  # classes the request omits: the model's
    if len(colors) != model.n_classes:  # checked before any pixel is read
        raise ClassIndexError(
            f"classes has {len(colors)} entries but the model predicts {model.n_classes} classes"
        )
    check_weights(weights, model.n_classes)
    padded, patch = read_padded(loader, extent, model.padding)
    # the imagery's PNG is encoded while the model runs
    imagery = RENDER_POOL.submit(lambda: png_base64(input_rgb(patch))) if with_input else None
    class_map, hard, soft, score = predicted_maps(model, padded, weights, colors)
    # a network trained elsewhere can be sure and wrong: its doubt says little before corrections
    by: SuggestionRule = "uncertainty" if model.learnt else "random"
    return {
        "model_name": model.name,
        **({"input_naip": imagery.result()} if imagery is not None else {}),
        **encode_maps(patch, hard, soft, score),
        "suggestions": suggestions(score, patch.valid, patch.grid, classes=class_map, by=by),
        "suggestions_by": by,
    }
