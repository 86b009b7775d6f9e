"""The contract every served model keeps: what predicting, learning, sessions, checkpoints and
mapping use of a model, and nothing more.

A ServerModel is a *feature extractor* and a *head*. The extractor turns an HxWxB image into
per-pixel features; it is fixed for the server's life and shared by every session built on the
same base model. The head turns features into class probabilities; learning from corrections
fits a new head (and, for `last_k_layers`, a tuned extractor), and a session's model is the base
model with its own head. Models are never changed once served: `with_head` returns a new one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Self

import cv2
import numpy as np

from web_tool.errors import IncompatibleError, NotTrainedError
from web_tool.ServerModels.heads import Head, LinearHead, head_from_arrays
from web_tool.ServerModels.state import ModelState

#: the Gaussian (standard deviation, pixels) that smooths a per-pixel head's probabilities: on real
#: NAIP (bench/hitl_real.py, 4 seeds, 200 clicks on errors) 1.5 px lifts mean IoU on naip2014 from
#: 0.635 to 0.674 and accuracy on naip2011 from 0.843 to 0.868; 3 px blurs small buildings away
#: (built IoU 0.34 -> 0.16). Every model's context padding is wider than its kernel (4 sigma).
SMOOTH_PX = 1.5


def edge_filled(image: np.ndarray) -> np.ndarray:
    """HxWxB imagery whose pixels without imagery (every band 0, as DataLoader reads them) take the
    value of the nearest pixel with imagery: a model's context beyond the edge of the imagery (its
    boundary, a hole) then looks like the imagery at that edge, not black. On the real development
    tiles (256 px squares far apart) a forest on the filter bank, 34 random clicks, 6 seeds: 0.897
    accuracy with black around the tiles, 0.920 with their edges carried on (0.879 and 0.918 in the
    30 px along the edges). The image itself when nothing or everything is missing."""
    missing = image[..., 0] == 0
    for band in range(1, image.shape[-1]):  # band by band: 5x faster than image.any(axis=-1)
        missing &= image[..., band] == 0
    if not missing.any() or missing.all():
        return image
    # every pixel's label is that of its nearest pixel with imagery, numbered in raster order (OpenCV's
    # 5x5 approximation of the Euclidean distance: 4x faster than scipy's exact transform at 2048 px)
    _, nearest = cv2.distanceTransformWithLabels(
        missing.astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    imaged = np.flatnonzero(~missing)
    filled: np.ndarray = image.reshape(-1, image.shape[-1])[imaged[nearest.ravel() - 1]].reshape(image.shape)
    return filled


def smoothed(probs: np.ndarray, sigma: float = SMOOTH_PX) -> np.ndarray:
    """HxWxC probabilities, each class's blurred by a Gaussian of `sigma` px (edges mirrored). The
    blur is linear and the same for every class, so each pixel's probabilities still sum to 1."""
    out = np.empty_like(probs)
    for c in range(probs.shape[-1]):
        out[..., c] = cv2.GaussianBlur(np.ascontiguousarray(probs[..., c]), (0, 0), sigma)
    return out


