"""The contract every served model keeps.

A ServerModel turns an HxWxB uint8 image (bands in the dataset's R, G, B, NIR order) into HxWxC
class probabilities, and exposes the per-pixel features that fine-tuning learns from. Learning
from corrections (sessions, retraining, undo) builds on `features` + `set_head` and lives in
its own modules; a model only knows how to predict and how to swap its last layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class ServerModel(ABC):
    """Abstract base: predict class probabilities for an image."""

    #: pixels of real context the model wants on every side of the area it predicts
    padding: int = 0

    def __init__(self, name: str, classes: list[dict]):
        self.name = name
        self.classes = classes

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @abstractmethod
    def predict(self, image: np.ndarray) -> np.ndarray:
        """HxWxB uint8 → HxWxC float32 probabilities (rows sum to 1)."""

    @abstractmethod
    def features(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """HxWxB uint8 → (HxWxF float32 deep features, HxWxC probabilities)."""

    @abstractmethod
    def clone(self) -> ServerModel:
        """An independent copy (a session's model starts as a clone of the base model)."""
