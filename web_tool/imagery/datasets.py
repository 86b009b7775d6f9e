"""Dataset configuration: which rasters make up a named dataset, their bands, scaling and classes.

Datasets come from `web_tool/datasets.json` or from `--dataset [NAME=]PATH` on the command line.
Paths in the JSON file are relative to the file itself; a path may also be a URL (`https://`,
`s3://`, `gs://`) that GDAL reads remotely. Every mistake is a ConfigError that names the
dataset, the key or path, and the fix; `from_json` skips a bad entry with a warning so that one
typo does not take the other datasets down.
"""

from __future__ import annotations

import difflib
import glob
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import ErrorDetails

from web_tool.errors import ConfigError
from web_tool.paths import DEMO_DATA

log = logging.getLogger(__name__)

DEFAULT_CLASSES = [
    {"name": "Water", "color": "#0000FF"},
    {"name": "Forest", "color": "#008000"},
    {"name": "Field", "color": "#80FF80"},
    {"name": "Built", "color": "#806060"},
]
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
#: URL schemes of rasters read where they live, and GDAL's virtual file system for each
REMOTE_SCHEMES = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}


@dataclass
class DatasetConfig:
    """One named dataset: its raster files, the source bands that feed the model, their scaling,
    its classes. `bands` None: every band that is not alpha; `scale` None: from the statistics."""

    name: str
    paths: list[str]
    bands: list[int] | None = None
    classes: list[dict[str, Any]] = field(default_factory=lambda: [dict(c) for c in DEFAULT_CLASSES])
    label_paths: list[str] = field(default_factory=list)
    default: bool = False
    #: {"min": [...], "max": [...]} or {"percentiles": [low, high]} (see ScaleEntry)
    scale: dict[str, Any] | None = None
    #: value that marks missing pixels in files that declare none
    nodata: float | None = None
    #: ground metres per pixel the dataset is served (and the model fed) at; None: the files' own
    resolution: float | None = None


# --------------------------------------------------------------------------------------------
# datasets.json entries


def one_or_list(value: object) -> object:
    """A scalar as a one-item list; anything else as it is (for pydantic to check)."""
    return [value] if isinstance(value, str | int | float) else value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ClassEntry(Strict):
    name: str = Field(min_length=1)
    color: str = Field(pattern=r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


Numbers = Annotated[list[float], BeforeValidator(one_or_list), Field(min_length=1)]


class ScaleEntry(Strict):
    """Pixel values that become 0 and 255 of the model's input, per band (or one for all bands):
    given as `min` and `max`, or as `percentiles` of the dataset's values, e.g. [2, 98]."""

    min: Numbers | None = None
    max: Numbers | None = None
    percentiles: list[float] | None = Field(default=None, min_length=2, max_length=2)

    @model_validator(mode="after")
    def one_way(self) -> Self:
        if self.percentiles is not None:
            low, high = self.percentiles
            if self.min is not None or self.max is not None:
                raise ValueError("give either min and max, or percentiles, not both")
            if not 0 <= low < high <= 100:
                raise ValueError(f"percentiles must be two numbers 0 <= low < high <= 100, got {low}, {high}")
        elif self.min is None or self.max is None:
            raise ValueError('give both "min" and "max" (per band or one for all), or "percentiles": [2, 98]')
        return self


class DatasetEntry(Strict):
    """One entry of datasets.json (see the README)."""

    paths: Annotated[list[str], BeforeValidator(one_or_list), Field(min_length=1)]
    labels: Annotated[list[str], BeforeValidator(one_or_list)] = []
    bands: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1)
    classes: list[ClassEntry] | None = Field(default=None, min_length=1)
    scale: ScaleEntry | None = None
    nodata: float | None = None
    resolution: float | None = Field(default=None, gt=0, le=10_000)
    default: bool = False


KEY_HELP = {
    "paths": 'the raster files: a list of files, folders or globs, e.g. ["imagery/*.tif"]',
    "bands": "the 1-based source bands that feed the model's inputs in order, e.g. [1, 2, 3, 4]",
    "labels": "label rasters: a list of files, folders or globs",
    "classes": 'a list of {"name": "Water", "color": "#0000FF"}',
    "scale": '{"min": [...], "max": [...]} or {"percentiles": [2, 98]}',
    "nodata": "one number",
    "resolution": "ground metres per pixel to serve the imagery at, e.g. 1.0",
    "default": "true or false",
}


