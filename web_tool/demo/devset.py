"""The real development set: NAIP tiles with Chesapeake land-cover labels on the same pixel grid.

``../shared/data/chesapeake-wv-dev/`` (beside the repository; a fresh clone has none) holds label
tiles ``lc/<stem>_lc.tif`` and one folder of imagery per look of the same ground
(``naip2014/<stem>_naip2014.tif``, ``naip2011/...``). Another folder of that layout works too. It is
for measuring only: nothing trains on it. `make evaluate` scores the demo model's own map on it;
`bench/devset.py` builds the benchmarks' patches on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

DEV_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "chesapeake-wv-dev"
#: the looks of ../shared/data/chesapeake-wv-dev; another folder of the same layout may have others
LOOKS = ("naip2014", "naip2011")
#: the data README's mapping of label codes to the tool's classes (15 = no data: ignored)
CODE_CLASS = {1: "Water", 2: "Forest", 3: "Field", 4: "Built", 5: "Built", 6: "Built"}


class Tile(NamedTuple):
    """One label tile and its imagery in one look."""

    stem: str
    #: HxWx4 uint8 (R, G, B, NIR)
    image: np.ndarray
    #: HxW label codes
    codes: np.ndarray
    crs: CRS
    transform: Affine


def looks(root: Path = DEV_DIR) -> list[str]:
    """The imagery folders beside `lc/` (each a look of the same ground), the known ones first."""
    found = sorted(p.name for p in root.glob("*") if p.is_dir() and p.name != "lc" and any(p.glob("*.tif")))
    return [k for k in LOOKS if k in found] + [k for k in found if k not in LOOKS]


def available(root: Path = DEV_DIR) -> bool:
    return (root / "lc").is_dir() and bool(looks(root))


def imagery_path(root: Path, look: str, stem: str) -> Path:
    """The image of label tile `stem` in `look`: `<stem>_<look>.tif`, else the one `<stem>*.tif` there."""
    named = root / look / f"{stem}_{look}.tif"
    if named.exists():
        return named
    matches = sorted((root / look).glob(f"{stem}*.tif"))
    if len(matches) != 1:
        raise FileNotFoundError(f"{root / look}: {len(matches)} images for label tile {stem} (expected 1)")
    return matches[0]


def tiles(look: str, root: Path = DEV_DIR) -> Iterator[Tile]:
    """Every label tile of `root` with its imagery in `look`, in name order."""
    label_paths = sorted((root / "lc").glob("*_lc.tif"))
    if not label_paths:
        raise FileNotFoundError(f"no label rasters in {root / 'lc'}")
    for label_path in label_paths:
        stem = label_path.name.removesuffix("_lc.tif")
        with rasterio.open(label_path) as src:
            codes, crs, affine = src.read(1), src.crs, src.transform
        with rasterio.open(imagery_path(root, look, stem)) as src:
            if (src.crs, src.transform, src.shape) != (crs, affine, codes.shape):
                raise ValueError(f"{stem}: imagery and labels are not on one grid")
            image = np.moveaxis(src.read([1, 2, 3, 4]), 0, -1)
        yield Tile(stem, image, codes, crs, affine)


def class_lut(classes: list[str], missing: int) -> np.ndarray:
    """256-entry table from label code to index into `classes` (`missing` where a code has none)."""
    index = {name: i for i, name in enumerate(classes)}
    lut = np.full(256, missing, np.int16)
    for code, name in CODE_CLASS.items():
        lut[code] = index[name]
    return lut
