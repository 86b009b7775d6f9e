"""Routes the page's map needs besides the seed's: prediction tiles, corrections as a layer, erasing
corrections by area, and checking an export area before a job starts.

    GET  /predTiles/<dataset>/<z>/<x>/<y>.png?session=&style=&colors=&weights=   the session's model, XYZ
    GET  /corrections?session=&dataset=&after=     the session's corrections as GeoJSON (EPSG:4326)
    POST /deleteCorrections   {"extent" | "geometry", "crs"?, "session"?, "dataset"?}   undoable
    POST /aoi                 {"extent" | "geometry", "crs"?, "dataset"?}   area, cap, outline in 4326
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bottle
from rasterio.crs import CRS

from web_tool.errors import RequestError
from web_tool.geometry import WGS84
from web_tool.http import api
from web_tool.http.schemas import AoiRequest, DeleteCorrectionsRequest, parse
from web_tool.learning import correction_shapes
from web_tool.mapping.pipeline import AOI, clip_to_imagery
from web_tool.rendering.prediction_tiles import PredictionTiles, dataset_native_zoom, parse_style

if TYPE_CHECKING:
    from web_tool.http.config import AppConfig
    from web_tool.ServerModels.base import ServerModel

#: prediction tiles may be kept by the browser this long when they are of the current model
TILE_MAX_AGE_S = 3600


def owner_and_model(config: AppConfig, session_id: str | None) -> tuple[tuple[str, int], ServerModel]:
    """((session id, model version), model) serving `session_id`; version before model (see Session).
    Sessions still on the base model (version 0) share one owner, so they share cached blocks."""
    if config.sessions is None:
        return ("base", 0), config.model
    session = config.sessions.get(session_id)
    version = session.version
    return ((session.id, version) if version else ("base", 0)), session.model


def int_query(name: str, default: int = 0) -> int:
    value: str = bottle.request.query.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise RequestError(f"{name} must be a whole number, not {value!r}") from None


def add_routes(app: api.Router, config: AppConfig, tiles: PredictionTiles | None = None) -> None:
    """Declare the page's routes on `app`; `tiles` holds the prediction tile cache (a new one if None)."""
    tiles = tiles or PredictionTiles()
    app.config["landcover.pred_tiles"] = tiles

    @app.get("/predTiles/<dataset>/<z:int>/<x:int>/<y:int>.png", url_token=True)  # fetched by URL
    def pred_tiles(dataset: str, z: int, x: int, y: int) -> bottle.HTTPResponse:
        query = bottle.request.query
        loader = config.loader(dataset)
        owner, model = owner_and_model(config, query.get("session") or None)
        style = parse_style(model, query.get("style", "hard"), query.get("colors"), query.get("weights"))
        gone = bottle.request.environ.get("waitress.client_disconnected", lambda: False)
        png = tiles.tile(loader, model, owner, z, x, y, style, cancelled=gone)
        current = str(owner[1]) == query.get("v", "")
        cache = f"private, max-age={TILE_MAX_AGE_S}" if current else "no-store"
        return bottle.HTTPResponse(
            png,
            content_type="image/png",
            Cache_Control=cache,
            X_Model_Version=str(owner[1]),
            X_Native_Zoom=str(dataset_native_zoom(loader)),
        )

    sessions, jobs = config.sessions, config.jobs
    if sessions is not None:

        @app.get("/corrections")
        def corrections() -> bottle.HTTPResponse:
            query = bottle.request.query
            session = sessions.get(query.get("session") or None)
            dataset = config.loader(query.get("dataset") or None).name
            body = correction_shapes.collection(list(session.corrections), dataset, int_query("after"))
            return api.json_response({**body, "session": session.id, "version": session.version})

        @app.post("/deleteCorrections")
        def delete_corrections() -> bottle.HTTPResponse:
            req = parse(DeleteCorrectionsRequest, api.read_json(config.max_body_bytes))
            loader = config.loader(req.dataset)
            with sessions.unchanged_on_failure(req.session):
                erased = sessions.erase(req.session, loader.name, *req.area(config.max_vertices))
            return api.json_response({"success": True, **erased})

    if jobs is not None:

        @app.post("/aoi")
        def aoi() -> bottle.HTTPResponse:
            req = parse(AoiRequest, api.read_json(config.max_body_bytes))
            loader = config.loader(req.dataset)
            geom, crs = req.area(config.max_vertices)
            area = AOI(geom, CRS.from_user_input(crs))
            with_imagery = clip_to_imagery(loader, area)
            km2 = with_imagery.area_km2()
            return api.json_response(
                {
                    "geometry": area.to_crs(WGS84).geometry.__geo_interface__,
                    "area_km2": round(area.area_km2(), 6),
                    "imagery_km2": round(km2, 6),
                    "max_km2": jobs.max_km2,
                    "fits": km2 <= jobs.max_km2,
                }
            )