def valid_keys(loc: list[str]) -> list[str]:
    """The keys allowed in the object at `loc` (the entry, one of its classes, its scale)."""
    parts: dict[str, type[BaseModel]] = {"classes": ClassEntry, "scale": ScaleEntry}
    model = parts.get(loc[0], DatasetEntry) if loc else DatasetEntry
    return list(model.model_fields)


def describe_error(error: ErrorDetails) -> str:
    """One pydantic error in the words of datasets.json."""
    loc = [str(part) for part in error["loc"]]
    key = loc[0] if loc else ""
    where = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:])
    if error["type"] == "extra_forbidden":
        valid = valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        inside = f" in {key}{where.rsplit('.', 1)[0]}" if len(loc) > 1 else ""
        return f"unknown key {loc[-1]!r}{inside}{hint}; the valid keys are: {', '.join(valid)}"
    if error["type"] == "missing" and len(loc) == 1:
        return f"missing key {key!r}: {KEY_HELP.get(key, '')}"
    if key == "bands" and error["type"] == "greater_than_equal":
        return f"bands{where}: band numbers start at 1 (got {error['input']!r}); {KEY_HELP['bands']}"
    if key in KEY_HELP and len(loc) <= 2 and error["type"] != "value_error":
        return f"{key}{where} is {error['input']!r}: expected {KEY_HELP[key]}"
    return f"{key}{where}: {error['msg'].removeprefix('Value error, ')}"


def describe_errors(errors: list[ErrorDetails]) -> str:
    """All errors of an entry; a missing key that a misspelt one explains is not said twice."""
    typos = {e["loc"][-1] for e in errors if e["type"] == "extra_forbidden"}
    said = []
    for error in errors:
        missing = error["type"] == "missing" and str(error["loc"][-1])
        if missing and difflib.get_close_matches(missing, [str(t) for t in typos], n=1):
            continue
        said.append(describe_error(error))
    return "; ".join(said)


def validate_entry(name: str, entry: object) -> DatasetEntry:
    if not isinstance(entry, dict):
        raise ConfigError(f'dataset {name!r}: its settings must be an object like {{"paths": [...]}}')
    try:
        return DatasetEntry.model_validate(entry)
    except ValidationError as exc:
        raise ConfigError(f"dataset {name!r}: {describe_errors(exc.errors())}") from None


# --------------------------------------------------------------------------------------------
# paths


def remote_path(spec: str) -> str | None:
    """The GDAL path of a raster that lives elsewhere, or None for a local path: `https://…` (and
    `http://…`) go through /vsicurl/, `s3://bucket/key` and `gs://bucket/key` through /vsis3/ and
    /vsigs/ (credentials from GDAL's usual environment variables); a `/vsi…` path is kept as it is."""
    if spec.startswith("/vsi"):
        return spec
    scheme, sep, rest = spec.partition("://")
    prefix = REMOTE_SCHEMES.get(scheme.lower()) if sep else None
    if prefix is None:
        return None
    return prefix + (spec if prefix == "/vsicurl/" else rest)


def expand_paths(spec: str | os.PathLike[str], base: Path | None = None) -> list[str]:
    """The raster files a path spec names: a file, a directory (searched recursively) or a glob;
    or one remote raster (see `remote_path`)."""
    if (remote := remote_path(str(spec))) is not None:
        return [remote]
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.suffix.lower() in RASTER_SUFFIXES)
        return sorted(str(p) for p in found)
    if any(ch in str(path) for ch in "*?["):
        return sorted(glob.glob(str(path), recursive=True))
    return [str(path)] if path.exists() else []


def no_files_hint(path: Path) -> str:
    """What to do when `path` names no raster: the demo's own hint, or a spelling check."""
    if DEMO_DATA in (path, *path.parents):
        return "the demo imagery is not built yet: run `make demo` (or `make demo-data`)"
    if path.is_dir():
        return f"the folder holds no raster file ({', '.join(RASTER_SUFFIXES)})"
    existing = next((p for p in path.parents if p.exists()), None)
    return f"check the spelling (the nearest folder that exists is {existing})"


