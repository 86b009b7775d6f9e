"""A model that needs no weights: the imagery's own filter bank, and a head learnt from corrections.

    python web_tool/server.py --model features --dataset my_imagery/

It serves any imagery with any band count. Until the user has labelled at least two classes and
retrained it predicts nothing (`predict` raises NotTrainedError, which the API answers with 409
and the page shows); from then on it learns from every correction, like the Keras models do.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from web_tool.ServerModels.base import ServerModel, edge_filled
from web_tool.ServerModels.filterbank import CONTEXT, filter_bank


class FeatureModel(ServerModel):
    """Per-pixel features from a multi-scale filter bank; no head until corrections train one."""

    padding = CONTEXT + 2
    n_bands = None

    def __init__(
        self,
        model_fn: str | os.PathLike[str] | None = None,
        classes: list[dict[str, Any]] | None = None,
        name: str | None = None,
    ):
        super().__init__(name or "features", classes or [], head=None)

    def features(self, image: np.ndarray) -> np.ndarray:
        return filter_bank(edge_filled(image))

    @property
    def extractor_id(self) -> object:
        return "filter bank"
