"""Start-up checks: every dataset and the model, against each other, before the server listens.

A dataset that cannot serve (no files, a typo in datasets.json, bands the model cannot take) is
skipped with one warning that names the file or key and the fix; the server refuses to start only
when the model cannot serve or no dataset is left. Classes are settled here once: a dataset whose
classes differ from the model's is served with the model's, so the page, predictions and exports
all use the same names.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from web_tool.DataLoader import DataLoader
from web_tool.errors import ConfigError, LandCoverError, ModelError
from web_tool.imagery import datasets as dataset_config
from web_tool.imagery import overviews
from web_tool.imagery.bands import input_names
from web_tool.imagery.datasets import DatasetConfig
from web_tool.ServerModels import ServerModel, get_model

log = logging.getLogger(__name__)

#: side of the blank image the model predicts once at start-up, to prove it can serve
CHECK_PX = 64

MODEL_CONTRACT = """\
The model contract: --model names a ServerModel class; `keras` (and the seed's names nips_hr,
nips_sr) serves --model_fn, a Keras network with one image input of H x W x B bands, any size or a
fixed one (then it runs tile by tile at that size), fed float32 values in [0, 1] (the imagery's
0..255 / 255; deeper data is scaled to 0..255 first, see "scale" in datasets.json). Its B inputs are
the dataset's "bands" in order (default: the file's red, green, blue, NIR, or its first B bands
that are not alpha). Its output is one probability per class per pixel; the last weighted layer
must be a 1x1 convolution (ideally named "logits"), followed only by an optional BatchNormalization
and a softmax. The classes are the default dataset's when their number matches the network's
outputs, else "Class 0..N-1", used on the page and in exports alike. Every dataset and the model
are checked against each other before the server listens. `features` needs no --model_fn: it
learns every class from corrections over the imagery's own filter bank, any band count."""


def dataset_configs(args: argparse.Namespace) -> list[DatasetConfig]:
    """The datasets the command line names (or datasets.json holds); bad ones skipped with a warning."""
    configs = []
    if args.dataset:
        for i, spec in enumerate(args.dataset):
            try:
                configs.append(dataset_config.cli_spec(spec, i))
            except ConfigError as exc:
                log.warning("skipping %s", exc)
    else:
        configs = dataset_config.from_json(args.datasets_json)
    if not configs:
        source = "--dataset" if args.dataset else args.datasets_json
        raise ConfigError(f"no dataset to serve: none of {source} could be used (see the warnings above)")
    return configs


def check_model_serves(model: ServerModel, n_bands: int) -> None:
    """ModelError unless `model` turns a small blank image into per-pixel class probabilities."""
    try:
        probs = model.predict(np.zeros((CHECK_PX, CHECK_PX, n_bands), dtype=np.uint8))
    except LandCoverError:
        raise
    except Exception as exc:
        raise ModelError(f"the model {model.name!r} fails on a {CHECK_PX} px test image: {exc}") from None
    if probs.shape != (CHECK_PX, CHECK_PX, model.n_classes) or not np.allclose(probs.sum(-1), 1, atol=1e-3):
        raise ModelError(
            f"the model {model.name!r} returned {probs.shape} for a {CHECK_PX} x {CHECK_PX} image: expected"
            f" {model.n_classes} class probabilities per pixel"
        )


@runtime_checkable
class ComputesInBf16(Protocol):
    """A model that has a bf16 twin (the Keras networks: KerasSegmentationModel.in_bfloat16)."""

    def in_bfloat16(self) -> ServerModel: ...


def in_precision(model: ServerModel, precision: str) -> ServerModel:
    """`model` computing in `precision` where that can pay; otherwise as it is, with a warning."""
    if precision == "float32":
        return model
    if not isinstance(model, ComputesInBf16):
        log.warning(
            "--precision bf16: model %r computes in float32 (only Keras networks run in bf16)", model.name
        )
        return model
    from web_tool.ServerModels.precision import cpu_bf16_flag, no_bf16_message

    flag = cpu_bf16_flag()
    if flag is None:
        log.warning("%s", no_bf16_message())
        return model
    log.info(
        "computing the network in bf16 (Keras mixed_bfloat16: bf16 arithmetic, float32 weights) on"
        " this CPU's %s instructions",
        flag,
    )
    return model.in_bfloat16()


def open_datasets(
    configs: list[DatasetConfig], model: ServerModel, args: argparse.Namespace
) -> dict[str, DataLoader]:
    """{name: DataLoader} of the datasets that can serve `model`; the others skipped with a warning."""
    n_bands = model.n_bands
    cache_dir = Path(args.state_dir) / "imagery"
    loaders: dict[str, DataLoader] = {}
    for config in configs:
        try:
            loaders[config.name] = DataLoader(config, args.max_patch_pixels, n_bands, cache_dir)
        except ConfigError as exc:
            log.warning("skipping %s", exc)
    if not loaders:
        raise ConfigError("no dataset left to serve: every one was skipped (see the warnings above)")
    if not any(loader.config.default for loader in loaders.values()):
        next(iter(loaders.values())).config.default = True
    return loaders


def settle_classes(loaders: dict[str, DataLoader], model: ServerModel) -> None:
    """Serve every dataset with the model's classes; warn where they differ from the dataset's."""
    names = [c["name"] for c in model.classes]
    if not names:  # a model that learns its classes from the user's labels
        return
    for loader in loaders.values():
        own = [c["name"] for c in loader.classes]
        if own != names:
            log.warning(
                "dataset %r lists %d classes (%s) but the model %r predicts %d (%s): the model's are used"
                " for it on the page and in exports; list the model's classes in datasets.json to name them",
                loader.name,
                len(own),
                ", ".join(own),
                model.name,
                len(names),
                ", ".join(names),
            )
            loader.config.classes = [dict(c) for c in model.classes]


def describe(loader: DataLoader) -> str:
    """One line per dataset for the start-up log."""
    scaling = loader.scaling
    scale = f"{loader.dtype} scaled by {scaling.source}"
    if scaling.model is not None:
        scale += f" ({scaling.model.describe()})"
    inputs = ", ".join(
        f"{name}←{band}" for name, band in zip(input_names(len(loader.bands)), loader.bands, strict=True)
    )
    resolution = f"{loader.resolution_m:.2f} m"
    if loader.config.resolution is not None:
        resolution = f"served at {resolution} (the files' own {loader.files_resolution_m:.2f} m)"
    return (
        f"dataset {loader.name!r}: {len(loader.files)} file(s), {loader.crs.to_string()},"
        f" {resolution}, model inputs {inputs}, {scale}"
    )


def load(args: argparse.Namespace) -> tuple[dict[str, DataLoader], ServerModel]:
    """(datasets by name, model) for the command line, checked against each other; ConfigError or
    ModelError when the server cannot serve anything."""
    configs = dataset_configs(args)
    default = next((c for c in configs if c.default), configs[0])
    model = in_precision(get_model(args.model)(args.model_fn, classes=default.classes), args.precision)
    loaders = open_datasets(configs, model, args)
    if model.n_bands is not None:  # a model for any band count checks itself
        check_model_serves(model, model.n_bands)
    settle_classes(loaders, model)
    for loader in loaders.values():
        log.info("%s", describe(loader))
        overviews.prepare(loader, Path(args.state_dir) / "imagery")
    return loaders, model
