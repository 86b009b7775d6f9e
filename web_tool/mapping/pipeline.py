"""Map a large area window by window: plan, predict with real context, stream to disk, export.

Shared by the server's `/predTile` jobs and the `python -m web_tool.batch` CLI; the two differ only
in how the windows run (`serial_results` in this process, or Dask tasks in `batch`):

    AOI → plan_map (native grid, windows that touch the AOI)
        → predict_window per window (padded read, model, crop, arg-max, mask outside AOI = NODATA)
        → render_map (ClassMapWriter streams windows into a tiled GeoTIFF + accumulates ClassStats)
        → export_all (COG with colour map and overviews, PNG preview, stats JSON/CSV)

Memory stays bounded by one window whatever the area: no stage holds the whole AOI's pixels.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.io import DatasetWriter
from rasterio.warp import transform_geom
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from web_tool import db
from web_tool.DataLoader import DataLoader
from web_tool.errors import ExtentError, NoImageryError
from web_tool.geometry import WEB_MERCATOR, WGS84, Extent, Grid, polygon_from_geojson, polygonal
from web_tool.mapping import export, export_styles, vectorize
from web_tool.mapping.export import NODATA, ClassStats, row_areas_km2
from web_tool.rendering.images import reweight
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.tiling import predict_blocks

#: window side (native pixels, context excluded) when the model does not suggest one
WINDOW_PX = 1024
#: largest internal block of the temporary class-index GeoTIFF
MAX_TEMP_BLOCK_PX = 512
#: AOIs with at most this many vertices go to every window whole; larger ones are clipped per window
WHOLE_GEOMETRY_MAX_VERTICES = 10_000

WindowResult = tuple[Window, np.ndarray]


class MapCancelled(Exception):
    """Raised inside `render_map` when its `cancelled()` callback says stop."""


# --------------------------------------------------------------------------------------------
# area of interest


@dataclass(frozen=True)
class AOI:
    """An area of interest: a (Multi)Polygon in a CRS."""

    geometry: BaseGeometry
    crs: CRS

    @property
    def extent(self) -> Extent:
        return Extent(*self.geometry.bounds, crs=self.crs)

    def to_crs(self, crs: CRS) -> AOI:
        if crs == self.crs:
            return self
        try:
            geom = shape(transform_geom(self.crs, crs, mapping(self.geometry)))
        except Exception as exc:
            raise ExtentError(f"the geometry cannot be transformed to {crs}: {exc}") from None
        return AOI(polygonal(geom), crs)

    def area_km2(self) -> float:
        """Area on the WGS84 ellipsoid (edges densified before reprojection)."""
        import pyproj

        step = max(self.extent.xmax - self.extent.xmin, self.extent.ymax - self.extent.ymin) / 64
        dense = AOI(shapely.segmentize(self.geometry, step), self.crs).to_crs(WGS84)
        area, _ = pyproj.Geod(ellps="WGS84").geometry_area_perimeter(dense.geometry)
        return abs(area) / 1e6


def aoi_from_extent(extent: Extent) -> AOI:
    return AOI(box(*extent.bounds), extent.crs)


def aoi_from_geojson(obj: dict[str, Any], crs: CRS) -> AOI:
    """An AOI from a GeoJSON Polygon or MultiPolygon (a Feature or FeatureCollection of them also do)."""
    return AOI(polygon_from_geojson(obj), crs)


# --------------------------------------------------------------------------------------------
# planning


@dataclass(frozen=True)
class WindowTask:
    """One unit of work: a window of the plan's grid, its own grid, and the AOI clipped to it."""

    window: Window
    grid: Grid
    geometry: BaseGeometry  # the AOI, or its part around the window when the AOI is large
    full: bool  # the AOI covers the whole window


@dataclass(frozen=True)
class MapPlan:
    """The native grid over an AOI's bounds and the windows of it that touch the AOI."""

    grid: Grid
    geometry: BaseGeometry  # the AOI in the grid's CRS
    windows: tuple[Window, ...]
    step: tuple[int, int]  # (columns, rows) between window origins

    def tasks(self, largest_first: bool = False) -> Iterator[WindowTask]:
        """A task per window, in row order or largest first (parallel executors finish sooner with
        the thin edge windows last); small AOIs travel whole (exact masks), large ones clipped."""
        small = shapely.get_num_coordinates(self.geometry) <= WHOLE_GEOMETRY_MAX_VERTICES
        shapely.prepare(self.geometry)
        windows: Iterable[Window] = self.windows
        if largest_first:
            windows = sorted(windows, key=lambda w: -int(w.width) * int(w.height))  # stable: row order
        for window in windows:
            transform = window_transform(window, self.grid.transform)
            grid = Grid(self.grid.crs, transform, int(window.width), int(window.height))
            cell = box(*grid.extent.bounds)
            geometry = self.geometry if small else self.geometry.intersection(cell.buffer(grid.res[0]))
            yield WindowTask(window, grid, geometry, self.geometry.contains(cell))


