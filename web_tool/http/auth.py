"""Optional shared-secret auth: with a token set, every API call must carry it.

    python web_tool/server.py --token "$(openssl rand -hex 16)"     # or LANDCOVER_TOKEN=...

API calls send `Authorization: Bearer <token>`. Images that a browser fetches by URL (map tiles,
job downloads) cannot carry a header, so the routes declared with `url_token=True` take
`?access_token=<token>` instead; no other route does (URLs end up in logs and browser history).
The page's own files, `/health` (liveness checks) and CORS preflights stay open: they reveal
nothing that is not in the source code. Without a token every call is allowed, which is why the
server then binds to loopback unless `--host` says otherwise.
"""

from __future__ import annotations

import hmac
from typing import Any

import bottle

from web_tool.http import api
from web_tool.http.api import Callback

#: environment variable read when `--token` is not given (keeps the secret out of `ps`)
TOKEN_ENV = "LANDCOVER_TOKEN"
#: routes anyone may call: the page's files and the liveness check
PUBLIC_RULES = {"/", "/<path:path>", "/health"}


def is_public(route: bottle.Route) -> bool:
    return route.method == "OPTIONS" or (route.method == "GET" and route.rule in PUBLIC_RULES)


def takes_url_token(route: bottle.Route) -> bool:
    """Routes a browser fetches by URL (tiles, downloads) may carry the token in the query."""
    return route.method == "GET" and bool(route.config.get("url_token"))


def presented_token(request: bottle.BaseRequest, in_url: bool = False) -> str | None:
    """The token a request carries: the Bearer header, or `access_token` when `in_url` allows it."""
    header: str = request.get_header("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if in_url:
        token: str = request.query.get("access_token", "")
        return token or None
    return None


class TokenAuth:
    """Bottle plugin: a 401 JSON error for calls to non-public routes without the right token."""

    name = "token_auth"
    api = 2

    def __init__(self, token: str):
        if not token:
            raise ValueError("an empty token would let everybody in")
        self.token = token.encode()

    def apply(self, callback: Callback, route: bottle.Route) -> Callback:
        if is_public(route):
            return callback

        in_url = takes_url_token(route)
        how = " (or ?access_token=<token> in a tile or download URL)" if in_url else ""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = presented_token(bottle.request, in_url)
            if given is None:
                raise self.refuse(
                    f"this server needs an access token: send 'Authorization: Bearer <token>'{how}"
                )
            if not hmac.compare_digest(given.encode(), self.token):
                raise self.refuse("the access token is wrong")
            return callback(*args, **kwargs)

        return wrapper

    @staticmethod
    def refuse(message: str) -> bottle.HTTPResponse:
        response = api.error_response(401, message)
        response.set_header("WWW-Authenticate", 'Bearer realm="landcover"')
        return response


def install(app: bottle.Bottle, token: str | None) -> None:
    """Require `token` on every non-public route of `app`; no-op when `token` is None or empty."""
    if token:
        app.install(TokenAuth(token))
