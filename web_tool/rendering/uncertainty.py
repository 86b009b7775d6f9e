"""Where is the model unsure? Per-pixel uncertainty as an image, and points worth labelling next.

Uncertainty is one minus the margin between the two likeliest classes: 0 = certain, 1 = a tie.
Of the usual scores (entropy, least confidence, margin), the margin picked the most useful clicks
in Robinson et al.'s human-in-the-loop land-cover study (AAAI 2020); on real NAIP here it does not
beat random clicks when it picks the most uncertain pixels anywhere: those lie on the edges between
classes, where labels are least sure. So suggestions on a map the session learnt are the most
uncertain pixels *inside* areas of one predicted class (5 x 5 px), at most one per cell of a
coarse lattice and at least a cell apart, so they spread over the patch; and the predicted classes
take turns, so a rare class (a few roofs) gets labels too. On the base model's map (before the
first retrain) they are spread at random over the patch instead: a network trained elsewhere can be
sure and wrong, and until corrections have shown how far it is right its doubt says little about
where a label helps. bench/hitl_real.py --strategy suggested, 4 seeds, random clicks in the same
run (2026-12-03): naip2014 at 25 / 200 clicks 0.914 / 0.942 accuracy (random 0.898 / 0.934; doubt
from the start, an earlier run: 0.882 / 0.939), naip2011 0.848 / 0.898 (random 0.812 / 0.889):
ahead in accuracy at every round, but behind in mean IoU on naip2014 (0.609 against 0.629 at 200,
on Built). See docs/LEARNING.md.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from web_tool.geometry import Grid

#: how suggestions are picked: from the map's doubt, or spread at random (a map not yet learnt)
SuggestionRule = Literal["uncertainty", "random"]
#: how many labelling suggestions a prediction carries
N_SUGGESTIONS = 5
#: suggestions lie at least this fraction of the patch's shorter side apart (and >= 4 px)
MIN_SPACING = 0.15


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """HxW uncertainty in [0, 1] of HxWxC probabilities: 1 minus the margin of the top two."""
    if probs.shape[-1] < 2:
        return np.zeros(probs.shape[:-1], np.float32)
    first, second = top_two(probs)
    score: np.ndarray = (1.0 - (first - second)).clip(0, 1).astype(np.float32)  # numpy says Any
    return score


def top_two(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HxW highest and second highest of HxWxC (C >= 2) probabilities. With few classes a pass per
    class is 5x faster than np.partition (2 vs 11 ms at 512 x 512 x 4), with many it is slower."""
    if probs.shape[-1] > 8:
        top2 = np.partition(probs, -2, axis=-1)[..., -2:]
        return top2[..., 1], top2[..., 0]
    first, second = probs[..., 0].copy(), np.zeros(probs.shape[:-1], probs.dtype)  # probabilities >= 0
    for c in range(1, probs.shape[-1]):
        np.maximum(second, np.minimum(first, probs[..., c]), out=second)
        np.maximum(first, probs[..., c], out=first)
    return first, second


def uncertainty_rgba(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """HxWx4 uint8: transparent where certain, more opaque magenta the less certain; 0 where invalid."""
    alpha = (score * 255).astype(np.uint8) * valid.astype(np.uint8)
    rgb = np.empty((*score.shape, 3), np.uint8)
    rgb[...] = (255, 0, 255)
    return np.dstack([rgb, alpha])


#: suggestions lie inside an area of one predicted class at least this many pixels across
INTERIOR_RADIUS = 2


def interior(classes: np.ndarray, radius: int = INTERIOR_RADIUS) -> np.ndarray:
    """HxW: whether the pixel's (2r+1)^2 neighbourhood of the HxW uint8 class map holds one class."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    low = cv2.erode(classes, kernel, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(classes, kernel, borderType=cv2.BORDER_REPLICATE)
    same: np.ndarray = low == high
    return same


def suggestions(
    score: np.ndarray,
    valid: np.ndarray,
    grid: Grid,
    n: int = N_SUGGESTIONS,
    classes: np.ndarray | None = None,
    by: SuggestionRule = "uncertainty",
) -> list[dict[str, float]]:
    """Up to `n` of the most uncertain pixels, spread apart, as {"x", "y", "score"} in grid's CRS;
    with the HxW uint8 class map `classes`, only pixels inside an area of one predicted class, the
    classes taking turns (the class with the most uncertain pixel left goes first in each round).
    `by` "random" (for a map not yet learnt from corrections): `n` pixels spread apart at random
    instead (the same ones for the same grid), their "score" the random draw that ranked them."""
    if by == "random":
        score, classes = at_random(grid, score.shape), None
    h, w = score.shape
    spacing = max(4, int(min(h, w) * MIN_SPACING))
    keep = valid if classes is None else valid & interior(classes)
    masked = np.where(keep if keep.any() else valid, score, -1.0)
    points: list[tuple[float, int, int]] = []
    for r0 in range(0, h, spacing):  # the best pixel of each cell
        for c0 in range(0, w, spacing):
            cell = masked[r0 : r0 + spacing, c0 : c0 + spacing]
            i, j = np.unravel_index(int(cell.argmax()), cell.shape)
            if cell[i, j] >= 0:
                points.append((float(cell[i, j]), r0 + int(i), c0 + int(j)))
    # the predicted classes take turns, most uncertain first within each: a rare class (a few
    # roofs) gets labels too, instead of only the class whose area holds the most doubt
    queues: dict[int, list[tuple[float, int, int]]] = {}
    for point in sorted(points, reverse=True):
        key = 0 if classes is None else int(classes[point[1], point[2]])
        queues.setdefault(key, []).append(point)
    chosen: list[tuple[float, int, int]] = []
    while len(chosen) < n and any(queues.values()):
        for queue in sorted((q for q in queues.values() if q), key=lambda q: -q[0][0]):
            while queue:
                s, r, c = queue.pop(0)
                if all((r - r2) ** 2 + (c - c2) ** 2 >= spacing**2 for _, r2, c2 in chosen):
                    chosen.append((s, r, c))
                    break
            if len(chosen) == n:
                break
    out = []
    for s, r, c in chosen:
        x, y = grid.transform @ (c + 0.5, r + 0.5)
        out.append({"x": float(x), "y": float(y), "score": round(s, 4)})
    return out


def at_random(grid: Grid, shape: tuple[int, ...]) -> np.ndarray:
    """`shape` uniform draws in [0, 1), seeded by `grid` (the same square gets the same points)."""
    seed = [abs(round(v * 1000)) % 2**32 for v in grid.transform[:6]] + list(shape)
    draws: np.ndarray = np.random.default_rng(seed).random(shape, np.float32)
    return draws