def expand_all(name: str, key: str, specs: list[str], base: Path | None, required: bool = True) -> list[str]:
    """The files of every spec; a warning names each spec that matches nothing, or, when none
    matches and the files are `required`, a ConfigError."""
    found = {spec: expand_paths(spec, base) for spec in specs}
    for spec, paths in found.items():
        resolved = base / spec if base is not None and not Path(spec).is_absolute() else Path(spec)
        if not paths and (any(found.values()) or not required):
            log.warning(
                "dataset %r: %s entry %r matches no raster file (looked at %s); %s",
                name,
                key,
                spec,
                resolved,
                no_files_hint(resolved),
            )
        elif not paths and spec == specs[-1]:
            raise ConfigError(
                f"dataset {name!r}: no raster file matches {key} {specs!r} (looked at"
                f" {resolved}); {no_files_hint(resolved)}"
            )
    return [p for paths in found.values() for p in paths]


def make_config(name: str, entry: DatasetEntry, base: Path | None) -> DatasetConfig:
    """The DatasetConfig of a validated entry; ConfigError when its paths (or labels) match no file."""
    classes = [c.model_dump() for c in entry.classes] if entry.classes else [dict(c) for c in DEFAULT_CLASSES]
    return DatasetConfig(
        name=name,
        paths=expand_all(name, '"paths"', entry.paths, base),
        bands=entry.bands,
        classes=classes,
        label_paths=expand_all(name, '"labels"', entry.labels, base, required=False),
        default=entry.default,
        scale=entry.scale.model_dump(exclude_none=True) if entry.scale else None,
        nodata=entry.nodata,
        resolution=entry.resolution,
    )


# --------------------------------------------------------------------------------------------
# the two sources


def cli_name_path(spec: str, index: int = 0) -> tuple[str, str]:
    """(name, path) of one `--dataset [NAME=]PATH` argument (a URL's own "=" names nothing)."""
    named = re.match(r"([^/:=?]+)=(.+)", spec)
    name, path = named.groups() if named else ("", spec)
    return name or Path(path.rstrip("/*")).stem or f"dataset{index}", path


def cli_name(spec: str, index: int = 0) -> str:
    return cli_name_path(spec, index)[0]


def cli_spec(spec: str, index: int = 0) -> DatasetConfig:
    """The dataset of one `--dataset [NAME=]PATH` argument; ConfigError naming the path if it has no files."""
    name, path = cli_name_path(spec, index)
    paths = expand_paths(path)
    if not paths:
        raise ConfigError(
            f"--dataset {spec!r}: no raster file at {path!r}; {no_files_hint(Path(path).absolute())}"
        )
    return DatasetConfig(name=name, paths=paths, default=(index == 0))


def from_cli(specs: list[str]) -> list[DatasetConfig]:
    """Datasets from `--dataset [NAME=]PATH` arguments; the first is the default."""
    return [cli_spec(spec, i) for i, spec in enumerate(specs)]


def read_entries(path: str | os.PathLike[str]) -> dict[str, object]:
    """The raw entries of a datasets.json; ConfigError when the file cannot be read as one."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the dataset config {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(entries, dict):
        raise ConfigError(
            f"{path} must be a JSON object from dataset names to their settings, like"
            f' {{"mydata": {{"paths": ["imagery/*.tif"]}}}}; it holds a {type(entries).__name__}'
        )
    return entries


def json_entry(path: str | os.PathLike[str], name: str, entry: object) -> DatasetConfig:
    """The DatasetConfig of entry `name` of the datasets.json at `path`; ConfigError if it is wrong."""
    return make_config(name, validate_entry(name, entry), Path(path).parent)


def from_json(path: str | os.PathLike[str]) -> list[DatasetConfig]:
    """The good datasets of a `datasets.json` (see the README); bad entries are skipped with a warning."""
    configs = []
    for name, entry in read_entries(path).items():
        try:
            configs.append(json_entry(path, name, entry))
        except ConfigError as exc:
            log.warning("skipping %s", exc)
    if configs and not any(c.default for c in configs):
        configs[0].default = True
    return configs
