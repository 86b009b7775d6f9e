"""The API described as OpenAPI 3.1, built from the app's own routes and request models.

Every route the app serves appears; the POST endpoints' bodies are the same pydantic models that
validate requests, so the description cannot drift from what the server accepts.
"""

from __future__ import annotations

import re
from typing import Any

import bottle
from pydantic import BaseModel

from web_tool import __version__
from web_tool.http.schemas import (
    AddClassRequest,
    AnswerRequest,
    AoiRequest,
    CheckpointRequest,
    CorrectionRequest,
    DeleteCorrectionsRequest,
    GetInputRequest,
    LoadRequest,
    NewSessionRequest,
    PredPatchRequest,
    PredTileRequest,
    ReferenceRequest,
    SampleRequest,
    SessionRequest,
)

#: request body model of each JSON endpoint
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "POST /predPatch": PredPatchRequest,
    "POST /getInput": GetInputRequest,
    "POST /sessions": NewSessionRequest,
    "POST /recordCorrection": CorrectionRequest,
    "POST /retrainModel": SessionRequest,
    "POST /addClass": AddClassRequest,
    "POST /doUndo": SessionRequest,
    "POST /resetModel": SessionRequest,
    "POST /checkpoints": CheckpointRequest,
    "POST /doLoad": LoadRequest,
    "POST /checkpoints/<checkpoint_id>/share": SessionRequest,
    "POST /deleteCorrections": DeleteCorrectionsRequest,
    "POST /aoi": AoiRequest,
    "POST /predTile": PredTileRequest,
    "POST /jobs/<job_id>/samples": SampleRequest,
    "POST /jobs/<job_id>/samples/<sample_id>/answers": AnswerRequest,
    "POST /jobs/<job_id>/reference": ReferenceRequest,
}
#: GET and DELETE endpoints that belong to a session: they take it as `?session=<id>`
SESSION_QUERY = {
    "GET /checkpoints",
    "DELETE /checkpoints/<checkpoint_id>/share",
    "GET /jobs",
    "GET /jobs/<job_id>",
    "DELETE /jobs/<job_id>",
    "GET /jobs/<job_id>/samples",
    "GET /jobs/<job_id>/samples/<sample_id>",
    "GET /jobs/<job_id>/samples/<sample_id>/report",
    "GET /jobs/<job_id>/samples/<sample_id>/report.csv",
    "GET /corrections",
    "GET /predTiles/<dataset>/<z:int>/<x:int>/<y:int>.png",
}
SESSION_PARAMETER = {
    "name": "session",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": 64},
    "description": "your session's id (default: the shared `default` session)",
}
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
HIDDEN = {"/<path:path>", "/"}  # static files and the page itself


#: JSON Schema type of a Bottle route filter's value (other filters, and none, match a string)
FILTER_TYPES = {"int": "integer", "float": "number"}


def openapi_path(rule: str) -> tuple[str, list[tuple[str, str]]]:
    """Bottle's `/jobs/<job_id>` or `/tiles/<z:int>.png` → (`/jobs/{job_id}`, [(name, JSON type)])."""
    params = [
        (name, FILTER_TYPES.get(kind, "string")) for name, kind in re.findall(r"<(\w+)(?::(\w+))?>", rule)
    ]
    return re.sub(r"<(\w+)(?::\w+)?>", r"{\1}", rule), params


def operation(
    method: str, rule: str, params: list[tuple[str, str]], schemas: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": f"{method} {rule}",
        "responses": {
            "200": {"description": "success"},
            "4XX": {
                "description": "the request is wrong; the message says what to change",
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }
    parameters = [{"name": n, "in": "path", "required": True, "schema": {"type": kind}} for n, kind in params]
    if f"{method} {rule}" in SESSION_QUERY:
        parameters.append(SESSION_PARAMETER)
    if parameters:
        op["parameters"] = parameters
    model = REQUEST_MODELS.get(f"{method} {rule}")
    if model is not None:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        op["requestBody"] = {
            "required": model not in (SessionRequest, NewSessionRequest),  # these bodies may be empty
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    return op


def build_openapi(app: bottle.Bottle) -> dict[str, Any]:
    """The OpenAPI document of `app`'s routes (OPTIONS and static files left out)."""
    paths: dict[str, dict[str, dict[str, Any]]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        if route.method == "OPTIONS" or route.rule in HIDDEN:
            continue
        path, params = openapi_path(route.rule)
        paths.setdefault(path, {})[route.method.lower()] = operation(
            route.method, route.rule, params, schemas
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Land Cover Mapping tool", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas},
    }
