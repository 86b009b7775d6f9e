"""Prediction tiles: a session's current model as XYZ tiles, the map's continuous prediction layer.

The *native zoom* of a dataset is the zoom whose tile pixels come nearest its ground resolution.
The model runs on *blocks*: the 4 x 4 native tiles that make up one tile of the *block zoom*
(native - 2), 1024 x 1024 px, read with `model.padding` px of real imagery around them and
predicted in one pass. A tile inside a block is cut from one forward pass, and a block's edge
pixels see real context, as any /predPatch does, so tiles do not seam.

A block's class probabilities are cached as uint8 (1024² x C bytes), keyed by session and model
version; a new version (retrain, undo, reset, new class, checkpoint load) makes the session's older
blocks unreachable, and they are dropped at the session's next tile request. Rendering (class
colours, weights, hard / soft / uncertainty) happens per request from the cached probabilities:
changing a colour or a weight never runs the model.

Work per request is bounded:
- block zoom ... native + 4: the tile is cut from its block (averaged down, or enlarged); at most
  one block is predicted (1088² px of model input), one at a time per server (COMPUTE_SLOTS);
- block zoom - COMPOSE_LEVELS ... block zoom - 1: composed from blocks already cached (each a
  256² summary), never predicted: what has not been predicted yet stays transparent;
- coarser zooms are transparent (the page does not ask for them).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import mercantile
import numpy as np
from affine import Affine

from web_tool.DataLoader import DataLoader
from web_tool.errors import ClassIndexError, ExtentError, NoImageryError
from web_tool.geometry import WEB_MERCATOR, Grid, center_latitude
from web_tool.rendering.imagery_tiles import TILE_SIZE, empty_tile
from web_tool.rendering.images import class_colors, hard_rgb, png_bytes, reweight, soft_rgb, with_alpha
from web_tool.rendering.uncertainty import uncertainty, uncertainty_rgba
from web_tool.ServerModels.base import ServerModel

#: a block is BLOCK_TILES x BLOCK_TILES native tiles (one tile of zoom native - log2(BLOCK_TILES))
BLOCK_TILES = 4
BLOCK_LEVELS = int(math.log2(BLOCK_TILES))
BLOCK_PX = BLOCK_TILES * TILE_SIZE
#: zoom levels below the block zoom composed from cached blocks (4^3 = 64 blocks per tile at most)
COMPOSE_LEVELS = 3
#: zoom levels above the native zoom served (enlarged); the page's map stops at native + 2
MAX_OVERZOOM = 4
#: memory for cached block probabilities, in MiB (a 4-class block takes 4 MiB)
CACHE_MB = 256
#: blocks remembered at most (those without imagery take no memory but an entry)
CACHE_ENTRIES = 20_000
#: blocks predicted at once by the whole server (others wait; interactive requests keep a core)
COMPUTE_SLOTS = 1
STYLES = ("hard", "soft", "uncertainty")

#: a cached block: (session id, model version, dataset, block x, block y)
BlockKey = tuple[str, int, str, int, int]


def native_zoom(resolution_m: float, latitude: float) -> int:
    """The zoom whose tile pixels are nearest (in ratio) to `resolution_m` at `latitude`."""
    world_m = 2 * math.pi * 6378137.0 * math.cos(math.radians(latitude))
    return max(BLOCK_LEVELS, min(24 - MAX_OVERZOOM, round(math.log2(world_m / (TILE_SIZE * resolution_m)))))


def dataset_native_zoom(loader: DataLoader) -> int:
    return native_zoom(loader.resolution_m, center_latitude(loader.extent_3857))


@dataclass
class Block:
    """Class probabilities of one block: `probs` BLOCK_PX² x C uint8 (all 0 where no imagery),
    and `summary`, the same averaged to one tile (what coarser zooms are composed from)."""

    probs: np.ndarray
    summary: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.probs.nbytes + self.summary.nbytes


def pool(probs: np.ndarray, factor: int) -> np.ndarray:
    """HxWxC uint8 averaged over factor x factor cells."""
    if factor == 1:
        return probs
    h, w, c = probs.shape
    cells = probs.reshape(h // factor, factor, w // factor, factor, c).astype(np.float32)
    pooled: np.ndarray = np.rint(cells.mean(axis=(1, 3))).astype(np.uint8)  # numpy's mean(axis) is Any
    return pooled


def block_grid(z: int, x: int, y: int) -> Grid:
    """The BLOCK_PX² EPSG:3857 grid of block tile z/x/y."""
    b = mercantile.xy_bounds(x, y, z)
    transform = Affine((b.right - b.left) / BLOCK_PX, 0, b.left, 0, -(b.top - b.bottom) / BLOCK_PX, b.top)
    return Grid(WEB_MERCATOR, transform, BLOCK_PX, BLOCK_PX)


def predict_block(loader: DataLoader, model: ServerModel, z: int, x: int, y: int) -> Block | None:
    """The block's probabilities, predicted with `model.padding` px of context; None without imagery."""
    grid = block_grid(z, x, y)
    pad = model.padding
    if not loader.files_for(grid.padded(pad).extent):
        return None
    try:
        padded, patch = loader.read_padded(grid, pad)
    except NoImageryError:
        return None
    probs = model.predict(padded.data)[grid.inside_padded(pad)]
    quantised = np.rint(np.clip(probs, 0, 1) * 255).astype(np.uint8)
    quantised[~patch.valid] = 0
    return Block(quantised, pool(quantised, BLOCK_TILES))


