"""The seed's routes: the page, /health, /datasets, imagery tiles, and the API of record
(`POST /getInput`, `POST /predPatch`, see ../shared/API.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bottle

from web_tool import __version__
from web_tool.http import api
from web_tool.http.schemas import GetInputRequest, PredPatchRequest, parse
from web_tool.http.static import serve_static
from web_tool.rendering.imagery_tiles import render_tile
from web_tool.rendering.patch import get_input, pred_patch

if TYPE_CHECKING:
    from web_tool.http.config import AppConfig


def add_routes(app: api.Router, config: AppConfig) -> None:
    @app.get("/")
    def index() -> bottle.HTTPResponse:
        return serve_static("index.html")

    @app.get("/health")
    def health() -> bottle.HTTPResponse:
        endpoints = sorted({f"{r.method} {r.rule}" for r in app.routes if r.method != "OPTIONS"})
        return api.json_response(
            {
                "status": "ok",
                "model_name": config.model.name,
                "version": __version__,
                "auth": bool(config.token),
                "endpoints": endpoints,
            }
        )

    @app.get("/datasets")
    def datasets() -> bottle.HTTPResponse:
        return api.json_response([loader.describe() for loader in config.loaders.values()])

    @app.get("/tiles/<dataset>/<z:int>/<x:int>/<y:int>.png", url_token=True)
    def tiles(dataset: str, z: int, x: int, y: int) -> bottle.HTTPResponse:
        png = render_tile(config.loader(dataset), z, x, y)
        return bottle.HTTPResponse(png, content_type="image/png", Cache_Control="public, max-age=3600")

    @app.post("/getInput", heavy=True)
    def get_input_route() -> bottle.HTTPResponse:
        body = api.read_json(config.max_body_bytes)
        req = parse(GetInputRequest, body)
        result = get_input(config.loader(req.dataset), req.extent.to_extent())
        return api.json_response({"extent": body["extent"], **result})

    @app.post("/predPatch", heavy=True)
    def pred_patch_route() -> bottle.HTTPResponse:
        body = api.read_json(config.max_body_bytes)
        req = parse(PredPatchRequest, body)
        loader = config.loader(req.dataset)
        classes = [c.model_dump() for c in req.classes] if req.classes else None
        model = config.model_for(req.session)
        result = pred_patch(loader, model, req.extent.to_extent(), req.weights, classes, req.input_naip)
        return api.json_response({"extent": body["extent"], "weights": body.get("weights"), **result})
