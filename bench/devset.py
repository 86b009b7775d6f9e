"""The real development patches (../shared/data/chesapeake-wv-dev): imagery, labels and scoring.

Eight 256 x 256 px tiles of real NAIP (EPSG:26917, 1 m) with Chesapeake land-cover labels on the
same pixel grid. Everything here lives on that *native* grid: the labels, the imagery the forests
learn from, the pixels the simulated user clicks, and the predictions that are scored. The tool
answers `/predPatch` on an EPSG:3857 grid instead; `Patch.to_native` samples such an answer at the
centre of every native pixel (nearest neighbour), so the tool and the forests are scored on the
very same 8 x 65,536 pixels against unresampled labels. (Checked once against bench/hitl.py's
way, labels warped into the answer's grid with DataLoader.read(grid, labels=True): the base
model's accuracy came out 0.0853 there and 0.0856 here, and the warped labels sampled back onto
the native grid equal the labels on 99.99 % of the pixels.)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform, transform_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from web_tool.demo.devset import DEV_DIR, class_lut, tiles  # noqa: E402
from web_tool.demo.devset import available as available  # noqa: E402  (the benches' and tests' door)
from web_tool.demo.devset import looks as looks  # noqa: E402

IGNORE = -1  # in `truth`: no label; in a prediction: nothing predicted
WEB_MERCATOR = CRS.from_epsg(3857)


@dataclass
class Patch:
    """One tile: native imagery (HxWx4 uint8), true class per pixel (IGNORE = none), its grid."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    crs: CRS
    transform: Affine
    _lookup: dict = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.truth.shape

    @property
    def bounds_3857(self) -> tuple[float, float, float, float]:
        """The smallest EPSG:3857 box holding the tile (what `/predPatch` is asked for)."""
        h, w = self.shape
        x0, y0 = self.transform.c, self.transform.f
        x1, y1 = self.transform @ (w, h)
        return transform_bounds(self.crs, WEB_MERCATOR, x0, y1, x1, y0, densify_pts=21)

    def centre(self, row: int, col: int) -> tuple[float, float]:
        """(x, y) in the tile's CRS of a native pixel's centre."""
        return self.transform @ (col + 0.5, row + 0.5)

    def pixel_at(self, x: float, y: float, crs: CRS) -> tuple[int, int] | None:
        """(row, col) of the native pixel under a point given in `crs`; None outside the tile."""
        (xs,), (ys,) = transform(crs, self.crs, [x], [y])
        col, row = ~self.transform @ (xs, ys)
        row, col = int(np.floor(row)), int(np.floor(col))
        h, w = self.shape
        return (row, col) if 0 <= row < h and 0 <= col < w else None

    def to_native(self, image: np.ndarray) -> np.ndarray:
        """An image covering `bounds_3857` exactly, sampled at every native pixel centre (HxW[xC])."""
        if image.shape[:2] not in self._lookup:
            self._lookup[image.shape[:2]] = self._native_index(*image.shape[:2])
        rows, cols = self._lookup[image.shape[:2]]
        return image[rows, cols]

    def _native_index(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.shape
        cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        xs, ys = self.transform @ (cols.ravel(), rows.ravel())
        mx, my = (np.asarray(v) for v in transform(self.crs, WEB_MERCATOR, xs, ys))
        xmin, ymin, xmax, ymax = self.bounds_3857
        c = np.clip(np.floor((mx - xmin) / (xmax - xmin) * width), 0, width - 1).astype(int)
        r = np.clip(np.floor((ymax - my) / (ymax - ymin) * height), 0, height - 1).astype(int)
        return r.reshape(h, w), c.reshape(h, w)


def load(look: str, classes: list[str], root: Path = DEV_DIR) -> list[Patch]:
    """The tiles of `look` with their labels as indices into `classes` (the tool's class names)."""
    lut = class_lut(classes, IGNORE)
    return [Patch(t.stem, t.image, lut[t.codes], t.crs, t.transform) for t in tiles(look, root)]


def present_classes(patches: list[Patch]) -> list[int]:
    """The class indices that label at least one pixel."""
    return sorted(int(k) for k in np.unique(np.concatenate([p.truth.ravel() for p in patches])) if k >= 0)


def interior(truth: np.ndarray) -> np.ndarray:
    """Labelled pixels whose 3x3 neighbourhood holds one label: not on an edge between classes."""
    t = truth.astype(np.int16)
    kernel = np.ones((3, 3), np.uint8)
    low, high = cv2.erode(t, kernel), cv2.dilate(t, kernel)
    return (low == high) & (t >= 0)


def confusion(patches: list[Patch], preds: list[np.ndarray], n_classes: int) -> np.ndarray:
    """n x n counts (true row, predicted column) over every labelled pixel; a pixel predicted as
    nothing (IGNORE) is wrong and counted in no column."""
    cm = np.zeros((n_classes, n_classes + 1), np.int64)
    for patch, pred in zip(patches, preds, strict=True):
        valid = patch.truth >= 0
        t, p = patch.truth[valid].astype(int), pred[valid].astype(int)
        p = np.where(p < 0, n_classes, p)
        cm += np.bincount(t * (n_classes + 1) + p, minlength=n_classes * (n_classes + 1)).reshape(cm.shape)
    return cm


def score(patches: list[Patch], preds: list[np.ndarray], n_classes: int) -> dict:
    """Pixel accuracy, IoU of each class present in the labels, and their mean (mIoU)."""
    return scores(confusion(patches, preds, n_classes), present_classes(patches))


def scores(cm: np.ndarray, present: list[int]) -> dict:
    """Pixel accuracy, IoU of each class in `present`, and their mean."""
    n = cm.shape[0]
    tp = np.diag(cm[:, :n])
    union = cm[:, :n].sum(0) + cm.sum(1) - tp
    iou = {k: float(tp[k] / union[k]) if union[k] else 0.0 for k in present}
    return {"accuracy": float(tp.sum() / cm.sum()), "miou": float(np.mean(list(iou.values()))), "iou": iou}
