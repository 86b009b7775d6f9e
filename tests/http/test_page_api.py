"""The page's own API calls: corrections as GeoJSON, erasing corrections by area (undoable), and
checking an export area (any CRS) against the cap before a job starts."""

from __future__ import annotations

import pytest
from shapely.geometry import box, mapping, shape

from tests.conftest import InProcessServer, build_app
from tests.hitl_support import X0, Y0, correct_box, post, utm_extent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(scene, stripes_model, tmp_path_factory):
    state = tmp_path_factory.mktemp("page_state")
    app, _ = build_app([f"stripes={scene}"], stripes_model, state, max_tile_km2=0.01)
    server = InProcessServer(app)
    yield server
    server.close()


def corrections(srv, session: str, **query) -> dict:
    r = srv.get("/corrections", params={"session": session, **query}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def utm_box(x0, y0, x1, y1) -> dict:
    return mapping(box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1))


def test_corrections_come_back_as_geojson_points_and_pixel_polygons_with_counts(srv):
    session = post(srv, "/sessions")["session"]
    assert correct_box(srv, 1, 10, 10, size=0.5, session=session) == 1  # a click: one pixel
    assert correct_box(srv, 2, 40, 40, size=10, session=session) == 100
    body = corrections(srv, session)
    assert body["type"] == "FeatureCollection" and body["session"] == session
    point, square = body["features"]
    assert point["geometry"]["type"] == "Point"
    assert point["properties"] == {"id": point["id"], "value": 1, "pixels": 1}
    assert square["geometry"]["type"] == "Polygon" and square["properties"]["pixels"] == 100
    lng, lat = shape(square["geometry"]).centroid.coords[0]
    assert -76 < lng < -74 and 38 < lat < 40  # EPSG:4326, where the scene is
    assert body["counts"] == {"1": {"corrections": 1, "pixels": 1}, "2": {"corrections": 1, "pixels": 100}}
    newer = corrections(srv, session, after=point["id"])  # only what came after a known id
    assert [f["id"] for f in newer["features"]] == [square["id"]]
    assert srv.get("/corrections", params={"dataset": "nope"}, timeout=30).status_code == 404


def test_erasing_removes_the_pixels_under_the_area_and_undo_puts_them_back(srv):
    session = post(srv, "/sessions")["session"]
    correct_box(srv, 2, 40, 40, size=10, session=session)  # 100 px
    correct_box(srv, 1, 10, 10, size=0.5, session=session)  # 1 px, elsewhere
    erased = post(
        srv, "/deleteCorrections", {"geometry": utm_box(45, 30, 60, 60), "crs": 32618, "session": session}
    )
    assert erased["count"] == 50 and erased["corrections"] == 2
    info = srv.get(f"/sessions/{session}", timeout=30).json()
    assert info["pixels"] == 51 and info["next_undo"] == "erase"
    left = [f for f in corrections(srv, session)["features"] if f["properties"]["value"] == 2]
    assert len(left) == 1 and left[0]["properties"]["pixels"] == 50
    # erasing everything, then undoing twice, brings back all 101 pixels
    all_gone = post(srv, "/deleteCorrections", {"extent": utm_extent(0, 0, 128, 128), "session": session})
    assert all_gone["count"] == 51 and all_gone["corrections"] == 0
    assert post(srv, "/doUndo", {"session": session})["count"] == 51
    assert post(srv, "/doUndo", {"session": session})["count"] == 50
    info = srv.get(f"/sessions/{session}", timeout=30).json()
    assert info["pixels"] == 101 and info["corrections"] == 2
    # ... and the corrections undo after that are the recorded ones, the last first
    assert post(srv, "/doUndo", {"session": session})["count"] == 1
    assert post(srv, "/doUndo", {"session": session})["count"] == 100
    nothing = post(srv, "/deleteCorrections", {"extent": utm_extent(0, 0, 128, 128), "session": session})
    assert nothing["count"] == 0 and "no corrected pixels" in nothing["message"]


def test_erasing_then_retraining_learns_without_the_erased_pixels(srv):
    session = post(srv, "/sessions")["session"]
    correct_box(srv, 0, 70, 20, size=20, session=session)
    post(srv, "/deleteCorrections", {"extent": utm_extent(0, 0, 128, 128), "session": session})
    r = srv.post("/retrainModel", json={"session": session}, timeout=60)
    assert r.status_code == 400  # nothing left to learn from


def test_bad_erase_requests_are_refused_in_words(srv):
    r = srv.post("/deleteCorrections", json={"session": "default"}, timeout=30)
    assert r.status_code == 400 and "exactly one of" in r.json()["error"]
    unknown = {"extent": utm_extent(0, 0, 1, 1), "session": "0123456789abcdef"}
    r = srv.post("/deleteCorrections", json=unknown, timeout=30)
    assert r.status_code == 404


def test_aoi_in_a_projected_crs_comes_back_in_degrees_with_its_area_and_the_cap(srv):
    body = post(srv, "/aoi", {"geometry": utm_box(0, 0, 100, 100), "crs": 32618})
    geom = shape(body["geometry"])
    lng, lat = geom.centroid.coords[0]
    assert -76 < lng < -74 and 38 < lat < 40
    assert body["area_km2"] == pytest.approx(0.01, rel=0.01)  # 100 m x 100 m
    assert body["imagery_km2"] == pytest.approx(0.01, rel=0.01)
    assert body["max_km2"] == 0.01 and body["fits"] in (True, False)
    half = post(srv, "/aoi", {"geometry": utm_box(64, 0, 300, 100), "crs": 32618})
    assert half["imagery_km2"] == pytest.approx(0.0064, rel=0.02) and half["fits"]  # only where imagery is
    big = post(srv, "/aoi", {"geometry": utm_box(0, 0, 128, 128), "crs": 32618})
    assert not big["fits"]
    far = {"geometry": utm_box(5000, 5000, 5100, 5100), "crs": 32618}
    far = srv.post("/aoi", json=far, timeout=30)
    assert far.status_code == 404 and "no imagery" in far.json()["error"]
