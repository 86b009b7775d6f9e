"""Human-in-the-loop routes: sessions, corrections, retraining, undo, classes and checkpoints.

Thin: each route validates its body (its request model in `schemas.py`), calls `config.sessions`
(sessions.SessionManager) and answers JSON. Errors go through the app's JSON error plugin.
Everything here belongs to one session: `"session"` in a POST body, `?session=` on a GET or
DELETE, the shared `default` one when absent. A checkpoint another session saved is not there for
you (404) unless it was shared with you: its share secret loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bottle

from web_tool.errors import TooLargeError
from web_tool.http import api
from web_tool.http.schemas import (
    AddClassRequest,
    CheckpointRequest,
    CorrectionRequest,
    LoadRequest,
    RequestModel,
    SessionRequest,
    parse,
    query_session,
)

if TYPE_CHECKING:
    from web_tool.http.config import AppConfig


def optional_json(max_bytes: int) -> Any:
    """The JSON body, or {} when the request has none (e.g. `curl -X POST .../sessions`)."""
    return api.read_json(max_bytes, if_empty={})


def check_room_for_class(classes: list[dict[str, Any]], max_classes: int) -> None:
    if len(classes) >= max_classes:
        raise TooLargeError(
            f"this session has {len(classes)} classes, the most the server allows (--max_classes"
            f" {max_classes}): reuse a class, or start a new session"
        )


def add_routes(app: api.Router, config: AppConfig) -> None:
    """Declare the human-in-the-loop routes on `app` (none when `config.sessions` is None)."""
    sessions = config.sessions
    if sessions is None:
        return
    limit = config.max_body_bytes

    def body(model: type[RequestModel]) -> RequestModel:
        return parse(model, optional_json(limit))

    @app.post("/sessions")
    def create_session() -> bottle.HTTPResponse:
        optional_json(limit)
        return api.json_response({"session": sessions.create()})

    @app.get("/sessions/<session_id>")
    def describe_session(session_id: str) -> bottle.HTTPResponse:
        return api.json_response(sessions.describe(session_id))

    @app.post("/recordCorrection")
    def record_correction() -> bottle.HTTPResponse:
        req = body(CorrectionRequest)
        loader = config.loader(req.dataset)
        geom, crs = req.area(config.max_vertices)
        count = sessions.record(req.session, loader, geom, crs, req.value)
        return api.json_response({"success": True, "count": count})

    @app.post("/retrainModel", heavy=True)
    def retrain_model() -> bottle.HTTPResponse:
        req = body(SessionRequest)
        with sessions.unchanged_on_failure(req.session):
            return api.json_response({"success": True, **sessions.retrain(req.session)})

    @app.post("/addClass")
    def add_class() -> bottle.HTTPResponse:
        req = body(AddClassRequest)
        with sessions.unchanged_on_failure(req.session) as session:
            check_room_for_class(session.classes, config.max_classes)
            classes = sessions.add_class(session.id, req.name, req.color)
        message = f"class {req.name!r} added as index {len(classes) - 1}"
        return api.json_response({"success": True, "classes": classes, "message": message})

    @app.post("/doUndo")
    def do_undo() -> bottle.HTTPResponse:
        req = body(SessionRequest)
        with sessions.unchanged_on_failure(req.session):
            return api.json_response({"success": True, **sessions.undo(req.session)})

    @app.post("/resetModel")
    def reset_model() -> bottle.HTTPResponse:
        req = body(SessionRequest)
        with sessions.unchanged_on_failure(req.session):
            return api.json_response({"success": True, **sessions.reset(req.session)})

    @app.post("/checkpoints")
    def save_checkpoint() -> bottle.HTTPResponse:
        req = body(CheckpointRequest)
        with sessions.unchanged_on_failure(req.session):
            checkpoint = sessions.save_checkpoint(req.session, req.name)
        return api.json_response({"success": True, "checkpoint": checkpoint})

    @app.get("/checkpoints")
    def list_checkpoints() -> bottle.HTTPResponse:
        return api.json_response(sessions.list_checkpoints(query_session(bottle.request.query)))

    @app.post("/checkpoints/<checkpoint_id>/share")
    def share_checkpoint(checkpoint_id: str) -> bottle.HTTPResponse:
        req = body(SessionRequest)
        share = sessions.share_checkpoint(checkpoint_id, req.session)
        return api.json_response({"success": True, "share": share, "link": f"/shared/{share}"})

    @app.delete("/checkpoints/<checkpoint_id>/share")
    def unshare_checkpoint(checkpoint_id: str) -> bottle.HTTPResponse:
        sessions.unshare_checkpoint(checkpoint_id, query_session(bottle.request.query))
        return api.json_response({"success": True, "message": "the checkpoint's share links no longer work"})

    @app.get("/shared/<share>")
    def describe_shared(share: str) -> bottle.HTTPResponse:
        return api.json_response(sessions.describe_shared(share))

    @app.post("/doLoad", heavy=True)
    def do_load() -> bottle.HTTPResponse:
        req = body(LoadRequest)
        with sessions.unchanged_on_failure(req.session):
            result = sessions.load_checkpoint(req.checkpoint, req.session, share=req.share)
        return api.json_response({"success": True, **result})
