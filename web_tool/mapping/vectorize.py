"""Class polygons of a finished class map, for GIS: a GeoPackage (in the map's CRS) and GeoJSON
(EPSG:4326, RFC 7946), one feature per patch of a class, simplified, with its area.

Bounded whatever the map's size: the map is read from its COG overviews at no more than
MAX_VECTOR_PIXELS pixels (large maps give coarser polygons, never more memory), patches smaller than
MIN_PATCH_PIXELS are merged into their neighbours (GDAL's sieve), and edges are simplified to within
one pixel of that read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio.raw
import pyproj
import rasterio
import rasterio.features
import shapely
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from web_tool import db
from web_tool.geometry import WGS84
from web_tool.mapping.export import NODATA

#: most pixels read to make polygons (a 4096 x 4096 map is read whole; larger ones from overviews)
MAX_VECTOR_PIXELS = 4096 * 4096
#: patches smaller than this (in pixels of that read) join their largest neighbour
MIN_PATCH_PIXELS = 8
FIELDS = ["class_index", "class_name", "area_m2", "area_ha"]


def read_for_polygons(src: DatasetReader) -> tuple[np.ndarray, rasterio.Affine]:
    """The class map of open dataset `src`, decimated (nearest) to at most MAX_VECTOR_PIXELS."""
    scale = max(1.0, math.sqrt(src.width * src.height / MAX_VECTOR_PIXELS))
    shape_ = (max(1, math.floor(src.height / scale)), max(1, math.floor(src.width / scale)))
    data = src.read(1, out_shape=shape_, resampling=Resampling.nearest)
    transform = src.transform * rasterio.Affine.scale(src.width / shape_[1], src.height / shape_[0])
    return data, transform


def class_polygons(src: DatasetReader) -> tuple[list[BaseGeometry], np.ndarray, float]:
    """(polygons, class index of each, pixel size) of the class map in `src`, sieved and simplified."""
    data, transform = read_for_polygons(src)
    valid = data != NODATA
    if MIN_PATCH_PIXELS > 1 and valid.any():
        data = rasterio.features.sieve(data, MIN_PATCH_PIXELS, mask=valid)
    pixel = abs(transform.a)
    geoms, values = [], []
    for geom, value in rasterio.features.shapes(data, mask=valid, transform=transform):
        geoms.append(shape(geom))
        values.append(int(value))
    simplified = shapely.simplify(np.array(geoms, dtype=object), pixel, preserve_topology=True)
    return list(simplified), np.array(values, dtype=np.int64), pixel


def geodesic_areas_m2(geoms_4326: list[BaseGeometry]) -> np.ndarray:
    geod = pyproj.Geod(ellps="WGS84")
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in geoms_4326])


def write_layer(
    path: Path,
    geoms: list[BaseGeometry],
    values: np.ndarray,
    classes: list[dict[str, Any]],
    areas: np.ndarray,
    crs: str,
    driver: str,
    options: dict[str, str] | None = None,
) -> None:
    """Write the polygons with their class and area to `path` (atomically)."""
    names = np.array([classes[v]["name"] if v < len(classes) else str(v) for v in values], dtype=object)
    fields = [values.astype(np.int32), names, areas.round(2), (areas / 1e4).round(4)]

    def write(tmp: str) -> None:
        named = f"{tmp}{path.suffix}"  # the drivers want their own extension, and create the file
        pyogrio.raw.write(
            named,
            np.array(shapely.to_wkb(geoms), dtype=object),
            fields,
            FIELDS,
            crs=crs,
            driver=driver,
            geometry_type="Polygon",
            layer="classes",
            layer_options=options or {},
        )
        os.replace(named, tmp)

    db.atomic_write(path, write)


def write_vectors(cog: Path, classes: list[dict[str, Any]], gpkg: Path | None, geojson: Path | None) -> int:
    """Class polygons of the COG as a GeoPackage and/or GeoJSON; → how many polygons."""
    with rasterio.open(cog) as src:
        geoms, values, _ = class_polygons(src)
        crs = src.crs
    in_4326 = [shape(transform_geom(crs, WGS84, mapping(g), precision=7)) for g in geoms]
    areas = geodesic_areas_m2(in_4326)
    if gpkg is not None:
        write_layer(gpkg, geoms, values, classes, areas, crs.to_wkt(), "GPKG")
    if geojson is not None:
        write_layer(
            geojson,
            in_4326,
            values,
            classes,
            areas,
            "EPSG:4326",
            "GeoJSON",
            {"RFC7946": "YES", "COORDINATE_PRECISION": "7"},
        )
    return len(geoms)
