"""Which source bands feed the model's inputs, and which files of a dataset can give them.

Without a `bands` setting, a dataset's bands are those that are not alpha (alpha bands and internal
masks say which pixels are missing; they are never model input). A model that takes a known number
of bands gets the file's red, green, blue (and NIR) bands in that order when the file labels them,
else its first bands; a model that takes any number (`n_bands` None) gets them all.
"""

from __future__ import annotations

import logging
from collections import Counter

from web_tool.errors import ConfigError
from web_tool.imagery.rasterfiles import RasterFile

log = logging.getLogger(__name__)

#: what the model's inputs are called in messages, by how many there are
INPUT_NAMES = {1: ("gray",), 3: ("R", "G", "B"), 4: ("R", "G", "B", "NIR")}
#: colour interpretations that name each input of a 3- or 4-band model
INPUT_COLORS = ("red", "green", "blue", "nir")


def input_names(n: int) -> tuple[str, ...]:
    return INPUT_NAMES.get(n, tuple(f"input {i + 1}" for i in range(n)))


def usable_bands(f: RasterFile) -> list[int]:
    """The file's bands that may feed a model: all but alpha."""
    return [i + 1 for i, c in enumerate(f.colorinterp) if c != "alpha"]


def default_bands(f: RasterFile, n_bands: int | None) -> list[int] | None:
    """The bands of `f` for a model of `n_bands` inputs (None: any): by colour if the file labels
    them, else the first usable ones; None when the file has too few."""
    usable = usable_bands(f)
    if n_bands is None:
        return usable
    if n_bands in (3, 4):
        by_color = [f.colorinterp.index(c) + 1 for c in INPUT_COLORS[:n_bands] if c in f.colorinterp]
        if len(by_color) == n_bands:
            return by_color
    return usable[:n_bands] if len(usable) >= n_bands else None


def too_few_bands(name: str, f: RasterFile, n_bands: int) -> ConfigError:
    usable = usable_bands(f)
    names = input_names(n_bands)
    missing = ", ".join(f"{names[i]} (input {i + 1})" for i in range(len(usable), n_bands))
    example = [*usable, *[usable[0]] * (n_bands - len(usable))] if usable else list(range(1, n_bands + 1))
    alpha = f"; band {f.alpha_band} is alpha, a mask" if f.alpha_band else ""
    return ConfigError(
        f"dataset {name!r}: the model takes {n_bands} bands ({', '.join(names)}) but {f.path} has"
        f" {len(usable)} usable ({f.band_list()}{alpha}): nothing feeds the model's {missing}. Map a"
        f' source band to each model input with "bands" in datasets.json, e.g. "bands": {example},'
        f" or serve this dataset with a {len(usable)}-band model or --model features"
    )


def check_bands(name: str, bands: list[int], f: RasterFile) -> None:
    """ConfigError when `f` cannot give `bands` (out of range, or an alpha band)."""
    for band in bands:
        if band > f.count:
            raise ConfigError(
                f'dataset {name!r}: "bands" asks for band {band} but {f.path} has {f.count} bands'
                f" ({f.band_list()}): list bands 1 to {f.count}"
            )
        if band == f.alpha_band:
            raise ConfigError(
                f'dataset {name!r}: "bands" lists band {band} of {f.path}, its alpha band: alpha is used as'
                " the mask of missing pixels, never as model input; list the image bands only"
            )


def check_count(name: str, bands: list[int], n_bands: int | None) -> None:
    """ConfigError when the configured bands are not one per model input."""
    if n_bands is None or len(bands) == n_bands:
        return
    names = input_names(n_bands)
    fix = (
        f"nothing feeds {', '.join(names[len(bands) :])}"
        if len(bands) < n_bands
        else f"there is no model input for {bands[n_bands:]}"
    )
    raise ConfigError(
        f'dataset {name!r}: "bands" lists {len(bands)} bands {bands} but the model takes {n_bands}'
        f" ({', '.join(names)}): {fix}; list one source band per model input"
    )


def choose_bands(
    name: str, configured: list[int] | None, files: list[RasterFile], n_bands: int | None
) -> tuple[list[int], list[RasterFile]]:
    """(the source bands to read, the files that have them). Files that do not are skipped with a
    warning; ConfigError when none is left, naming the first file's problem and its fix."""
    if configured is not None:
        check_count(name, configured, n_bands)
        bands = configured
    else:
        defaults = [tuple(b) for f in files if (b := default_bands(f, n_bands)) is not None]
        if not defaults and n_bands is not None:  # (a model for any band count takes any file)
            raise too_few_bands(name, files[0], n_bands)
        bands = list(Counter(defaults).most_common(1)[0][0])  # what most files have
    kept, first_error = [], None
    for f in files:
        try:
            if configured is None and default_bands(f, n_bands) != bands:
                raise ConfigError(
                    f"dataset {name!r}: {f.path} has other bands ({f.band_list()}) than most of the"
                    f' dataset\'s files (bands {bands}); set "bands" in datasets.json to say which to use'
                )
            check_bands(name, bands, f)
            kept.append(f)
        except ConfigError as exc:
            first_error = first_error or exc
            if len(files) > 1:
                log.warning("skipping a file: %s", exc)
    if not kept and first_error is not None:
        raise first_error
    return bands, kept