class BlockCache:
    """Blocks by (session, version, dataset, x, y), least recently used first out, at most
    `max_bytes`; a session's blocks of older versions are dropped when a newer version shows up."""

    def __init__(self, max_bytes: int = CACHE_MB * 2**20, slots: int = COMPUTE_SLOTS):
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[BlockKey, Block | None] = OrderedDict()
        self._bytes = 0
        self._latest: dict[str, int] = {}
        self._lock = threading.Lock()
        self._pending: dict[BlockKey, threading.Event] = {}
        self._slots = threading.BoundedSemaphore(max(1, slots))
        self.computed = 0  # blocks predicted so far (for tests and /health)

    def __len__(self) -> int:
        return len(self._blocks)

    def keys(self) -> list[BlockKey]:
        with self._lock:
            return list(self._blocks)

    def see_version(self, session: str, version: int) -> None:
        """Drop `session`'s blocks of any other version when `version` is newer than those seen."""
        with self._lock:
            if self._latest.get(session, -1) >= version:
                return
            self._latest[session] = version
            for key in [k for k in self._blocks if k[0] == session and k[1] != version]:
                self._drop(key)

    def cached(self, key: BlockKey) -> tuple[bool, Block | None]:
        with self._lock:
            if key not in self._blocks:
                return False, None
            self._blocks.move_to_end(key)
            return True, self._blocks[key]

    def get(
        self, key: BlockKey, compute: Callable[[], Block | None], cancelled: Callable[[], bool]
    ) -> Block | None:
        """The block under `key`, computed once however many requests ask at the same time;
        nothing is computed for a request whose client has gone (`cancelled()`)."""
        while True:
            hit, block = self.cached(key)
            if hit:
                return block
            with self._lock:
                waiting = self._pending.get(key)
                if waiting is None:
                    self._pending[key] = threading.Event()
            if waiting is not None:
                waiting.wait()
                continue
            try:
                with self._slots:
                    if cancelled():
                        return None
                    block = compute()
                    self.computed += 1
                self._put(key, block)
                return block
            finally:
                with self._lock:
                    self._pending.pop(key).set()

    def _put(self, key: BlockKey, block: Block | None) -> None:
        with self._lock:
            if key[0] in self._latest and self._latest[key[0]] > key[1]:
                return  # the session moved on while this block was predicted
            if key in self._blocks:
                self._drop(key)
            self._blocks[key] = block
            self._bytes += block.nbytes if block is not None else 0
            while (self._bytes > self.max_bytes or len(self._blocks) > CACHE_ENTRIES) and len(
                self._blocks
            ) > 1:
                self._drop(next(iter(self._blocks)))

    def _drop(self, key: BlockKey) -> None:
        block = self._blocks.pop(key)
        self._bytes -= block.nbytes if block is not None else 0


@dataclass(frozen=True)
class TileStyle:
    """How probabilities become pixels: hard, soft or uncertainty; colours (Cx3) and weights."""

    style: str
    colors: np.ndarray
    weights: list[float] | None = None


