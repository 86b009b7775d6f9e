"""Request bodies as pydantic models: one place that says what each endpoint accepts.

`parse(Model, body)` turns a validation failure into a RequestError naming the field; the same
models generate the OpenAPI description (`openapi.py`). In order: the building blocks and the seed's
`/getInput` and `/predPatch`, then the bodies of the human-in-the-loop routes, of the page's map, of
`/predTile`, and of accuracy assessment.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from rasterio.crs import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from web_tool.errors import RequestError
from web_tool.geometry import MAX_COORD, Extent, parse_crs, polygon_from_geojson
from web_tool.mapping.pipeline import AOI
from web_tool.validate.design import DEFAULT_MIN_PER_CLASS, DEFAULT_TOTAL
from web_tool.validate.reference import DEFAULT_PROPERTY

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


def query_session(query: Mapping[str, str]) -> str | None:
    """The `session` of a request's query string (bottle's `request.query`); None: the default one."""
    return parse(SessionQuery, {"session": query.get("session") or None}).session


class SpatialReference(Lenient):
    """The extent's CRS as an EPSG code: `latestWkid`, or `wkid` (as ArcGIS writes them)."""

    latestWkid: int | None = None
    wkid: int | None = None

    @model_validator(mode="after")
    def _has_code(self) -> Self:
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
    def _one_area(self) -> Self:
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
    #: false: leave the imagery (`input_naip`) out of the answer (the page shows imagery as tiles)
    input_naip: bool = True


def describe_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


#: one of the request models below
RequestModel = TypeVar("RequestModel", bound=BaseModel)


def parse(model: type[RequestModel], body: object) -> RequestModel:
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


# human-in-the-loop (routes/hitl.py)


class NewSessionRequest(Lenient):
    """`POST /sessions` takes no fields: a new session starts from the base model."""


class SessionRequest(Lenient):
    session: SessionId = None


class CorrectionRequest(SessionRequest, AreaRequest):
    """An area (`extent`, or a GeoJSON `geometry` in EPSG:`crs`) and the class it is."""

    value: int
    crs: int = 3857
    dataset: str | None = None


class AddClassRequest(SessionRequest, ClassBody):
    pass


class CheckpointRequest(SessionRequest):
    name: CheckpointName | None = None


class LoadRequest(SessionRequest):
    """A checkpoint this session saved (`checkpoint`: its id), or one shared with it (`share`)."""

    checkpoint: str | None = Field(default=None, min_length=1, max_length=64)
    share: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_checkpoint(self) -> Self:
        given = [v for v in (self.checkpoint, self.share) if v is not None]
        if len(given) != 1 or not given[0].strip():
            raise ValueError("send `checkpoint` (an id from GET /checkpoints) or `share` (from a share link)")
        return self


# the page's map (routes/page.py)


class DeleteCorrectionsRequest(AreaRequest):
    """An area (`extent`, or a GeoJSON `geometry` in EPSG:`crs`) whose corrections the session erases."""

    session: SessionId = None
    dataset: str | None = None


class AoiRequest(AreaRequest):
    """An export area to check before a job starts: its area, the cap, its outline in EPSG:4326."""

    dataset: str | None = None


# large-area maps (routes/jobs.py)


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


# accuracy assessment (routes/validate.py)


class SampleRequest(Lenient):
    """A new validation sample of the job's map: `total` points, at least `min_per_class` a class."""

    session: SessionId = None
    total: Annotated[StrictInt, Field(ge=1)] = DEFAULT_TOTAL
    min_per_class: Annotated[StrictInt, Field(ge=2)] = DEFAULT_MIN_PER_CLASS
    seed: Annotated[StrictInt, Field(ge=0, lt=2**63)] | None = None


class AnswerRequest(Lenient):
    """What the reference is at point `point`: a class index, "unsure", or "skip" (ask again later)."""

    session: SessionId = None
    point: Annotated[StrictInt, Field(ge=0, lt=2**31)]
    answer: StrictInt | Literal["unsure", "skip"]


#: a reference code (as text) → a class name or index, or null to leave it out
Codes = dict[Annotated[str, Field(max_length=64)], StrictInt | Annotated[str, Field(max_length=100)] | None]


class ReferenceRequest(Lenient):
    """The job's map against a reference: the dataset's `labels`, a `raster` (a base64 GeoTIFF), or
    `points` (a GeoJSON FeatureCollection whose `property` holds the class; coordinates in `crs`)."""

    session: SessionId = None
    labels: StrictBool = False
    raster: str | None = None
    points: dict[str, Any] | None = None
    property: Annotated[str, Field(min_length=1, max_length=100)] = DEFAULT_PROPERTY
    crs: int | str = 4326
    codes: Codes | None = None
    format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _one_reference(self) -> Self:
        if sum([self.labels, self.raster is not None, self.points is not None]) != 1:
            raise ValueError(
                "send exactly one of `labels: true`, `raster` (a base64 GeoTIFF) or `points` (GeoJSON)"
            )
        return self
