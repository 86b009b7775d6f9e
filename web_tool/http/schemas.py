"""Request bodies as pydantic models: one place that says what each endpoint accepts.

`parse(Model, body)` turns a validation failure into a RequestError naming the field; the same
models generate the OpenAPI description.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from rasterio.crs import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from web_tool.errors import RequestError
from web_tool.geometry import MAX_COORD, Extent, parse_crs, polygon_from_geojson

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: a coordinate in any CRS: finite, and no larger than any CRS's coordinates can be
Coordinate = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COORD, le=MAX_COORD)]


class Lenient(BaseModel):
    """Unknown extra fields are ignored, as the API contract says. Types are strict: `true` or `"1"`
    is not a number, `1.5` not a class index."""

    model_config = ConfigDict(extra="ignore", strict=True)


#: a session id (`POST /sessions` makes them); None: the shared default session
SessionId = Annotated[str | None, Field(max_length=64)]


def _visible(name: str) -> str:
    """A name as shown to people: trimmed, something visible, no control characters."""
    name = name.strip()
    if not name:
        raise ValueError("a name needs some visible characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name):
        raise ValueError("a name may not contain control or invisible characters")
    return name


#: names people chose, trimmed and visible: a class's, a checkpoint's
ClassName = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_visible)]
CheckpointName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_visible)]


class SessionQuery(Lenient):
    """`?session=<id>` of a GET or DELETE (the POST endpoints take `session` in their body)."""

    session: SessionId = None


def query_session(query: Any) -> str | None:
    """The `session` of a request's query string (bottle's `request.query`); None: the default one."""
    return parse(SessionQuery, {"session": query.get("session") or None}).session


class SpatialReference(Lenient):
    """The extent's CRS as an EPSG code: `latestWkid`, or `wkid` (as ArcGIS writes them)."""

    latestWkid: int | None = None
    wkid: int | None = None

    @model_validator(mode="after")
    def _has_code(self):
        if self.latestWkid is None and self.wkid is None:
            raise ValueError('spatialReference needs an EPSG code: {"latestWkid": 3857} (or "wkid")')
        return self

    @property
    def code(self) -> int:
        code = self.latestWkid if self.latestWkid is not None else self.wkid
        assert code is not None  # _has_code
        return code


class ExtentBody(Lenient):
    xmin: Coordinate
    ymin: Coordinate
    xmax: Coordinate
    ymax: Coordinate
    #: missing: EPSG:3857
    spatialReference: SpatialReference | None = None

    def to_extent(self) -> Extent:
        crs = parse_crs(self.spatialReference.code if self.spatialReference else 3857)
        return Extent(self.xmin, self.ymin, self.xmax, self.ymax, crs=crs)


class ClassBody(Lenient):
    name: ClassName
    color: str = Field(pattern=r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class AreaRequest(Lenient):
    """An area: an `extent`, or a GeoJSON `geometry` in EPSG:`crs` (default 3857) — exactly one."""

    extent: ExtentBody | None = None
    geometry: dict[str, Any] | None = None
    crs: int | str = 3857

    @model_validator(mode="after")
    def _one_area(self):
        if (self.extent is None) == (self.geometry is None):
            raise ValueError("send exactly one of `extent` or `geometry` (a GeoJSON Polygon or MultiPolygon)")
        return self

    def area(self, max_vertices: int | None = None) -> tuple[BaseGeometry, CRS]:
        """(shapely polygon, its CRS) of the request's area; TooLargeError beyond `max_vertices`."""
        if self.extent is not None:
            extent = self.extent.to_extent()
            return box(*extent.bounds), extent.crs
        assert self.geometry is not None  # _one_area
        return polygon_from_geojson(self.geometry, max_vertices), parse_crs(self.crs)


class GetInputRequest(Lenient):
    extent: ExtentBody
    dataset: str | None = None


def _some_positive(weights: list[float]) -> list[float]:
    if not any(w > 0 for w in weights):
        raise ValueError("weights must contain at least one positive value")
    return weights


#: one non-negative finite weight per class, at least one positive
Weights = Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], AfterValidator(_some_positive)]


class PredPatchRequest(GetInputRequest):
    weights: Weights | None = None
    classes: list[ClassBody] | None = None
    session: SessionId = None


def describe_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


def parse(model: type[BaseModel], body: Any):
    """Validate `body` (already-decoded JSON) against `model`; RequestError naming the field."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RequestError(describe_error(exc)) from None


TOO_DEEP = "request body is JSON nested too deeply (arrays or objects inside each other): send a flatter one"


def decode_json(raw: bytes) -> Any:
    """JSON from request bytes; RequestError (not a traceback) when it is not JSON."""
    if not raw.strip():
        raise RequestError("request body is empty: send a JSON object")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:  # json's C scanner recurses once per nested array/object
        raise RequestError(TOO_DEEP) from None
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a valid JSON number")
