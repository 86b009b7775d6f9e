"""Registry of servable models: the `--model` CLI name → the ServerModel class that serves it."""

from __future__ import annotations

import os
from typing import Any, Protocol

from web_tool.errors import LandCoverError
from web_tool.ServerModels.base import ServerModel

# Keras on TensorFlow, without its start-up chatter: set here, so before any module of this package
# imports Keras (Python runs a package's __init__ before its modules)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_REGISTRY: dict[str, str] = {
    # the seed's names for its Keras U-Net models, kept for its launch line
    "nips_hr": "web_tool.ServerModels.keras_model:KerasSegmentationModel",
    "nips_sr": "web_tool.ServerModels.keras_model:KerasSegmentationModel",
    "keras": "web_tool.ServerModels.keras_model:KerasSegmentationModel",
    # no weights: the imagery's own filter bank, learnt from corrections (any band count)
    "features": "web_tool.ServerModels.features_model:FeatureModel",
}


class ModelClass(Protocol):
    """What every registered class is called with: its file (None for a model without weights), the
    classes it should predict (it may keep its own) and an optional display name."""

    def __call__(
        self, model_fn: str | os.PathLike[str] | None, classes: list[dict[str, Any]], name: str | None = None
    ) -> ServerModel: ...


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model(name: str) -> ModelClass:
    """The class registered under `name` (imported lazily: TensorFlow is slow to import)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise LandCoverError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}") from None
    module_name, _, class_name = target.partition(":")
    module = __import__(module_name, fromlist=[class_name])
    model_class: ModelClass = getattr(module, class_name)
    return model_class


__all__ = ["ServerModel", "get_model", "list_models"]
