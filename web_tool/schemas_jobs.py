"""Request bodies of the large-area endpoints (`/predTile`), as pydantic models.

Kept apart from `schemas.py` (the seed's endpoints) but built from the same pieces.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from web_tool.geometry import parse_crs
from web_tool.mapping import AOI, aoi_from_extent, aoi_from_geojson
from web_tool.schemas import ExtentBody, Lenient, Weights


class PredTileRequest(Lenient):
    """`{"extent": {...}}` or `{"geometry": GeoJSON, "crs": N}`, + session, dataset, weights."""

    extent: ExtentBody | None = None
    geometry: dict[str, Any] | None = None
    crs: int | str = 3857
    dataset: str | None = None
    session: str | None = None
    weights: Weights | None = None

    @model_validator(mode="after")
    def _one_area(self):
        if (self.extent is None) == (self.geometry is None):
            raise ValueError("send exactly one of `extent` or `geometry` (a GeoJSON Polygon or MultiPolygon)")
        return self

    def to_aoi(self) -> AOI:
        if self.extent is not None:
            return aoi_from_extent(self.extent.to_extent())
        return aoi_from_geojson(self.geometry, parse_crs(self.crs))
