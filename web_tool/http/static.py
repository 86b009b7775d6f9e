"""The page's own files: `web_tool/index.html`, `endpoints.js`, js/, css/, and the pinned Leaflet
packages from node_modules/ under /vendor/; never anything else."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import bottle

from web_tool.errors import NotFoundError
from web_tool.paths import WEB_ROOT

REPO_ROOT = WEB_ROOT.parent
#: the only files and folders of web_tool/ that the static route serves
STATIC_FILES = {"index.html", "endpoints.js", "endpoints.mine.js", "favicon.ico"}
STATIC_DIRS = {"js", "css", "img"}
#: pinned frontend packages (installed by `make`), served under /vendor/<name>/
VENDOR_DIRS = {
    "leaflet": REPO_ROOT / "node_modules" / "leaflet" / "dist",
    "geoman": REPO_ROOT / "node_modules" / "@geoman-io" / "leaflet-geoman-free" / "dist",
}


def is_frontend_path(parts: tuple[str, ...]) -> bool:
    """Whether a path inside web_tool/ (as parts) names one of the frontend's own files."""
    return (len(parts) == 1 and parts[0] in STATIC_FILES) or (len(parts) > 1 and parts[0] in STATIC_DIRS)


def serve_static(path: str) -> bottle.HTTPResponse:
    """A frontend file, or a JSON 404: never anything outside the frontend's own files.

    The check runs on the resolved path too, so a symlink cannot lead out of the allowed files.
    """
    if path == "endpoints.js" and (WEB_ROOT / "endpoints.mine.js").is_file():
        path = "endpoints.mine.js"  # the local override (git-ignored), without a 404 when there is none
    parts = Path(path).parts
    not_found = NotFoundError(f"no such file: {path[:100]!r}")
    if not parts or ".." in parts or path.startswith("/"):
        raise not_found
    allowed: Callable[[tuple[str, ...]], bool]
    if parts[0] == "vendor" and len(parts) > 2 and parts[1] in VENDOR_DIRS:
        root, rel, allowed = VENDOR_DIRS[parts[1]].resolve(), Path(*parts[2:]), lambda p: True
    else:
        root, rel, allowed = WEB_ROOT, Path(path), is_frontend_path
    try:  # NUL bytes, names too long for the file system: no such file either
        target = (root / rel).resolve()
        found = root in target.parents and target.is_file() and allowed(target.relative_to(root).parts)
    except (ValueError, OSError):
        found = False
    if not found:
        raise not_found
    response = bottle.static_file(str(target.relative_to(root)), root=str(root))
    if isinstance(response, bottle.HTTPError):
        raise not_found
    return response
