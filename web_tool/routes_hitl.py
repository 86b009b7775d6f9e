"""Human-in-the-loop routes: sessions, corrections, retraining, undo, classes and checkpoints.

Thin: each route validates its body (the request models below), calls `config.sessions`
(sessions.SessionManager) and answers JSON. Errors go through the app's JSON error plugin.
"""

from __future__ import annotations

from typing import Any

import bottle
from pydantic import Field

from web_tool import api
from web_tool.errors import RequestError
from web_tool.schemas import AreaRequest, ClassBody, Lenient, SessionId, parse


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
    name: str | None = Field(default=None, max_length=200)


class LoadRequest(SessionRequest):
    checkpoint: str = Field(min_length=1, max_length=64)


def optional_json(max_bytes: int) -> Any:
    """The JSON body, or {} when the request has none (e.g. `curl -X POST .../sessions`)."""
    return api.read_json(max_bytes, if_empty={})


def add_routes(app: bottle.Bottle, config) -> None:
    """Declare the human-in-the-loop routes on `app` (none when `config.sessions` is None)."""
    sessions = config.sessions
    if sessions is None:
        return
    limit = config.max_body_bytes

    def body(model):
        return parse(model, optional_json(limit))

    @app.post("/sessions")
    def create_session():
        optional_json(limit)
        return api.json_response({"session": sessions.create()})

    @app.get("/sessions/<session_id>")
    def describe_session(session_id):
        return api.json_response(sessions.describe(session_id))

    @app.post("/recordCorrection")
    def record_correction():
        req = body(CorrectionRequest)
        loader = config.loader(req.dataset)
        geom, crs = req.area()
        count = sessions.record(req.session, loader, geom, crs, req.value)
        return api.json_response({"success": True, "count": count})

    @app.post("/retrainModel")
    def retrain_model():
        req = body(SessionRequest)
        return api.json_response({"success": True, **sessions.retrain(req.session)})

    @app.post("/addClass")
    def add_class():
        req = body(AddClassRequest)
        classes = sessions.add_class(req.session, req.name, req.color)
        message = f"class {req.name!r} added as index {len(classes) - 1}"
        return api.json_response({"success": True, "classes": classes, "message": message})

    @app.post("/doUndo")
    def do_undo():
        req = body(SessionRequest)
        return api.json_response({"success": True, **sessions.undo(req.session)})

    @app.post("/resetModel")
    def reset_model():
        req = body(SessionRequest)
        return api.json_response({"success": True, **sessions.reset(req.session)})

    @app.post("/checkpoints")
    def save_checkpoint():
        req = body(CheckpointRequest)
        return api.json_response(
            {"success": True, "checkpoint": sessions.save_checkpoint(req.session, req.name)}
        )

    @app.get("/checkpoints")
    def list_checkpoints():
        return api.json_response(sessions.list_checkpoints())

    @app.post("/doLoad")
    def do_load():
        req = body(LoadRequest)
        if not req.checkpoint.strip():
            raise RequestError("checkpoint must be a checkpoint id from GET /checkpoints")
        return api.json_response({"success": True, **sessions.load_checkpoint(req.checkpoint, req.session)})
