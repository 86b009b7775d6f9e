"""Run a fully convolutional network over an image of any size without seams.

Images that fit in one window run in one pass (reflect-padded to the network's size multiple).
Larger ones are cut into overlapping windows, run in batches, and blended with weights that fall
quadratically to near zero across the overlap, so each output pixel leans on the window that sees it
with the most context.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Network = Callable[[np.ndarray], list[np.ndarray]]


def pad_to_multiple(image: np.ndarray, multiple: int, minimum: int = 0) -> np.ndarray:
    """Reflect-pad HxWxB at the bottom/right to a multiple of `multiple` (and at least `minimum`)."""
    h, w = image.shape[:2]
    th = max(minimum, -(-h // multiple) * multiple)
    tw = max(minimum, -(-w // multiple) * multiple)
    if (th, tw) == (h, w):
        return image
    mode = "reflect" if h > 1 and w > 1 and th - h < h and tw - w < w else "edge"
    return np.pad(image, ((0, th - h), (0, tw - w), (0, 0)), mode=mode)


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window offsets along one axis: stride window-overlap, the last flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, window - overlap))
    return starts + [length - window]


def blend_weights(window: int, overlap: int) -> np.ndarray:
    """window x window weights: 1 in the middle, a quadratic ramp to ~0 over `overlap` at the edges.

    Pixels next to a window's edge (where zero padding spoils the network's view) get almost no
    say wherever another window sees them from further inside.
    """
    ramp = np.ones(window, dtype=np.float32)
    if overlap > 0:
        edge = ((np.arange(overlap, dtype=np.float32) + 0.5) / overlap) ** 2
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def run_tiled(
    network: Network,
    image: np.ndarray,
    window: int = 1024,
    overlap: int = 64,
    multiple: int = 16,
    batch_size: int = 4,
) -> list[np.ndarray]:
    """Apply `network` (NxhxwxB float32 → list of Nxhxwx? arrays) to HxWxB; returns HxWx? arrays."""
    h, w = image.shape[:2]
    if h <= window and w <= window:
        padded = pad_to_multiple(image, multiple)
        return [out[0, :h, :w] for out in network(padded[None])]
    padded = pad_to_multiple(image, multiple, minimum=window)
    ph, pw = padded.shape[:2]
    weights = blend_weights(window, overlap)[..., None]
    offsets = [(y, x) for y in window_starts(ph, window, overlap)
               for x in window_starts(pw, window, overlap)]  # fmt: skip
    sums: list[np.ndarray] = []
    total = np.zeros((ph, pw, 1), dtype=np.float32)
    for i in range(0, len(offsets), batch_size):
        batch_offsets = offsets[i : i + batch_size]
        batch = np.stack([padded[y : y + window, x : x + window] for y, x in batch_offsets])
        outputs = network(batch)
        if not sums:
            sums = [np.zeros((ph, pw, o.shape[-1]), dtype=np.float32) for o in outputs]
        for j, (y, x) in enumerate(batch_offsets):
            for acc, out in zip(sums, outputs, strict=True):
                acc[y : y + window, x : x + window] += out[j] * weights
            total[y : y + window, x : x + window] += weights
    return [(acc / total)[:h, :w] for acc in sums]