def default_window_px(model: ServerModel) -> int:
    """WINDOW_PX, or less when the model's own inference window could not take it with the model's
    padding around it in one pass (larger inputs would be tiled, and predicted twice at the seams)."""
    inner = model.window
    if inner and inner > 2 * model.padding + 64:
        return int(min(WINDOW_PX, inner - 2 * model.padding))
    return WINDOW_PX


def clip_to_imagery(loader: DataLoader, aoi: AOI) -> AOI:
    """The part of `aoi` inside the dataset's footprint (so a huge AOI over a small dataset stays small)."""
    none = NoImageryError(f"no imagery of dataset {loader.name!r} lies under the area of interest")
    if not loader.files_for(aoi.extent):
        raise none
    footprint = AOI(loader.footprint, WEB_MERCATOR).to_crs(aoi.crs).geometry
    if footprint.contains(aoi.geometry):
        return aoi
    try:
        return AOI(polygonal(aoi.geometry.intersection(footprint)), aoi.crs)
    except ExtentError:
        raise none from None


def plan_map(loader: DataLoader, aoi: AOI, window_px: int = WINDOW_PX) -> MapPlan:
    """Windows of `window_px` a side over the dataset's native grid around the part of `aoi` that
    has imagery, kept where they touch the AOI and some file; NoImageryError when no file lies under it."""
    if window_px < 1:
        raise ValueError(f"window_px must be positive, got {window_px}")
    aoi = clip_to_imagery(loader, aoi)
    grid = loader.native_grid(aoi.extent)
    geometry = aoi.to_crs(grid.crs).geometry
    step_x = step_y = window_px  # the same windows for any AOI: memory does not depend on its size
    windows = [
        Window(col, row, min(step_x, grid.width - col), min(step_y, grid.height - row))
        for row in range(0, grid.height, step_y)
        for col in range(0, grid.width, step_x)
    ]
    boxes = [box(*rasterio.windows.bounds(w, grid.transform)) for w in windows]
    touches = shapely.intersects(geometry, np.array(boxes, dtype=object)) if boxes else np.zeros(0, bool)
    kept = tuple(
        w
        for w, cell, hit in zip(windows, boxes, touches, strict=True)
        if hit and loader.files_for(Extent(*cell.bounds, crs=grid.crs))
    )
    return MapPlan(grid, geometry, kept, (step_x, step_y))


# --------------------------------------------------------------------------------------------
# prediction


def window_mask(task: WindowTask) -> np.ndarray:
    """HxW bool: pixels of the window whose centre lies inside the AOI (boundary excluded)."""
    h, w = task.grid.shape
    if task.full:
        return np.ones((h, w), dtype=bool)
    t = task.grid.transform
    xs = t.c + t.a * (np.arange(w) + 0.5)
    ys = t.f + t.e * (np.arange(h) + 0.5)
    xx, yy = np.meshgrid(xs, ys)
    shapely.prepare(task.geometry)
    inside: np.ndarray = shapely.contains_xy(task.geometry, xx.ravel(), yy.ravel()).reshape(h, w)
    return inside


def predict_window(
    loader: DataLoader, model: ServerModel, task: WindowTask, weights: list[float] | None = None
) -> np.ndarray:
    """HxW uint8 class indices of one window, predicted with `model.padding` px of real context.

    NODATA where the pixel is outside the AOI or no imagery covers it.
    """
    inside = window_mask(task)
    h, w = task.grid.shape
    if not inside.any():
        return np.full((h, w), NODATA, dtype=np.uint8)
    pad = model.padding
    try:
        padded, patch = loader.read_padded(task.grid, pad)
    except NoImageryError:
        return np.full((h, w), NODATA, dtype=np.uint8)
    classes = np.empty((h, w), dtype=np.uint8)
    for block, probs in predict_blocks(model.predict, padded.data, pad, model.n_classes):  # bounded memory
        classes[block] = reweight(probs, weights).argmax(axis=-1)
    classes[~(inside & patch.valid)] = NODATA
    return classes


def serial_results(
    loader: DataLoader, model: ServerModel, plan: MapPlan, weights: list[float] | None = None
) -> Iterator[WindowResult]:
    """The single-process executor: each window predicted here, in plan order."""
    for task in plan.tasks():
        yield task.window, predict_window(loader, model, task, weights)


# --------------------------------------------------------------------------------------------
# writing


