"""Deterministic generator of the embedded demo scene: NAIP-like 4-band imagery with land-cover labels.

Two areas in UTM zone 18N (EPSG:32618), 1 m pixels, bands R, G, B, NIR (uint8):

* ``a`` — top-left (324200, 4307000), 3 x 3 tiles of 1024 px, a summer look. The model is trained
  here; tile ``a_r2_c2`` (bottom right) is held out for evaluation.
* ``b`` — top-left (328000, 4307000), 2 x 2 tiles of 1024 px, the same kinds of ground seen in
  another season by another sensor (harvested fields, autumn forest, turbid water, haze, other band
  gains), so a model trained on ``a`` makes clearly more mistakes there until it is fine-tuned.

Labels are single-band uint8 rasters: 0 Water, 1 Forest, 2 Field, 3 Built. Every file is a
DEFLATE-compressed, 256 px tiled Cloud Optimized GeoTIFF written atomically (temp file + rename).

The ground is drawn with numpy + OpenCV: fields are Voronoi cells with crop rows at a per-field
angle and period, forest has a blobby, shaded canopy, lakes are noisy ellipses and a river meanders
across each area, roads are wandering polylines, and settlements are rotated street grids lined with
gable-roofed buildings that cast shadows. The same seed gives byte-identical pixel arrays.

    python -m web_tool.demo.scene [--out web_tool/data/demo] [--seed 0] [--scale 1] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import cv2
import numpy as np
import rasterio
from rasterio.transform import from_origin

if TYPE_CHECKING:
    from affine import Affine  # rasterio's transforms

VERSION = 1
CRS = "EPSG:32618"
RESOLUTION = 1.0
TILE = 1024
BANDS = ("R", "G", "B", "NIR")
CLASSES = ("Water", "Forest", "Field", "Built")
WATER, FOREST, FIELD, BUILT = range(4)
HOLDOUT = "a_r2_c2"  # the tile the demo model never sees in training
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "demo"


@dataclass(frozen=True)
class AreaSpec:
    name: str
    left: float
    top: float
    rows: int
    cols: int
    look: str


AREAS = (
    AreaSpec("a", 324200.0, 4307000.0, 3, 3, "summer"),
    AreaSpec("b", 328000.0, 4307000.0, 2, 2, "autumn"),
)

# Surfaces drawn in the scene and the class each one is labelled as.
S_WATER, S_FOREST, S_CROP, S_LAWN, S_MARGIN, S_ROAD, S_MAIN_ROAD, S_ROOF = range(8)
SURFACE_CLASS = np.array([WATER, FOREST, FIELD, FIELD, FIELD, BUILT, BUILT, BUILT], np.uint8)

# Reflectances as uint8 digital numbers (R, G, B, NIR) before the sensor model.
# Field types: (probability, vegetation colour, soil colour, vegetation cover, row contrast, tillage).
# Roof colours: light grey, dark grey, red tiles, brown, white; the same roofs in every look.
DN = tuple[int, int, int, int]
FieldType = tuple[float, DN, DN, float, float, float]
PerBand = tuple[float, float, float, float]


class Look(TypedDict):
    """How one area looks: its surfaces' reflectances, its sun (shadows) and its sensor."""

    forest_decid: DN
    forest_conifer: DN
    field_types: list[FieldType]
    lawn: DN
    margin: DN
    water_deep: DN
    water_shallow: DN
    road: DN
    main_road: DN
    roofs: list[DN]
    shadow: float
    shadow_len: int
    gain: PerBand
    offset: PerBand
    haze_var: float
    illum: float
    blur: float
    noise: float


