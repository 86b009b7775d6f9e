"""`make_app(config)`: the Bottle app, built from its plugins (origins, JSON errors, auth, admission)
and its route groups, with no global state, so tests build as many apps as they like."""

from __future__ import annotations

import bottle

from web_tool.http import admission, api, auth, origins
from web_tool.http.config import AppConfig
from web_tool.http.openapi import build_openapi
from web_tool.http.routes import core as routes_core
from web_tool.http.routes import hitl as routes_hitl
from web_tool.http.routes import jobs as routes_jobs
from web_tool.http.routes import page as routes_page
from web_tool.http.routes import validate as validation_routes
from web_tool.http.static import serve_static


def make_app(config: AppConfig) -> bottle.Bottle:
    """The Bottle app: static frontend, discovery, tiles and the seed's prediction endpoints."""
    app = bottle.Bottle()
    origins.install(app, origins.SitePolicy.build(config.host, config.cors_origins, bool(config.token)))
    api.install(app)
    auth.install(app, config.token)
    app.install(admission.HeavyRoutes(config.gate))

    routes_core.add_routes(app, config)
    # feature modules add their own routes: human-in-the-loop, large-area jobs, the page's map
    # layers, accuracy assessment
    routes_hitl.add_routes(app, config)
    routes_jobs.add_routes(app, config)
    routes_page.add_routes(app, config)
    validation_routes.add_routes(app, config)

    router: api.Router = app

    @router.get("/openapi.json")
    def openapi_route() -> bottle.HTTPResponse:
        return api.json_response(build_openapi(app))

    @router.get("/<path:path>")
    def static(path: str) -> bottle.HTTPResponse:
        return serve_static(path)

    return app