def parse_style(model: ServerModel, style: str, colors: str | None, weights: str | None) -> TileStyle:
    """A TileStyle from the query string (`colors=0000ff,008000,...`, `weights=1,1,0.5,1`)."""
    if style not in STYLES:
        raise ExtentError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
    given = [f"#{c.strip().lstrip('#')}" for c in colors.split(",")] if colors else []
    if len(given) > model.n_classes:
        raise ClassIndexError(f"colors has {len(given)} entries; the model has {model.n_classes} classes")
    palette = class_colors([{"color": c} for c in given] + model.classes[len(given) :])
    w = None
    if weights:
        try:
            w = [float(v) for v in weights.split(",")]
        except ValueError:
            raise ClassIndexError(f"weights must be numbers separated by commas, not {weights!r}") from None
        if len(w) != model.n_classes or not all(math.isfinite(v) and v >= 0 for v in w) or not any(w):
            raise ClassIndexError(
                f"weights must be {model.n_classes} numbers >= 0, one above 0 at least; not {weights!r}"
            )
    return TileStyle(style, palette, w)


def render(probs: np.ndarray, style: TileStyle) -> bytes:
    """PNG of uint8 probabilities (all 0 = no imagery: transparent) in `style`."""
    valid = np.asarray(probs.any(axis=-1))  # numpy's types allow a scalar here
    if not valid.any():
        return empty_tile()
    p = reweight((probs.astype(np.float32) + 0.5) / 256.0, style.weights)  # no class exactly 0
    if style.style == "uncertainty":
        return png_bytes(uncertainty_rgba(uncertainty(p), valid))
    rgb = soft_rgb(p, style.colors) if style.style == "soft" else hard_rgb(p, style.colors)
    rgb[~valid] = 0
    return png_bytes(with_alpha(rgb, valid))


class PredictionTiles:
    """Tiles of one server: a BlockCache shared by every session and dataset."""

    def __init__(self, cache: BlockCache | None = None):
        self.cache = cache or BlockCache()

    def tile(
        self,
        loader: DataLoader,
        model: ServerModel,
        owner: tuple[str, int],
        z: int,
        x: int,
        y: int,
        style: TileStyle,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> bytes:
        """PNG of tile z/x/y of `model`'s prediction; `owner` = (session id, model version)."""
        if not (0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z):
            raise ExtentError(f"tile {z}/{x}/{y} does not exist (0 <= z <= 24, 0 <= x,y < 2^z)")
        self.cache.see_version(*owner)
        native = dataset_native_zoom(loader)
        zb = native - BLOCK_LEVELS
        if z > native + MAX_OVERZOOM or z < zb - COMPOSE_LEVELS:
            return empty_tile()
        if z >= zb:
            probs = self._from_block(loader, model, owner, zb, z, x, y, cancelled)
        else:
            probs = self._composed(loader, owner, zb, z, x, y)
        return empty_tile() if probs is None else render(probs, style)

    def _key(self, owner: tuple[str, int], loader: DataLoader, x: int, y: int) -> BlockKey:
        return (*owner, loader.name, x, y)

    def _from_block(
        self,
        loader: DataLoader,
        model: ServerModel,
        owner: tuple[str, int],
        zb: int,
        z: int,
        x: int,
        y: int,
        cancelled: Callable[[], bool],
    ) -> np.ndarray | None:
        shift = z - zb
        bx, by = x >> shift, y >> shift
        block = self.cache.get(
            self._key(owner, loader, bx, by), lambda: predict_block(loader, model, zb, bx, by), cancelled
        )
        if block is None:
            return None
        side = BLOCK_PX >> shift  # block pixels under this tile, a side
        r0, c0 = (y - (by << shift)) * side, (x - (bx << shift)) * side
        if side >= TILE_SIZE:
            return pool(block.probs[r0 : r0 + side, c0 : c0 + side], side // TILE_SIZE)
        factor = TILE_SIZE // side
        return block.probs[r0 : r0 + side, c0 : c0 + side].repeat(factor, axis=0).repeat(factor, axis=1)

    def _composed(
        self, loader: DataLoader, owner: tuple[str, int], zb: int, z: int, x: int, y: int
    ) -> np.ndarray | None:
        """Tile z/x/y (coarser than the block zoom) from the cached blocks' summaries only."""
        shift = zb - z
        n, side = 1 << shift, TILE_SIZE >> shift
        out, found = None, False
        for j in range(n):
            for i in range(n):
                hit, block = self.cache.cached(self._key(owner, loader, (x << shift) + i, (y << shift) + j))
                if not hit or block is None:
                    continue
                if out is None:
                    out = np.zeros((TILE_SIZE, TILE_SIZE, block.summary.shape[-1]), np.uint8)
                out[j * side : (j + 1) * side, i * side : (i + 1) * side] = pool(block.summary, n)
                found = True
        return out if found else None