ROOFS: list[DN] = [
    (192, 190, 196, 174),
    (88, 88, 94, 78),
    (162, 84, 66, 100),
    (124, 98, 82, 94),
    (226, 226, 230, 206),
]
LOOKS: dict[str, Look] = {
    "summer": {
        "forest_decid": (48, 80, 52, 168),
        "forest_conifer": (34, 56, 44, 120),
        "field_types": [
            (0.40, (68, 110, 58, 192), (140, 120, 96, 126), 0.92, 0.16, 0.00),  # dense crop
            (0.24, (62, 104, 55, 178), (142, 122, 98, 128), 0.45, 0.70, 0.00),  # young crop in rows
            (0.16, (124, 126, 76, 152), (150, 132, 100, 132), 0.85, 0.20, 0.00),  # hay / ripening
            (0.20, (68, 110, 58, 192), (134, 114, 90, 120), 0.03, 0.04, 0.08),  # tilled soil
        ],
        "lawn": (80, 114, 66, 170),
        "margin": (58, 90, 54, 150),
        "water_deep": (24, 44, 62, 12),
        "water_shallow": (48, 68, 70, 28),
        "road": (100, 100, 106, 94),
        "main_road": (124, 124, 128, 116),
        "roofs": ROOFS,
        "shadow": 0.55,
        "shadow_len": 3,
        "gain": (1.0, 1.0, 1.0, 1.0),
        "offset": (0.0, 0.0, 0.0, 0.0),
        "haze_var": 0.0,
        "illum": 0.04,
        "blur": 0.6,
        "noise": 3.0,
    },
    "autumn": {
        "forest_decid": (92, 82, 50, 150),
        "forest_conifer": (38, 56, 46, 116),
        "field_types": [
            (0.45, (150, 136, 96, 178), (138, 118, 92, 140), 0.70, 0.60, 0.00),  # harvested stubble
            (0.20, (104, 84, 68, 104), (104, 84, 68, 104), 0.00, 0.00, 0.10),  # ploughed
            (0.35, (80, 106, 60, 172), (124, 106, 86, 118), 0.70, 0.40, 0.00),  # cover crop
        ],
        "lawn": (100, 110, 68, 150),
        "margin": (90, 90, 58, 136),
        "water_deep": (42, 62, 58, 18),
        "water_shallow": (64, 80, 68, 30),
        "road": (110, 108, 106, 98),
        "main_road": (132, 130, 126, 118),
        "roofs": ROOFS,
        "shadow": 0.65,
        "shadow_len": 6,
        "gain": (1.03, 0.98, 0.94, 0.92),
        "offset": (6.0, 8.0, 16.0, 2.0),
        "haze_var": 0.5,
        "illum": 0.06,
        "blur": 0.8,
        "noise": 4.0,
    },
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# building blocks


def smooth_noise(
    rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 1, persistence: float = 0.5
) -> np.ndarray:
    """HxW float32 value noise with features about `cell` px across, zero mean and unit std."""
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        c = max(float(cell), 1.5)
        gh, gw = int(h / c) + 3, int(w / c) + 3
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        big = cv2.resize(grid, (int(gw * c), int(gh * c)), interpolation=cv2.INTER_CUBIC)
        out += amp * big[:h, :w]
        amp *= persistence
        cell /= 2.0
    std = float(out.std())
    return out / std if std > 0 else out


def voronoi(rng: np.random.Generator, h: int, w: int, spacing: float) -> tuple[np.ndarray, int]:
    """(HxW int32 cell index, number of cells) for jittered-grid seeds about `spacing` px apart."""
    ny, nx = max(1, round(h / spacing)), max(1, round(w / spacing))
    gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    py = ((gy + 0.5 + rng.uniform(-0.42, 0.42, gy.shape)) * h / ny).astype(np.int64).ravel()
    px = ((gx + 0.5 + rng.uniform(-0.42, 0.42, gx.shape)) * w / nx).astype(np.int64).ravel()
    seeds = np.full((h, w), 255, np.uint8)
    seeds[py, px] = 0
    _, nearest = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(nearest.max()) + 1, np.int32)
    lut[nearest[py, px]] = np.arange(py.size, dtype=np.int32)
    return lut[nearest], py.size


