"""The HTTP API, in-process (conftest.app_server): every endpoint and every error case."""

import base64
import json
import os
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from tests.conftest import InProcessServer
from web_tool.geometry import WEB_MERCATOR, Extent, parse_crs

UTM = parse_crs(32618)
# the tiny dataset: 2x2 tiles of 64 m at 1 m, UTM 18N, x 500000..500128, y 4300000..4300128
INSIDE = Extent(500_030, 4_300_030, 500_098, 4_300_098, crs=UTM).to_crs(WEB_MERCATOR)


def extent_body(ext=INSIDE, wkid=3857):
    return {
        "xmin": ext.xmin,
        "ymin": ext.ymin,
        "xmax": ext.xmax,
        "ymax": ext.ymax,
        "spatialReference": {"latestWkid": wkid},
    }


def call(server, path, body=None, method=None, raw=None, headers=None):
    """(status, headers, decoded JSON or bytes) of a request: real HTTP (urllib) to a LiveServer,
    in-process to an InProcessServer."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if isinstance(server, InProcessServer):
        headers = dict(headers or {})
        if data is not None:  # as urllib's add_header: replaces any Content-Type given
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = "application/json"
        r = server.request(
            method or ("POST" if data is not None else "GET"), path, data=data, headers=headers
        )
        status, hdrs, payload = r.status_code, r.headers, r.content
        if hdrs.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(payload)
        return status, hdrs, payload
    req = urllib.request.Request(server.url + path, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, hdrs, payload = resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        status, hdrs, payload = err.code, err.headers, err.read()
    if hdrs.get("Content-Type", "").startswith("application/json"):
        payload = json.loads(payload)
    return status, hdrs, payload


def decode_png(b64):
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not a PNG"
    return img


def test_health_names_the_model_and_lists_endpoints(app_server):
    status, _, body = call(app_server, "/health")
    assert status == 200 and body["status"] == "ok" and body["model_name"] == "tiny"
    assert "POST /predPatch" in body["endpoints"] and body["version"]


def test_datasets_describe_crs_resolution_bounds_and_classes(app_server):
    status, _, body = call(app_server, "/datasets")
    assert status == 200
    (ds,) = body
    assert ds["name"] == "tiny" and ds["default"] is True and ds["crs"] == "EPSG:32618"
    assert ds["resolution"] == pytest.approx(1.0)
    assert [c["name"] for c in ds["classes"]] == ["Water", "Forest", "Field", "Built"]
    xmin, ymin, xmax, ymax = ds["bounds_4326"]
    assert -76 < xmin < xmax < -74 and 38 < ymin < ymax < 39


def test_pred_patch_returns_the_contract_fields_with_equal_sized_pngs(app_server):
    req = {"extent": extent_body(), "weights": [0.25] * 4}
    status, hdrs, body = call(app_server, "/predPatch", req)
    assert status == 200, body
    assert {"extent", "weights", "model_name", "input_naip", "output_hard", "output_soft"} <= set(body)
    assert body["extent"] == req["extent"] and body["weights"] == req["weights"]
    shapes = {decode_png(body[k]).shape for k in ("input_naip", "output_hard", "output_soft")}
    assert len(shapes) == 1
    h, w, _ = shapes.pop()
    assert 60 <= w <= 80 and 60 <= h <= 80  # 68 m at 1 m
    assert "Access-Control-Allow-Origin" not in hdrs  # no page asked: no CORS (origins.py)


def test_pred_patch_leaves_the_imagery_out_when_asked_and_maps_the_same(app_server):
    full = call(app_server, "/predPatch", {"extent": extent_body()})[2]
    status, _, lean = call(app_server, "/predPatch", {"extent": extent_body(), "input_naip": False})
    assert status == 200 and "input_naip" not in lean and "input_naip" in full
    for key in ("output_hard", "output_soft", "output_uncertainty", "suggestions"):
        assert lean[key] == full[key], key
    status, _, body = call(app_server, "/predPatch", {"extent": extent_body(), "input_naip": "no"})
    assert status == 400 and "input_naip" in body["error"]


def test_pred_patch_hard_output_uses_class_colours_and_weights_change_it(app_server):
    def hard(weights):
        _, _, body = call(app_server, "/predPatch", {"extent": extent_body(), "weights": weights})
        return cv2.cvtColor(decode_png(body["output_hard"]), cv2.COLOR_BGRA2RGB)

    palette = {(0, 0, 255), (0, 128, 0), (128, 255, 128), (128, 96, 96)}
    even = hard([1, 1, 1, 1])
    assert {tuple(p) for p in even.reshape(-1, 3)} <= palette
    water = hard([1000, 1, 1, 1])
    assert (water.reshape(-1, 3) == (0, 0, 255)).all(axis=1).mean() > 0.95
    assert not np.array_equal(even, water)


def test_pred_patch_accepts_other_crs_codes(app_server):
    ext = INSIDE.to_crs(parse_crs(4326))
    status, _, body = call(app_server, "/predPatch", {"extent": extent_body(ext, 4326)})
    assert status == 200, body
    utm = INSIDE.to_crs(UTM)
    status, _, body = call(app_server, "/predPatch", {"extent": extent_body(utm, 32618)})
    assert status == 200, body


def test_get_input_returns_the_imagery(app_server):
    status, _, body = call(app_server, "/getInput", {"extent": extent_body()})
    assert status == 200 and set(body) >= {"extent", "input_naip"}
    img = decode_png(body["input_naip"])
    assert img.shape[2] == 4 and (img[..., 3] == 255).mean() > 0.95


def test_tiles_render_imagery_and_are_transparent_outside(app_server):
    import mercantile

    lon, lat = -75.0, 38.8
    t = mercantile.tile(lon, lat, 18)
    status, hdrs, png = call(app_server, f"/tiles/tiny/{t.z}/{t.x}/{t.y}.png")
    assert status == 200 and hdrs["Content-Type"] == "image/png"
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img.shape == (256, 256, 4)
    status, _, png = call(app_server, "/tiles/tiny/3/1/1.png")
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert status == 200 and (img[..., 3] == 0).all()


@pytest.mark.parametrize(
    "path,body,status,words",
    [
        ("/predPatch", {"extent": extent_body(), "dataset": "nope"}, 404, "unknown dataset 'nope'"),
        ("/predPatch", {"extent": extent_body(Extent(0, 0, 100, 100))}, 404, "here: it covers latitudes"),
        (
            "/predPatch",
            {"extent": {**extent_body(), "spatialReference": {"latestWkid": 123456}}},
            400,
            "unknown CRS code 123456",
        ),
        ("/predPatch", {"extent": {**extent_body(), "xmin": 1e9}}, 400, "xmin < xmax"),
        ("/predPatch", {"extent": extent_body(Extent(-8.0e6, 4.0e6, -7.9e6, 4.1e6))}, 413, "limit is"),
        ("/predPatch", {"extent": extent_body(), "weights": [1, 1]}, 400, "weights has 2 values"),
        ("/predPatch", {"extent": extent_body(), "weights": [-1, 1, 1, 1]}, 400, "weights"),
        ("/predPatch", {"weights": [1, 1, 1, 1]}, 400, "extent"),
        ("/predPatch", {"extent": {"xmin": "a", "xmax": 1, "ymin": 0, "ymax": 1}}, 400, "extent.xmin"),
        ("/predPatch", [1, 2], 400, "JSON object"),
        ("/getInput", {"extent": extent_body(), "dataset": "nope"}, 404, "unknown dataset"),
        ("/getInput", {"extent": extent_body(Extent(0, 0, 100, 100))}, 404, "covers"),
    ],
)
def test_bad_requests_get_a_json_error_naming_the_problem(app_server, path, body, status, words):
    got, hdrs, payload = call(app_server, path, body)
    assert got == status, payload
    assert hdrs["Content-Type"].startswith("application/json")
    assert words in payload["error"]


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b'{"extent": NaN}'])
def test_malformed_json_is_a_400(app_server, raw):
    status, _, payload = call(app_server, "/predPatch", raw=raw, method="POST")
    assert status == 400 and "JSON" in payload["error"] or "empty" in payload["error"]


def test_oversized_bodies_are_refused_with_413(app_server):
    app_server.config.max_body_bytes = 1000
    status, _, payload = call(app_server, "/predPatch", raw=b"{" + b" " * 5000 + b"}", method="POST")
    assert status == 413 and "limit" in payload["error"]


def test_every_post_answers_a_preflight_from_the_servers_own_page(app_server):
    for path in ("/predPatch", "/getInput", "/"):
        status, hdrs, _ = call(app_server, path, method="OPTIONS", headers={"Origin": app_server.url})
        assert status == 200
        assert hdrs["Access-Control-Allow-Origin"] == app_server.url
        assert "POST" in hdrs["Access-Control-Allow-Methods"] and hdrs["Vary"] == "Origin"


def test_unknown_routes_and_methods_are_json_errors(app_server):
    status, hdrs, payload = call(app_server, "/no/such/endpoint/x.json")
    assert status == 404 and "error" in payload
    status, hdrs, payload = call(app_server, "/predPatch")  # GET on a POST endpoint
    assert status in (404, 405) and "error" in payload


@pytest.mark.parametrize(
    "path",
    [
        "/server.py",
        "/datasets.json",
        "/DataLoader.py",
        "/data/demo_model.keras",
        "/%2e%2e/README.md",
        "/js/%2e%2e/server.py",
        "/js/../../requirements.txt",
        "/vendor/leaflet/../../../Makefile",
        "//etc/passwd",
        "/vendor/other/x.js",
    ],
)
def test_static_route_serves_nothing_but_frontend_files(app_server, path):
    status, _, payload = call(app_server, path)
    assert status == 404 and "error" in payload


def test_static_route_does_not_follow_symlinks_out_of_the_frontend(app_server):
    from web_tool.paths import WEB_ROOT

    link = WEB_ROOT / "css" / "zz_test_link.txt"
    link.parent.mkdir(exist_ok=True)
    try:
        os.symlink(WEB_ROOT / "server.py", link)
        status, _, _ = call(app_server, "/css/zz_test_link.txt")
        assert status == 404
    finally:
        link.unlink(missing_ok=True)


def test_leaflet_is_served_from_the_pinned_package(app_server):
    from web_tool.http.static import VENDOR_DIRS

    if not (VENDOR_DIRS["leaflet"] / "leaflet.js").exists():
        pytest.skip("node_modules/leaflet not installed (make node)")
    status, hdrs, body = call(app_server, "/vendor/leaflet/leaflet.js")
    assert status == 200 and b"Leaflet" in body[:2000]


def test_openapi_describes_every_endpoint_with_the_validating_schemas(app_server):
    status, _, doc = call(app_server, "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    _, _, health = call(app_server, "/health")
    for endpoint in health["endpoints"]:
        method, rule = endpoint.split(" ", 1)
        if rule in ("/", "/<path:path>"):
            continue
        path = rule.replace("<z:int>", "{z}").replace("<x:int>", "{x}").replace("<y:int>", "{y}")
        path = path.replace("<", "{").replace(">", "}")
        assert method.lower() in doc["paths"][path], endpoint
    body = doc["paths"]["/predPatch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    pred = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert "extent" in pred["required"] and "weights" in pred["properties"]
    assert "ExtentBody" in doc["components"]["schemas"]
