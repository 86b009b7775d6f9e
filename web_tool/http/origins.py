"""Which web pages may drive this server: the Host names it answers to, the Origins it answers CORS
to, and the Content-Type a request body must declare.

Without a token, any page the analyst opens could otherwise call the API through their browser
(list sessions, reset one, add classes). Three checks stop that:

- **Host.** A page that points its own DNS name at 127.0.0.1 (DNS rebinding) sends that name as
  Host. Only IP addresses, `localhost`, the `--host` name, this machine's names (when bound beyond
  loopback) and the hosts of `--cors_origin` are served; 403 otherwise.
- **Origin.** A browser says which page a request comes from. Only the server's own pages and the
  `--cors_origin` ones may call it (403 otherwise), and only they get CORS headers, so no other page
  can read an answer either.
- **Content-Type.** A body must be declared `application/json` (415 otherwise), so the `text/plain`
  and form bodies that a page may send without asking first (no CORS preflight) are refused.

With a token every API call needs it, and another page cannot learn it: CORS is then open to every
origin (`*`, so that several servers can answer one page) and Host is not checked; the
Content-Type rule holds either way.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit

import bottle

from web_tool.http import api

#: methods whose body is read; such a body must be JSON
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
DEFAULT_PORTS = {"http": 80, "https": 443}
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
    "Access-Control-Max-Age": "600",
}


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is this machine's own (127.0.0.0/8, ::1)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def parse_origin(text: str) -> str:
    """`scheme://host[:port]` normalised (lower case, default port dropped); ValueError otherwise."""
    parts = urlsplit(text.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        raise ValueError(
            f"{text!r} is not an origin: give scheme, host and port only, e.g. http://mapper.lab:4444"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else "")


def host_and_port(netloc: str) -> tuple[str, int | None]:
    """('name', port) of a Host header or a URL's netloc, lower case, IPv6 brackets removed; ('', None)
    for anything that is not a bare host[:port]."""
    if any(ch in netloc for ch in "@/\\?# "):
        return "", None
    parts = urlsplit(f"//{netloc.strip()}")
    try:
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return (parts.hostname or "").lower(), None


@dataclass(frozen=True)
class SitePolicy:
    """Host names served (besides IP addresses) and origins allowed (besides the server's own)."""

    hosts: frozenset[str]
    origins: frozenset[str]
    #: a token guards the API: any origin may call (it must still send the token)
    open: bool = False

    @classmethod
    def build(
        cls, bind_host: str, cors_origins: list[str] | tuple[str, ...] = (), token: bool = False
    ) -> Self:
        origins = frozenset(parse_origin(o) for o in cors_origins)
        hosts = {"localhost", bind_host.strip("[]").lower()}
        if not is_loopback(bind_host):  # reachable from the network: by this machine's names too
            hosts |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        hosts |= {host_and_port(urlsplit(o).netloc)[0] for o in origins}
        return cls(frozenset(hosts), origins, open=bool(token))

    def serves_host(self, host_header: str) -> bool:
        name, _ = host_and_port(host_header)
        return is_ip(name) or name in self.hosts

    def allows_origin(self, origin: str, host_header: str | None) -> bool:
        """The page at `origin` may call: it is listed, or it is this server's own (same host:port)."""
        try:
            origin = parse_origin(origin)
        except ValueError:  # "null" (sandboxed frames, files) and anything odd
            return False
        return origin in self.origins or (host_header is not None and same_site(origin, host_header))


def same_site(origin: str, host_header: str) -> bool:
    """Whether `origin` is the server that the request's Host names (the same name and port)."""
    parts = urlsplit(origin)
    default = DEFAULT_PORTS[parts.scheme]
    name, port = host_and_port(host_header)
    return (parts.hostname or "").lower() == name and (parts.port or default) == (port or default)


def is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def check_request(policy: SitePolicy, request: bottle.BaseRequest) -> None:
    """Raise a JSON 403 (host or page not allowed) or 415 (body not declared JSON)."""
    host, origin = request.get_header("Host"), request.get_header("Origin")
    if not policy.open and host and not policy.serves_host(host):
        name = host_and_port(host)[0]
        raise api.error_response(
            403,
            f"this server does not answer to the name {name!r}: use localhost or its IP address, or start"
            f" it with --cors_origin http://{host} if that name is really this server",
        )
    if not policy.open and origin is not None and not policy.allows_origin(origin, host):
        raise api.error_response(
            403,
            f"the web page at {origin} may not use this server: it answers its own page and the origins"
            f" given with --cors_origin (start it with --cors_origin {origin} if you trust that page)",
        )
    if request.method in BODY_METHODS and request.content_length > 0 and not is_json(request.content_type):
        raise api.error_response(
            415,
            f"the request body must be JSON sent with 'Content-Type: application/json', not"
            f" {request.content_type or 'no Content-Type'!r}"
            " (with curl: -H 'Content-Type: application/json')",
        )


def add_headers(policy: SitePolicy, request: bottle.BaseRequest, response: bottle.BaseResponse) -> None:
    """CORS headers for an allowed page (every page when open), and no content sniffing."""
    response.set_header("X-Content-Type-Options", "nosniff")
    origin = request.get_header("Origin")
    if policy.open:
        response.set_header("Access-Control-Allow-Origin", "*")
    elif origin is not None and policy.allows_origin(origin, request.get_header("Host")):
        response.set_header("Access-Control-Allow-Origin", origin)
        response.add_header("Vary", "Origin")
    else:
        return
    for key, value in CORS_HEADERS.items():
        response.set_header(key, value)


def install(app: bottle.Bottle, policy: SitePolicy) -> None:
    """Check every request against `policy`, add CORS headers, and answer every preflight."""
    app.add_hook("before_request", lambda: check_request(policy, bottle.request))
    app.add_hook("after_request", lambda: add_headers(policy, bottle.request, bottle.response))
    app.route("/", method="OPTIONS", callback=lambda: "")
    app.route("/<path:path>", method="OPTIONS", callback=lambda path: "")
