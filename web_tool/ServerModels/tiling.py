"""Run a fully convolutional network over an image of any size and shape, without seams and with
bounded memory.

Images that fit in one window run in one pass (padded to the network's size multiple). Larger
ones are cut into overlapping windows, run in batches, and blended with weights that fall
quadratically to near zero across the overlap, so each output pixel leans on the window that sees it
with the most context. A window is never larger than the image along either axis (a thin strip is
cut along its length only, never padded to a square), and no call of the network sees more than
`max_pixels` pixels: its activations take far more memory than the image (about 0.7 KB a pixel for
the demo U-Net).

`predict_blocks` does the same for a model's class probabilities, whose memory grows with the number
of classes: it predicts an image in strips of rows (in blocks with very many classes), each with real
context around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np

Network = Callable[[np.ndarray], list[np.ndarray]]

#: most pixels one call of the network sees (a padded 1024 px patch still runs in one pass)
MAX_PIXELS = 1_200_000
#: most class probabilities (pixels x classes) that `predict_blocks` asks for at once (128 MB of
#: float32; the model and rendering take a few times that)
MAX_VALUES = 32 * 2**20
#: fewest rows and columns a block predicts besides its context
MIN_BLOCK = 32


def pad_to_multiple(image: np.ndarray, multiple: int, minimum: int = 0) -> np.ndarray:
    """Reflect-pad HxWxB at the bottom/right to a multiple of `multiple` (and at least `minimum`)."""
    h, w = image.shape[:2]
    th = max(minimum, -(-h // multiple) * multiple)
    tw = max(minimum, -(-w // multiple) * multiple)
    if (th, tw) == (h, w):
        return image
    mode: Literal["reflect", "edge"] = "reflect" if h > 1 and w > 1 and th - h < h and tw - w < w else "edge"
    return np.pad(image, ((0, th - h), (0, tw - w), (0, 0)), mode=mode)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window offsets along one axis: stride window-overlap, the last flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, window - overlap))
    return starts + [length - window]


def ramp(window: int, overlap: int) -> np.ndarray:
    """1 in the middle, a quadratic ramp to ~0 over `overlap` at both ends."""
    weights = np.ones(window, dtype=np.float32)
    if overlap > 0:
        edge = ((np.arange(overlap, dtype=np.float32) + 0.5) / overlap) ** 2
        weights[:overlap] = edge
        weights[-overlap:] = edge[::-1]
    return weights


def blend_weights(window: int, overlap: int, width: int | None = None) -> np.ndarray:
    """window x width (default square) weights: 1 in the middle, a quadratic ramp to ~0 over `overlap`
    at the edges. Pixels next to a window's edge (where zero padding spoils the network's view) get
    almost no say wherever another window sees them from further inside."""
    return np.outer(ramp(window, overlap), ramp(width or window, overlap))


def window_shape(
    height: int, width: int, window: int, overlap: int, multiple: int, max_pixels: int
) -> tuple[int, int]:
    """(rows, cols) of the windows for a `height` x `width` image: at most `window` and the image
    along each axis, and at most `max_pixels` in all (the longer side shrinks, in `multiple` steps)."""
    rows, cols = min(window, height), min(window, width)
    smallest = 2 * overlap + multiple
    for _ in range(2):  # the longer side, then (if that was not enough) the other
        if rows * cols <= max_pixels:
            break
        if rows >= cols:
            rows = max(smallest, min(rows, max_pixels // cols // multiple * multiple))
        else:
            cols = max(smallest, min(cols, max_pixels // rows // multiple * multiple))
    return rows, cols


def run_tiled(
    network: Network,
    image: np.ndarray,
    window: int = 1024,
    overlap: int = 64,
    multiple: int = 16,
    batch_size: int = 4,
    max_pixels: int = MAX_PIXELS,
) -> list[np.ndarray]:
    """Apply `network` (NxhxwxB float32 → list of Nxhxwx? arrays) to HxWxB; returns HxWx? arrays."""
    h, w = image.shape[:2]
    padded = pad_to_multiple(image, multiple)
    ph, pw = padded.shape[:2]
    rows, cols = window_shape(ph, pw, window, overlap, multiple, max_pixels)
    if (rows, cols) == (ph, pw):
        return [out[0, :h, :w] for out in network(padded[None])]
    # no ramp along an axis a window spans whole (a strip is blended along its length only)
    weights = np.outer(ramp(rows, overlap if rows < ph else 0), ramp(cols, overlap if cols < pw else 0))
    weights = weights[..., None]
    offsets = [(y, x) for y in window_starts(ph, rows, overlap) for x in window_starts(pw, cols, overlap)]
    per_call = max(1, min(batch_size, max_pixels // (rows * cols)))
    sums: list[np.ndarray] = []
    total = np.zeros((ph, pw, 1), dtype=np.float32)
    for i in range(0, len(offsets), per_call):
        batch_offsets = offsets[i : i + per_call]
        batch = np.stack([padded[y : y + rows, x : x + cols] for y, x in batch_offsets])
        outputs = network(batch)
        if not sums:
            sums = [np.zeros((ph, pw, o.shape[-1]), dtype=np.float32) for o in outputs]
        for j, (y, x) in enumerate(batch_offsets):
            for acc, out in zip(sums, outputs, strict=True):
                acc[y : y + rows, x : x + cols] += out[j] * weights
            total[y : y + rows, x : x + cols] += weights
    return [(acc / total)[:h, :w] for acc in sums]


def block_shape(height: int, width: int, n_classes: int, context: int) -> tuple[int, int]:
    """(rows, cols), context excluded, of the blocks `predict_blocks` cuts a height x width image in:
    strips of whole rows while they fit the budgets, square blocks when even a thin strip would not."""
    budget = max(1, min(MAX_PIXELS, MAX_VALUES // max(1, n_classes)))
    rows = budget // (width + 2 * context) - 2 * context
    if rows >= MIN_BLOCK:
        return min(rows, height), width
    side = max(MIN_BLOCK, math.isqrt(budget) - 2 * context)
    return min(side, height), min(side, width)


def predict_blocks(
    predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, context: int, n_classes: int
) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """`predict` (HxWxB → HxWxC probabilities) over `image`, which has `context` px of real imagery on
    every side, block by block: yields ((rows, cols) of the inner image, their probabilities). Each
    block is predicted with `context` px of the image around it, so memory is bounded by the budgets
    however large the image and however many the classes."""
    height, width = image.shape[0] - 2 * context, image.shape[1] - 2 * context
    rows, cols = block_shape(height, width, n_classes, context)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        for left in range(0, width, cols):
            right = min(width, left + cols)
            probs = predict(image[top : bottom + 2 * context, left : right + 2 * context])
            inner = probs[context : context + bottom - top, context : context + right - left]
            yield (slice(top, bottom), slice(left, right)), inner
