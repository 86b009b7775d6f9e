"""Dataset configuration: which rasters make up a named dataset, their band order and classes.

Datasets come from `web_tool/datasets.json` or from `--dataset PATH` on the command line.
Paths in the JSON file are relative to the file itself; a path may also be a URL (`https://`,
`s3://`, `gs://`) that GDAL reads remotely.
"""

from __future__ import annotations

import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from web_tool.errors import LandCoverError, NotFoundError

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
    """One named dataset: its raster files, which source bands feed R, G, B, NIR, its classes."""

    name: str
    paths: list[str]
    bands: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    classes: list[dict] = field(default_factory=lambda: [dict(c) for c in DEFAULT_CLASSES])
    label_paths: list[str] = field(default_factory=list)
    default: bool = False


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


def expand_paths(spec: str | os.PathLike, base: Path | None = None) -> list[str]:
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


def from_cli(specs: list[str]) -> list[DatasetConfig]:
    """Datasets from `--dataset [NAME=]PATH` arguments; the first is the default."""
    configs = []
    for i, spec in enumerate(specs):
        named = re.match(r"([^/:=?]+)=(.+)", spec)  # NAME=PATH (a URL's own "=" names nothing)
        name, path = named.groups() if named else ("", spec)
        name = name or Path(path.rstrip("/*")).stem or f"dataset{i}"
        paths = expand_paths(path)
        if not paths:
            raise NotFoundError(f"--dataset {spec!r}: no raster files found at {path!r}")
        configs.append(DatasetConfig(name=name, paths=paths, default=(i == 0)))
    return configs


def from_json(path: str | os.PathLike) -> list[DatasetConfig]:
    """Datasets from a `datasets.json` file (see the README for its format)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LandCoverError(f"cannot read dataset config {path}: {exc}") from None
    configs = []
    for name, entry in entries.items():
        paths = [p for spec in entry["paths"] for p in expand_paths(spec, path.parent)]
        labels = [p for spec in entry.get("labels", []) for p in expand_paths(spec, path.parent)]
        configs.append(
            DatasetConfig(
                name=name,
                paths=paths,
                bands=entry.get("bands", [1, 2, 3, 4]),
                classes=entry.get("classes", [dict(c) for c in DEFAULT_CLASSES]),
                label_paths=labels,
                default=bool(entry.get("default", False)),
            )
        )
    if configs and not any(c.default for c in configs):
        configs[0].default = True
    return configs
