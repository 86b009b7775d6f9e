"""Request bodies of the large-area endpoints (`/predTile`), as pydantic models.

Kept apart from `schemas.py` (the seed's endpoints) but built from the same pieces.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from web_tool.geometry import parse_crs
from web_tool.mapping import AOI, aoi_from_extent, aoi_from_geojson
from web_tool.schemas import ExtentBody, Lenient

Weights = list[Annotated[float, Field(ge=0, allow_inf_nan=False)]]


class PredTileRequest(Lenient):
    """`{"extent": {...}}` or `{"geometry": GeoJSON, "crs": N}`, + session, dataset, weights."""

    extent: ExtentBody | None = None
    geometry: dict[str, Any] | None = None
    crs: int | str = 3857
    dataset: str | None = None
    session: str | None = None
    weights: Weights | None = None

    @field_validator("weights")
    @classmethod
    def _not_all_zero(cls, v):
        if v is not None and not any(w > 0 for w in v):
            raise ValueError("weights must contain at least one positive value")
        return v

    @model_validator(mode="after")
    def _one_area(self):
        if (self.extent is None) == (self.geometry is None):
            raise ValueError("send exactly one of `extent` or `geometry` (a GeoJSON Polygon or MultiPolygon)")
        return self

    def to_aoi(self) -> AOI:
        if self.extent is not None:
            return aoi_from_extent(self.extent.to_extent())
        return aoi_from_geojson(self.geometry, parse_crs(self.crs))
