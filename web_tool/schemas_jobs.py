"""Request bodies of the large-area endpoints (`/predTile`), as pydantic models.

Kept apart from `schemas.py` (the seed's endpoints) but built from the same pieces.
"""

from __future__ import annotations

from web_tool.mapping import AOI
from web_tool.schemas import AreaRequest, SessionId, Weights


class PredTileRequest(AreaRequest):
    """`{"extent": {...}}` or `{"geometry": GeoJSON, "crs": N}`, + session, dataset, weights."""

    dataset: str | None = None
    session: SessionId = None
    weights: Weights | None = None

    def to_aoi(self, max_vertices: int | None = None) -> AOI:
        return AOI(*self.area(max_vertices))