class ServerModel(ABC):
    """Abstract base: a feature extractor and a head, with classes and the context it needs."""

    #: pixels of real context the model wants on every side of the area it predicts
    padding: int = 0
    #: the largest input (pixels a side) the model predicts in one pass; larger ones are tiled, and
    #: large-area mapping keeps its windows within it (None: any size in one pass)
    window: int | None = None
    #: bands the model reads (None: any band count)
    n_bands: int | None = None
    #: whether its head was learnt from a session's corrections (else it is the base model's, maybe
    #: grown by new classes)
    learnt: bool = False

    def __init__(self, name: str, classes: list[dict[str, Any]], head: Head | None):
        self.name = name
        self.classes = [dict(c) for c in classes]
        self.head = head

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def trained(self) -> bool:
        """Whether the model predicts anything yet (a model without weights needs corrections first)."""
        return self.head is not None

    # --- what learning uses --------------------------------------------------------------------

    @abstractmethod
    def features(self, image: np.ndarray) -> np.ndarray:
        """HxWxB uint8 → HxWxF float32: the per-pixel features a head learns from."""

    @property
    @abstractmethod
    def extractor_id(self) -> object:
        """Identifies the feature extractor: equal for models whose `features` are the same function
        (so features computed for one serve the other, and caches can be shared)."""

    def with_head(
        self, head: Head | None, classes: list[dict[str, Any]] | None = None, learnt: bool | None = None
    ) -> Self:
        """A copy of this model with another head (and class list, and whether it was learnt from
        corrections); the extractor is shared."""
        classes = self.classes if classes is None else classes
        if head is not None and head.n_classes != len(classes):
            raise ValueError(f"head has {head.n_classes} outputs but there are {len(classes)} classes")
        other = self._copy()
        other.head, other.classes = head, [dict(c) for c in classes]
        other.learnt = self.learnt if learnt is None else learnt
        return other

    def _copy(self) -> Self:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        return other

    # --- predicting ----------------------------------------------------------------------------

    def predict(self, image: np.ndarray, smooth: bool = True) -> np.ndarray:
        """HxWxB uint8 → HxWxC float32 probabilities (rows sum to 1). NotTrainedError without a head.

        A head fitted pixel by pixel (a forest over features) maps speckle where classes meet, so its
        probabilities are smoothed (`smoothed`) unless `smooth` is False: learning compares the
        user's corrections with the head's own classes (sessions.seen_map)."""
        if self.head is None:
            raise NotTrainedError(untrained_message(self))
        h, w = image.shape[:2]
        feats = self.features(image)
        probs = self.head.predict(feats.reshape(h * w, -1)).reshape(h, w, self.n_classes)
        return smoothed(probs) if smooth and not isinstance(self.head, LinearHead) else probs

    # --- checkpoints ---------------------------------------------------------------------------

    def extractor_state(self) -> list[np.ndarray] | None:
        """The extractor's own weights when they differ from the base model's (None: the base's)."""
        return None

    def with_extractor_state(self, weights: list[np.ndarray]) -> ServerModel:
        """A copy whose extractor has `weights` (as extractor_state gave them); IncompatibleError for
        a model whose extractor has no weights to tune."""
        raise IncompatibleError(
            f"this saved model tuned a network's layers, but model {self.name!r} has none: load it on a"
            " server with the model it was saved with"
        )

    def state(self) -> ModelState:
        head = None if self.head is None else self.head.to_arrays()
        meta = {"learnt": self.learnt}
        return ModelState(head, [dict(c) for c in self.classes], self.extractor_state(), meta)

    def restore(self, state: ModelState) -> ServerModel:
        """The model `state` describes, built on this (base) model. IncompatibleError when it was
        saved with another model."""
        model = self if state.extractor is None else self.with_extractor_state(state.extractor)
        try:
            head = None if state.head is None else head_from_arrays(state.head)
        except (KeyError, ValueError) as exc:
            raise IncompatibleError(f"cannot restore this model state: {exc}") from None
        mine = self.head
        if (
            isinstance(head, LinearHead)
            and isinstance(mine, LinearHead)
            and (head.kernel.shape[0] != mine.kernel.shape[0])
        ):
            raise IncompatibleError(
                f"the saved head expects {head.kernel.shape[0]} features, the served model gives"
                f" {mine.kernel.shape[0]}: it was saved with another model"
            )
        if head is not None and head.n_classes != len(state.classes):
            raise IncompatibleError(
                f"the saved head has {head.n_classes} outputs for {len(state.classes)} classes"
            )
        learnt = state.meta.get("learnt", not isinstance(head, LinearHead) or state.extractor is not None)
        return model.with_head(head, state.classes, learnt=bool(learnt))


def untrained_message(model: ServerModel) -> str:
    return (
        f"model {model.name!r} has not learnt anything yet: label at least two classes"
        " (corrections), then retrain"
    )


__all__ = ["ModelState", "NotTrainedError", "ServerModel"]
