"""Standard XYZ web-mercator tiles of a dataset's imagery, so the map needs no outside service."""

from __future__ import annotations

from functools import lru_cache

import mercantile
import numpy as np
from affine import Affine

from web_tool.DataLoader import DataLoader
from web_tool.errors import ExtentError, NoImageryError
from web_tool.geometry import WEB_MERCATOR, Grid
from web_tool.rendering.images import png_bytes, with_alpha

TILE_SIZE = 256
MAX_ZOOM = 24


def tile_grid(z: int, x: int, y: int) -> Grid:
    """The 256x256 EPSG:3857 grid of tile z/x/y; ExtentError for a tile that does not exist."""
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2**z and 0 <= y < 2**z):
        raise ExtentError(f"tile {z}/{x}/{y} does not exist (0 <= z <= {MAX_ZOOM}, 0 <= x,y < 2^z)")
    b = mercantile.xy_bounds(x, y, z)
    transform = Affine((b.right - b.left) / TILE_SIZE, 0, b.left, 0, -(b.top - b.bottom) / TILE_SIZE, b.top)
    return Grid(WEB_MERCATOR, transform, TILE_SIZE, TILE_SIZE)


@lru_cache(maxsize=1)
def empty_tile() -> bytes:
    return png_bytes(np.zeros((TILE_SIZE, TILE_SIZE, 4), np.uint8))


def render_tile(loader: DataLoader, z: int, x: int, y: int) -> bytes:
    """PNG bytes of the imagery under tile z/x/y, transparent where the dataset has none."""
    grid = tile_grid(z, x, y)
    if not loader.files_for(grid.extent):
        return empty_tile()
    try:
        patch = loader.read(grid)
    except NoImageryError:
        return empty_tile()
    return png_bytes(with_alpha(patch.display, patch.valid))
