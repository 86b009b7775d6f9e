"""Request bodies of the large-area endpoints (`/predTile`), as pydantic models.

Kept apart from `schemas.py` (the seed's endpoints) but built from the same pieces.
"""

from __future__ import annotations

from web_tool.http.schemas import AreaRequest, ClassBody, SessionId, Weights
from web_tool.mapping.pipeline import AOI


class PredTileRequest(AreaRequest):
    """`{"extent": {...}}` or `{"geometry": GeoJSON, "crs": N}`, + session, dataset, weights, the
    classes' names and colours for the outputs (default: the model's), and `vector` (class polygons)."""

    dataset: str | None = None
    session: SessionId = None
    weights: Weights | None = None
    classes: list[ClassBody] | None = None
    vector: bool = False

    def to_aoi(self, max_vertices: int | None = None) -> AOI:
        return AOI(*self.area(max_vertices))