def temp_block_px(step: tuple[int, int]) -> int:
    """A GeoTIFF block size (multiple of 16, ≤ MAX_TEMP_BLOCK_PX) that divides the window steps if
    possible, so that windows fill whole blocks."""
    common = math.gcd(*step)
    for size in range(min(common, MAX_TEMP_BLOCK_PX) // 16 * 16, 15, -16):
        if common % size == 0:
            return size
    return 256


class ClassMapWriter:
    """A tiled GeoTIFF of class indices written window by window, with running class statistics."""

    dst: DatasetWriter  # open between __enter__ and __exit__

    def __init__(self, path: Path, grid: Grid, classes: list[dict[str, Any]], block_px: int = 256):
        self.path, self.grid, self.block_px = Path(path), grid, block_px
        self.stats = ClassStats(classes)

    def __enter__(self) -> ClassMapWriter:
        self.dst = rasterio.open(
            self.path,
            "w",
            driver="GTiff",
            width=self.grid.width,
            height=self.grid.height,
            count=1,
            dtype="uint8",
            crs=self.grid.crs,
            transform=self.grid.transform,
            nodata=NODATA,
            tiled=True,
            blockxsize=self.block_px,
            blockysize=self.block_px,
            compress="deflate",
            zlevel=1,
            sparse_ok=True,
            bigtiff="IF_SAFER",
        )
        return self

    def write(self, window: Window, class_map: np.ndarray) -> None:
        self.dst.write(class_map, 1, window=window)
        self.stats.add(class_map, row_areas_km2(self.grid, int(window.row_off), int(window.height)))

    def __exit__(self, *exc: object) -> None:
        self.dst.close()


def outputs_beside(
    cog_path: str | os.PathLike[str], vector: bool = False, overlay: bool = False
) -> dict[str, Path]:
    """Where the outputs of a map go: the COG, and beside it its preview, statistics, GDAL's
    `.aux.xml` (class names) and a QGIS `.qml` style; + class polygons (`vector`: GeoPackage and
    GeoJSON) and a web-map overlay PNG (`overlay`)."""
    cog = Path(cog_path)
    stem = cog.with_suffix("")
    outputs = {
        "cog": cog,
        "preview": stem.with_suffix(".png"),
        "stats_json": stem.with_name(stem.name + "_stats.json"),
        "stats_csv": stem.with_name(stem.name + "_stats.csv"),
        "aux": cog.with_name(cog.name + ".aux.xml"),
        "qml": stem.with_suffix(".qml"),
    }
    if vector:
        outputs.update(gpkg=stem.with_suffix(".gpkg"), geojson=stem.with_suffix(".geojson"))
    if overlay:
        outputs["overlay"] = stem.with_name(stem.name + "_overlay.png")
    return outputs


def map_tags(
    model: str, model_file: str | None, checkpoint: str | None, dataset: str
) -> dict[str, str | None]:
    """What made a map, for its GeoTIFF tags: model (registry name and file), checkpoint, dataset, time."""
    from web_tool import __version__

    return {
        "model": model,
        "model_file": Path(model_file).name if model_file else None,
        "checkpoint": checkpoint,
        "dataset": dataset,
        "software": f"landcover web_tool {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def render_map(
    plan: MapPlan,
    results: Iterable[WindowResult],
    outputs: dict[str, Path],
    classes: list[dict[str, Any]],
    on_window: Callable[[int, int], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
    tags: dict[str, Any] | None = None,
) -> ClassStats:
    """Stream `results` (from any executor, any order) to disk, then export the outputs.

    `on_window(done, total)` is called after each window; `cancelled()` is asked after each one
    and stops the map with MapCancelled (no output is left behind). `tags` go into the COG.
    """
    cog = outputs["cog"]
    cog.parent.mkdir(parents=True, exist_ok=True)
    tmp = cog.with_name(f".{cog.stem}.{os.getpid()}.classes.tif")
    try:
        with ClassMapWriter(tmp, plan.grid, classes, temp_block_px(plan.step)) as writer:
            for done, (window, class_map) in enumerate(results, 1):
                writer.write(window, class_map)
                if on_window is not None:
                    on_window(done, len(plan.windows))
                if cancelled is not None and cancelled():
                    raise MapCancelled("the map was cancelled")
        export_all(tmp, outputs, classes, writer.stats, plan.grid, tags)
        return writer.stats
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        tmp.unlink(missing_ok=True)


def export_all(
    class_tif: Path,
    outputs: dict[str, Path],
    classes: list[dict[str, Any]],
    stats: ClassStats,
    grid: Grid,
    tags: dict[str, Any] | None = None,
) -> None:
    """Write the COG (`outputs["cog"]`), preview (`"preview"`), stats (`"stats_json"`, `"stats_csv"`),
    and those of `"overlay"`, `"aux"`, `"qml"`, `"gpkg"`, `"geojson"` that `outputs` names."""
    with rasterio.open(class_tif) as src:
        export.write_cog(src, outputs["cog"], classes, tags)
    with rasterio.open(outputs["cog"]) as cog:
        export.write_preview(cog, outputs["preview"], classes)
        if "overlay" in outputs:
            export.write_overlay(cog, outputs["overlay"], classes)
    export.write_stats(stats, grid, outputs["stats_json"], outputs["stats_csv"])
    if "aux" in outputs:
        db.atomic_write(outputs["aux"], export_styles.aux_xml(classes, stats))
    if "qml" in outputs:
        db.atomic_write(outputs["qml"], export_styles.qml(classes))
    if "gpkg" in outputs or "geojson" in outputs:
        vectorize.write_vectors(outputs["cog"], classes, outputs.get("gpkg"), outputs.get("geojson"))