def wander(
    rng: np.random.Generator,
    h: int,
    w: int,
    start: tuple[float, float],
    heading: float,
    step: float,
    turn_sd: float,
    pull: float,
    max_steps: int = 5000,
) -> np.ndarray:
    """Nx2 (x, y) points of a random walk that keeps near `heading` until it leaves the area."""
    x, y = start
    points = [(x, y)]
    angle = heading
    for _ in range(max_steps):
        angle += rng.normal(0.0, turn_sd) + pull * (heading - angle)
        x, y = x + step * np.cos(angle), y + step * np.sin(angle)
        points.append((x, y))
        if not (-step <= x <= w + step and -step <= y <= h + step):
            break
    return np.asarray(points)


def edge_start(
    rng: np.random.Generator, h: int, w: int, horizontal: bool
) -> tuple[tuple[float, float], float]:
    """A start point on the west (or north) edge and a heading across the area."""
    if horizontal:
        return (-2.0, rng.uniform(0.15, 0.85) * h), rng.uniform(-0.35, 0.35)
    return (rng.uniform(0.15, 0.85) * w, -2.0), np.pi / 2 + rng.uniform(-0.35, 0.35)


def draw_polyline(mask: np.ndarray, points: np.ndarray, thickness: int) -> None:
    pts = np.round(points * 4).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(mask, [pts], False, 1, thickness=thickness, lineType=cv2.LINE_8, shift=2)


def shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`a` moved by (dy, dx) pixels, the uncovered border filled with zeros/False."""
    out = np.zeros_like(a)
    h, w = a.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[
        max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def strata(rng: np.random.Generator, rows: int, cols: int, first_last: bool) -> list[tuple[int, int]]:
    """Tile cells in random order (the bottom-right one first when `first_last`)."""
    cells = [(r, c) for r in range(rows) for c in range(cols)]
    if first_last:
        last = cells.pop()
        return [last] + [cells[i] for i in rng.permutation(len(cells))]
    return [cells[i] for i in rng.permutation(len(cells))]


# ---------------------------------------------------------------------------------------------
# layout: which surface lies where


@dataclass
class Layout:
    surface: np.ndarray  # HxW uint8 S_* code
    cells: np.ndarray  # HxW int32 field index
    n_cells: int
    roof_id: np.ndarray  # HxW int32: 0 none, 2k+1 / 2k+2 the two halves of building k
    n_buildings: int


def lay_out(
    rng: np.random.Generator, h: int, w: int, rows: int, cols: int, tile: int, holdout_first: bool
) -> Layout:
    # fields: Voronoi cells; forest: thresholded fractal noise plus whole woodlot cells
    cells, n_cells = voronoi(rng, h, w, spacing=175.0)
    f = smooth_noise(rng, h, w, 380.0, octaves=4, persistence=0.45)
    threshold = float(np.quantile(f[::4, ::4], 0.64))
    forest = f > threshold
    woodlot = rng.random(n_cells) < 0.08
    forest |= woodlot[cells]

    surface = np.where(forest, S_FOREST, S_CROP).astype(np.uint8)
    # field margins: 3 px grassy strips where neighbouring fields meet
    edge = np.zeros((h, w), bool)
    edge[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    edge[1:, :] |= cells[1:, :] != cells[:-1, :]
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    surface[edge & (surface == S_CROP)] = S_MARGIN

    wobble = smooth_noise(rng, h, w, 45.0, octaves=2)
    n_tiles = rows * cols

    # settlements: one per stratum (tile) for most strata, the held-out tile always included
    settlements = []
    for r, c in strata(rng, rows, cols, holdout_first)[: max(1, int(0.8 * n_tiles + 0.5))]:
        radius = min(rng.uniform(120.0, 210.0), 0.42 * tile)
        cx = (c + rng.uniform(0.3, 0.7)) * tile
        cy = (r + rng.uniform(0.3, 0.7)) * tile
        settlements.append((cx, cy, radius))

    # water: lakes (noisy ellipses) in other strata, and a meandering river
    water = np.zeros((h, w), bool)
    for r, c in strata(rng, rows, cols, holdout_first)[: max(1, int(0.5 * n_tiles + 0.5))]:
        rx = min(rng.uniform(60.0, 150.0), 0.3 * tile)
        ry = rx * rng.uniform(0.5, 1.0)
        cx = (c + rng.uniform(0.3, 0.7)) * tile
        cy = (r + rng.uniform(0.3, 0.7)) * tile
        for sx, sy, sr in settlements:  # keep lakes out of villages
            d = np.hypot(cx - sx, cy - sy)
            if d < sr + rx:
                cx, cy = sx + (cx - sx) * (sr + rx) / max(d, 1.0), sy + (cy - sy) * (sr + rx) / max(d, 1.0)
                cx = float(np.clip(cx, rx, w - rx))
                cy = float(np.clip(cy, ry, h - ry))
        theta = rng.uniform(0, np.pi)
        m = int(1.6 * rx) + 2
        x0, x1 = max(int(cx) - m, 0), min(int(cx) + m, w)
        y0, y1 = max(int(cy) - m, 0), min(int(cy) + m, h)
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
        v = -(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)
        rho = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) + 0.25 * wobble[y0:y1, x0:x1]
        water[y0:y1, x0:x1] |= rho < 1.0
    river = np.zeros((h, w), np.uint8)
    start, heading = edge_start(rng, h, w, horizontal=bool(rng.random() < 0.5))
    path = wander(rng, h, w, start, heading, step=8.0, turn_sd=0.22, pull=0.04)
    widths = 14.0 + 5.0 * np.cumsum(rng.normal(0, 0.15, len(path)))
    widths = np.clip(widths, 10.0, 26.0)
    for (xa, ya), (xb, yb), wd in zip(path[:-1], path[1:], widths, strict=False):
        pa, pb = (int(round(xa)), int(round(ya))), (int(round(xb)), int(round(yb)))
        cv2.line(river, pa, pb, 1, thickness=int(wd), lineType=cv2.LINE_8)
        cv2.circle(river, pb, int(wd) // 2, 1, thickness=-1, lineType=cv2.LINE_8)
    water |= river.astype(bool)

    # main roads: wandering lines across the area; each settlement is joined to the nearest one
    roads = np.zeros((h, w), np.uint8)
    main = np.zeros((h, w), np.uint8)
    road_points = []
    for i in range(max(1, round(min(h, w) / 1400.0))):
        start, heading = edge_start(rng, h, w, horizontal=(i % 2 == 0))
        path = wander(rng, h, w, start, heading, step=10.0, turn_sd=0.05, pull=0.03)
        draw_polyline(main, path, thickness=int(rng.integers(7, 10)))
        road_points.append(path)
    all_road = np.concatenate(road_points)

    footprint = np.zeros((h, w), bool)
    streets = np.zeros((h, w), np.uint8)
    roof_id = np.zeros((h, w), np.int32)
    n_buildings = 0
    for cx, cy, radius in settlements:
        d = np.hypot(all_road[:, 0] - cx, all_road[:, 1] - cy)
        target = all_road[int(np.argmin(d))]
        if d.min() > radius * 0.8:
            mid = (np.array([cx, cy]) + target) / 2 + rng.normal(0, 25.0, 2)
            draw_polyline(roads, np.array([[cx, cy], mid, target]), thickness=6)
        n_buildings = settle(rng, cx, cy, radius, wobble, water, footprint, streets, roof_id, n_buildings)

    roof = roof_id > 0
    surface[footprint] = S_LAWN
    surface[water] = S_WATER
    surface[(streets > 0) | (roads > 0)] = S_ROAD
    surface[main > 0] = S_MAIN_ROAD
    surface[roof] = S_ROOF

    return Layout(surface, cells, n_cells, roof_id, n_buildings)


def settle(
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius: float,
    wobble: np.ndarray,
    water: np.ndarray,
    footprint: np.ndarray,
    streets: np.ndarray,
    roof_id: np.ndarray,
    n_buildings: int,
) -> int:
    """Draw one settlement (lawn footprint, street grid, buildings); returns the new building count."""
    h, w = footprint.shape
    m = int(radius * 1.4) + 4
    x0, x1 = max(int(cx) - m, 0), min(int(cx) + m, w)
    y0, y1 = max(int(cy) - m, 0), min(int(cy) + m, h)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = np.hypot(xx - cx, yy - cy) / radius + 0.22 * wobble[y0:y1, x0:x1] < 1.0
    inside &= ~water[y0:y1, x0:x1]
    footprint[y0:y1, x0:x1] |= inside

    phi = rng.uniform(0, np.pi / 2)
    cos, sin = np.cos(phi), np.sin(phi)

    def to_xy(u: float, v: float) -> tuple[float, float]:
        return cx + u * cos - v * sin, cy + u * sin + v * cos

    spacing = rng.uniform(58.0, 76.0)
    half_street = 3.0
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    k_max = int(radius * 1.3 / spacing) + 1
    for k in range(-k_max, k_max + 1):
        for a, b in (
            ((k * spacing, -radius * 1.3), (k * spacing, radius * 1.3)),
            ((-radius * 1.3, k * spacing), (radius * 1.3, k * spacing)),
        ):
            xa, ya = to_xy(*a)
            xb, yb = to_xy(*b)
            pts = np.round(np.array([[xa - x0, ya - y0], [xb - x0, yb - y0]]) * 4).astype(np.int32)
            cv2.line(local, tuple(pts[0]), tuple(pts[1]), 1, thickness=int(2 * half_street), shift=2)
    streets[y0:y1, x0:x1] |= (local.astype(bool) & inside).astype(np.uint8)

    # buildings along the streets that run in v, on both sides, clear of the cross streets
    for k in range(-k_max, k_max + 1):
        for side in (-1.0, 1.0):
            v = -radius
            while v < radius:
                width = rng.uniform(10.0, 22.0)
                depth = rng.uniform(8.0, 16.0)
                gap = rng.uniform(3.0, 9.0)
                setback = rng.uniform(3.0, 7.0)
                cu = k * spacing + side * (half_street + setback + depth / 2)
                cv = v + width / 2
                v += width + gap
                near = cv - spacing * np.round(cv / spacing)
                if abs(near) < half_street + width / 2 + 3.0:
                    continue
                bx, by = to_xy(cu, cv)
                ix, iy = int(bx), int(by)
                if not (x0 <= ix < x1 and y0 <= iy < y1) or not inside[iy - y0, ix - x0]:
                    continue
                if rng.random() < 0.12:  # empty lot
                    continue
                du, dv = depth / 2, width / 2
                if du > dv:  # ridge along u: halves split in v
                    halves = [
                        ((-du, -dv), (du, -dv), (du, 0), (-du, 0)),
                        ((-du, 0), (du, 0), (du, dv), (-du, dv)),
                    ]
                else:  # ridge along v: halves split in u
                    halves = [
                        ((-du, -dv), (0, -dv), (0, dv), (-du, dv)),
                        ((0, -dv), (du, -dv), (du, dv), (0, dv)),
                    ]
                for j, half in enumerate(halves):
                    poly = np.array([to_xy(cu + a, cv + b) for a, b in half])
                    pts = np.round(poly * 4).astype(np.int32).reshape(-1, 1, 2)
                    cv2.fillPoly(roof_id, [pts], 2 * n_buildings + 1 + j, lineType=cv2.LINE_8, shift=2)
                n_buildings += 1
    return n_buildings


# ---------------------------------------------------------------------------------------------
# rendering: surfaces → reflectance → sensor


def render(rng: np.random.Generator, lay: Layout, look: Look) -> np.ndarray:
    h, w = lay.surface.shape
    img = np.zeros((h, w, 4), np.float32)
    flat = img.reshape(-1, 4)
    surface = lay.surface.ravel()
    fine = smooth_noise(rng, h, w, 3.0).ravel()
    patchy = smooth_noise(rng, h, w, 60.0, octaves=2).ravel()

    def where(*codes: int) -> np.ndarray:
        return np.flatnonzero(np.isin(surface, codes))

    def col(c: DN) -> np.ndarray:
        return np.asarray(c, np.float32)

    # forest: crowns ~5 m across lit from the north-west, gaps in shadow, deciduous/conifer stands
    idx = where(S_FOREST)
    if idx.size:
        crowns = smooth_noise(rng, h, w, 4.5, octaves=2, persistence=0.4)
        relief = crowns - shift(crowns, 1, 1)
        stand = smooth_noise(rng, h, w, 160.0, octaves=2).ravel()[idx]
        mix = 1.0 / (1.0 + np.exp(-2.5 * stand))
        base = col(look["forest_decid"]) + mix[:, None] * (
            col(look["forest_conifer"]) - col(look["forest_decid"])
        )
        c, r = crowns.ravel()[idx], relief.ravel()[idx]
        factor = np.clip(0.88 + 0.18 * c + 0.30 * r, 0.35, 1.35)
        factor = np.where(c < -1.3, factor * 0.6, factor)
        flat[idx] = base * factor[:, None]

    # fields: per-field crop type, colour jitter, row angle/period; rows mix vegetation and soil
    idx = where(S_CROP)
    if idx.size:
        n = lay.n_cells
        types = look["field_types"]
        probs = np.array([t[0] for t in types])
        kind = rng.choice(len(types), size=n, p=probs / probs.sum())
        jitter = (1.0 + rng.normal(0, 0.06, (n, 4))) * (1.0 + rng.normal(0, 0.08, (n, 1)))
        veg = np.array([types[k][1] for k in kind], np.float32) * jitter
        soil = np.array([types[k][2] for k in kind], np.float32) * jitter
        cover = np.array([types[k][3] for k in kind], np.float32) + rng.normal(0, 0.04, n).astype(np.float32)
        rowamp = np.array([types[k][4] for k in kind], np.float32)
        till = np.array([types[k][5] for k in kind], np.float32)
        angle = rng.uniform(0, np.pi, n).astype(np.float32)
        period = rng.uniform(4.0, 9.0, n).astype(np.float32)
        phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        cid = lay.cells.ravel()[idx]
        y, x = np.divmod(idx, w)
        proj = x.astype(np.float32) * np.cos(angle)[cid] + y.astype(np.float32) * np.sin(angle)[cid]
        stripe = np.cos(proj * (2 * np.pi / period[cid]) + phase[cid])
        wv = np.clip(cover[cid] + 0.5 * rowamp[cid] * stripe + 0.08 * patchy[idx], 0.0, 1.0)
        px = soil[cid] + wv[:, None] * (veg[cid] - soil[cid])
        px *= (1.0 + till[cid] * stripe + 0.03 * fine[idx])[:, None]
        flat[idx] = px

    for code, dn, amp in ((S_LAWN, look["lawn"], 0.10), (S_MARGIN, look["margin"], 0.12)):
        idx = where(code)
        if idx.size:
            flat[idx] = col(dn) * (1.0 + amp * fine[idx] + 0.05 * patchy[idx])[:, None]

    # water: deep in the middle, shallower and brighter near the shore
    idx = where(S_WATER)
    if idx.size:
        depth = cv2.distanceTransform((lay.surface == S_WATER).astype(np.uint8), cv2.DIST_L2, 3).ravel()[idx]
        shallow = np.exp(-depth / 5.0)[:, None]
        deep = col(look["water_deep"])
        flat[idx] = (deep + shallow * (col(look["water_shallow"]) - deep)) * (1.0 + 0.03 * patchy[idx])[
            :, None
        ]

    for code, dn in ((S_ROAD, look["road"]), (S_MAIN_ROAD, look["main_road"])):
        idx = where(code)
        if idx.size:
            flat[idx] = col(dn) * (1.0 + 0.04 * fine[idx] + 0.03 * patchy[idx])[:, None]

    # roofs: a colour per building, the two halves of the gable lit differently
    idx = where(S_ROOF)
    if idx.size:
        nb = lay.n_buildings
        palette = np.asarray(look["roofs"], np.float32)
        choice = rng.choice(len(palette), size=nb, p=[0.3, 0.2, 0.2, 0.15, 0.15])
        roof_col = palette[choice] * (1.0 + rng.normal(0, 0.07, (nb, 1))).astype(np.float32)
        rid = lay.roof_id.ravel()[idx] - 1
        lit = np.where(rid % 2 == 0, 1.08, 0.90).astype(np.float32)
        flat[idx] = roof_col[rid // 2] * lit[:, None] * (1.0 + 0.02 * fine[idx])[:, None]

    # building shadows on the ground, as long as the look's sun casts them
    length = look["shadow_len"]
    roof = lay.roof_id > 0
    cast = np.zeros((h, w), bool)
    for t in range(1, length + 1):
        cast |= shift(roof, t, -t)
    cast &= ~roof
    img[cast] *= look["shadow"]

    # sensor: optics blur, illumination, per-band gain/offset with patchy haze, noise
    sigma = look["blur"]
    blurred = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    img = np.asarray(blurred, np.float32)  # float32 already (cv2's types do not say so)
    illum = 1.0 + look["illum"] * smooth_noise(rng, h, w, 700.0, octaves=2)
    img *= illum[:, :, None]
    img *= np.asarray(look["gain"], np.float32)
    haze = 1.0 + look["haze_var"] * smooth_noise(rng, h, w, 500.0, octaves=2)
    img += haze[:, :, None] * np.asarray(look["offset"], np.float32)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(look["noise"])
    np.clip(np.rint(img), 0, 255, out=img)
    return img.astype(np.uint8)


def make_area(spec: AreaSpec, index: int, seed: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """(HxWx4 uint8 imagery, HxW uint8 labels) of one whole area, deterministic in (seed, index, tile)."""
    rng = np.random.default_rng([seed, index, tile])
    h, w = spec.rows * tile, spec.cols * tile
    lay = lay_out(rng, h, w, spec.rows, spec.cols, tile, holdout_first=(spec.name == HOLDOUT[0]))
    image = render(rng, lay, LOOKS[spec.look])
    return image, SURFACE_CLASS[lay.surface]


# ---------------------------------------------------------------------------------------------
# output


def write_cog(path: Path, data: np.ndarray, transform: Affine, labels: bool) -> None:
    """Write CxHxW uint8 `data` as a tiled, DEFLATE-compressed COG, atomically."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    options: dict[str, int | str] = {
        "BLOCKSIZE": 256,
        "COMPRESS": "DEFLATE",
        "LEVEL": 6,
        "OVERVIEW_RESAMPLING": "NEAREST" if labels else "AVERAGE",
    }
    if not labels:
        options["PREDICTOR"] = 2
    try:
        with rasterio.open(
            tmp,
            "w",
            driver="COG",
            width=data.shape[2],
            height=data.shape[1],
            count=data.shape[0],
            dtype="uint8",
            crs=CRS,
            transform=transform,
            **options,
        ) as dst:
            dst.write(data)
            dst.descriptions = ("class",) if labels else BANDS
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def tile_size(scale: float) -> int:
    return max(32, int(round(TILE * scale / 16.0)) * 16)


def describe(seed: int, scale: float) -> dict[str, Any]:
    """The scene.json content: areas, their bounds and tiles (paths relative to the output folder)."""
    tile = tile_size(scale)
    areas = []
    for spec in AREAS:
        tiles = []
        for r in range(spec.rows):
            for c in range(spec.cols):
                left, top = spec.left + c * tile * RESOLUTION, spec.top - r * tile * RESOLUTION
                name = f"{spec.name}_r{r}_c{c}"
                tiles.append(
                    {
                        "name": name,
                        "row": r,
                        "col": c,
                        "imagery": f"imagery/{name}.tif",
                        "labels": f"labels/{name}.tif",
                        "bounds": [left, top - tile * RESOLUTION, left + tile * RESOLUTION, top],
                    }
                )
        areas.append(
            {
                "name": spec.name,
                "look": spec.look,
                "crs": CRS,
                "bounds": [
                    spec.left,
                    spec.top - spec.rows * tile * RESOLUTION,
                    spec.left + spec.cols * tile * RESOLUTION,
                    spec.top,
                ],
                "shape": [spec.rows * tile, spec.cols * tile],
                "grid": [spec.rows, spec.cols],
                "tile_size": tile,
                "tiles": tiles,
            }
        )
    return {
        "version": VERSION,
        "seed": seed,
        "scale": scale,
        "crs": CRS,
        "resolution": RESOLUTION,
        "bands": list(BANDS),
        "classes": list(CLASSES),
        "holdout": HOLDOUT,
        "areas": areas,
    }


def is_complete(out_dir: Path, info: dict[str, Any]) -> bool:
    try:
        existing = json.loads((out_dir / "scene.json").read_text())
    except (OSError, ValueError):
        return False
    if existing != info:
        return False
    return all(
        (out_dir / t[k]).is_file() for a in info["areas"] for t in a["tiles"] for k in ("imagery", "labels")
    )


def generate(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    seed: int = 0,
    scale: float = 1.0,
    force: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Generate the demo scene into `out_dir` (skipped when it is already there) → scene.json content.

    `scale` shrinks every area (tiles of round(1024 * scale) px, a multiple of 16) for tests;
    object sizes stay in metres.
    """
    say = log if verbose else (lambda msg: None)
    out_dir = Path(out_dir)
    info = describe(int(seed), float(scale))
    if not force and is_complete(out_dir, info):
        say(f"demo scene already in {out_dir} (seed {seed}, scale {scale}); use --force to rebuild")
        return info
    (out_dir / "imagery").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    tile = tile_size(scale)
    started = time.perf_counter()
    for index, (spec, area) in enumerate(zip(AREAS, info["areas"], strict=True)):
        t0 = time.perf_counter()
        say(f"area {spec.name}: drawing {spec.cols * tile} x {spec.rows * tile} px ({spec.look} look)...")
        image, labels = make_area(spec, index, int(seed), tile)
        counts = np.bincount(labels.ravel(), minlength=len(CLASSES)) / labels.size
        shares = ", ".join(f"{name} {share:.1%}" for name, share in zip(CLASSES, counts, strict=True))
        say(f"area {spec.name}: drawn in {time.perf_counter() - t0:.1f} s ({shares})")
        t1 = time.perf_counter()
        for t in area["tiles"]:
            r, c = t["row"], t["col"]
            window = (slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile))
            transform = from_origin(t["bounds"][0], t["bounds"][3], RESOLUTION, RESOLUTION)
            write_cog(
                out_dir / t["imagery"],
                np.ascontiguousarray(image[window].transpose(2, 0, 1)),
                transform,
                False,
            )
            write_cog(out_dir / t["labels"], labels[window][None], transform, True)
        elapsed = time.perf_counter() - t1
        say(f"area {spec.name}: wrote {len(area['tiles'])} imagery + label tiles in {elapsed:.1f} s")
    tmp = out_dir / f".scene.{os.getpid()}.json"
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out_dir / "scene.json")
    say(f"demo scene written to {out_dir} in {time.perf_counter() - started:.1f} s")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m web_tool.demo.scene",
        description="Generate the synthetic demo scene: NAIP-like R,G,B,NIR imagery and "
        "Water/Forest/Field/Built labels as tiled COGs in EPSG:32618 (area a: 3x3 tiles, summer "
        "look, a_r2_c2 held out; area b: 2x2 tiles, shifted autumn look). Deterministic: the same "
        "seed gives the same pixels.",
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every area by this factor, for quick tests (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the scene is already there")
    args = parser.parse_args(argv)
    if not 0.03 <= args.scale <= 4:
        parser.error("--scale must be between 0.03 and 4")
    generate(args.out, seed=args.seed, scale=args.scale, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
