"""Human-in-the-loop endpoints, in-process (one test over real HTTP): corrections, retraining,
sessions, undo, classes."""

from __future__ import annotations

import numpy as np
import pytest

from tests.hitl_support import (
    BUILT,
    FIELD,
    FOREST,
    WATER,
    correct_box,
    post,
    predicted,
    serve,
    share,
    stripe_extent,
    utm_extent,
)


@pytest.fixture
def server(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    yield srv
    srv.close()


@pytest.fixture
def real_server(scene, stripes_model, tmp_path):
    """For what waitress decides: a request without Content-Length."""
    srv = serve(scene, stripes_model, tmp_path)
    yield srv
    srv.close()


def field_to_built(url: str, session: str | None = None, clicks: int = 6) -> None:
    """Clicks across the Field stripe saying it is Built."""
    for i in range(clicks):
        correct_box(url, BUILT, 66 + 4 * i, 10 + 18 * i, size=2, session=session)


def test_base_model_knows_the_stripes(server):
    for k in (WATER, FOREST, FIELD, BUILT):
        assert share(predicted(server, k), k) > 0.9


@pytest.mark.parametrize("strategy", ["last_layer", "last_k_layers"])
def test_retrain_changes_the_head_and_flips_the_corrected_area_but_keeps_other_classes(
    scene, stripes_model, tmp_path, strategy
):
    srv = serve(scene, stripes_model, tmp_path, in_process=True, fine_tune=strategy)
    try:
        session = post(srv, "/sessions")["session"]
        before = srv.config.model_for(session)
        field_to_built(srv, session)
        result = post(srv, "/retrainModel", {"session": session})
        assert result["success"] and "replay" in result["message"]
        assert "per_class" in result["metrics"] or "note" in result["metrics"]
        after = srv.config.model_for(session)
        assert after.head is not before.head and after.trained
        assert share(predicted(srv, FIELD, session), BUILT) > 0.5  # most of the stripe: the corrections won
        for k in (WATER, FOREST, BUILT):  # nobody corrected these: replay keeps them
            assert share(predicted(srv, k, session), k) > 0.9
    finally:
        srv.close()


def test_sessions_are_isolated_and_default_is_shared(server):
    a, b = post(server, "/sessions")["session"], post(server, "/sessions")["session"]
    assert a != b
    field_to_built(server, a)
    post(server, "/retrainModel", {"session": a})
    assert share(predicted(server, FIELD, a), BUILT) > 0.5  # most of the stripe: the corrections won
    assert share(predicted(server, FIELD, b), FIELD) > 0.9
    assert share(predicted(server, FIELD), FIELD) > 0.9  # the shared default session
    assert post(server, "/doUndo", {"session": b})["count"] == 0
    field_to_built(server)  # no session: the default one
    post(server, "/retrainModel", {})
    assert share(predicted(server, FIELD, None), BUILT) > 0.5  # most of the stripe: the corrections won
    assert share(predicted(server, FIELD, b), FIELD) > 0.9


def test_undo_steps_back_a_retrain_then_a_correction_and_reset_clears_all(server):
    s = post(server, "/sessions")["session"]
    base_png = post(server, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"]
    field_to_built(server, s, clicks=3)
    n = correct_box(server, BUILT, 70, 60, size=3, session=s)
    assert n == 9
    post(server, "/retrainModel", {"session": s})
    assert share(predicted(server, FIELD, s), BUILT) > 0.5  # most of the stripe: the corrections won
    undo = post(server, "/doUndo", {"session": s})
    assert undo == {**undo, "success": True, "count": 0, "undone": "retrain", "corrections": 4}
    body = {"extent": stripe_extent(FIELD), "session": s}
    assert post(server, "/predPatch", body)["output_hard"] == base_png
    undo = post(server, "/doUndo", {"session": s})
    assert undo == {**undo, "count": 9, "undone": "correction", "corrections": 3}
    reset = post(server, "/resetModel", {"session": s})
    assert reset["success"] and reset["count"] == 3
    info = server.get(f"/sessions/{s}", timeout=10).json()
    assert info["corrections"] == 0
    assert post(server, "/doUndo", {"session": s})["undone"] is None
    post(server, "/retrainModel", {"session": s}, status=400)  # nothing to learn from


def test_a_session_holds_corrections_up_to_its_memory_budget_and_loses_nothing_past_it(
    server, scene, monkeypatch
):
    from shapely.geometry import box

    from tests.hitl_support import UTM18, X0, Y0
    from web_tool.DataLoader import DataLoader
    from web_tool.imagery.datasets import DatasetConfig
    from web_tool.learning import sessions
    from web_tool.learning.corrections import record
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    loader = DataLoader(DatasetConfig(name="stripes", paths=[str(scene / "stripes.tif")]))
    context = 2 * KerasSegmentationModel.padding  # what the server keeps around a correction
    click = record(loader, box(X0 + 70, Y0 + 60, X0 + 72, Y0 + 62), UTM18, BUILT, context=context)
    monkeypatch.setattr(sessions, "MAX_SESSION_MB", 2.5 * click.nbytes / 2**20)  # room for two clicks
    s, other = post(server, "/sessions")["session"], post(server, "/sessions")["session"]
    assert correct_box(server, BUILT, 70, 60, size=2, session=s) == 4
    assert correct_box(server, BUILT, 80, 60, size=2, session=s) == 4
    body = {"extent": utm_extent(90, 60, 92, 62), "value": BUILT, "session": s}
    error = post(server, "/recordCorrection", body, status=413)["error"]
    assert f"session '{s}' holds 2 corrections" in error and "one session may hold" in error
    assert server.get(f"/sessions/{s}", timeout=10).json()["corrections"] == 2  # nothing lost, nothing added
    assert post(server, "/retrainModel", {"session": s})["success"]  # the two still learn
    assert correct_box(server, BUILT, 90, 60, size=2, session=other) == 4  # a budget per session
    post(server, "/doUndo", {"session": s})  # the retrain
    assert post(server, "/doUndo", {"session": s})["undone"] == "correction"
    assert correct_box(server, BUILT, 90, 60, size=2, session=s) == 4  # room again


def test_new_class_grows_the_head_and_is_rendered_in_its_colour(server):
    s = post(server, "/sessions")["session"]
    added = post(server, "/addClass", {"session": s, "name": "Quarry", "color": "#FF00FF"})
    classes = added["classes"]
    assert [c["name"] for c in classes][-1] == "Quarry" and len(classes) == 5
    assert share(predicted(server, BUILT, s, classes), 4) == 0  # untrained: never predicted
    for i in range(6):
        correct_box(server, 4, 100 + 4 * i, 8 + 20 * i, size=2, session=s)
    post(server, "/retrainModel", {"session": s})
    assert srv_model(server, s).n_classes == srv_model(server, s).head.n_classes == 5
    assert share(predicted(server, BUILT, s, classes), 4) > 0.5  # most of the stripe: the corrections won
    assert share(predicted(server, WATER, s, classes), WATER) > 0.9
    # a client that sends only the dataset's four classes still sees the fifth in its colour
    body = {"extent": stripe_extent(BUILT), "session": s, "classes": classes[:4]}
    assert post(server, "/predPatch", body)["output_hard"]
    post(server, "/addClass", {"session": s, "name": "quarry", "color": "#00FF00"}, status=400)


def srv_model(server, session):
    return server.config.model_for(session)


def test_geometry_labels_pixel_centres_inside_and_a_tiny_box_labels_one_pixel(server):
    s = post(server, "/sessions")["session"]
    square = {
        "type": "Polygon",
        "coordinates": [
            [[500010, 4300010], [500015, 4300010], [500015, 4300015], [500010, 4300015], [500010, 4300010]]
        ],
    }
    body = {"geometry": square, "crs": 32618, "value": WATER, "session": s}
    assert post(server, "/recordCorrection", body)["count"] == 25
    triangle = [[[500020, 4300020], [500023, 4300020], [500023, 4300023], [500020, 4300020]]]
    multi = {"type": "MultiPolygon", "coordinates": [square["coordinates"], triangle]}
    body = {"geometry": multi, "crs": 32618, "value": WATER, "session": s}
    assert post(server, "/recordCorrection", body)["count"] == 25 + 3  # + 3 centres in the triangle
    tiny = {"extent": utm_extent(40.1, 40.1, 40.3, 40.3), "value": 1, "session": s}  # no pixel centre
    assert post(server, "/recordCorrection", tiny)["count"] == 1
    anywhere = {"extent": utm_extent(120, 120, 126, 126), "value": 2, "session": s}  # never predicted
    assert post(server, "/recordCorrection", anywhere)["count"] == 36


def test_pred_patch_returns_uncertainty_and_spread_suggestions(server):
    result = post(server, "/predPatch", {"extent": stripe_extent(FOREST, margin=-20)})
    from tests.hitl_support import decode_png

    unc, hard = decode_png(result["output_uncertainty"]), decode_png(result["output_hard"])
    assert unc.shape == hard.shape
    points = result["suggestions"]
    assert 1 <= len(points) <= 5
    ext = stripe_extent(FOREST, margin=-20)
    xy = np.array([[p["x"], p["y"]] for p in points])
    assert ((xy[:, 0] >= ext["xmin"]) & (xy[:, 0] <= ext["xmax"])).all()
    assert ((xy[:, 1] >= ext["ymin"]) & (xy[:, 1] <= ext["ymax"])).all()
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert d.min() > 3  # metres apart: not neighbouring pixels
    assert all(0 <= p["score"] <= 1 for p in points)


def test_suggestions_are_random_on_the_base_map_and_the_models_doubt_once_it_learnt(server):
    """A session's first suggestions are spread at random (the same for the same square): their
    scores are the draws, not the uncertainty the map shows there; after a retrain they are the
    learnt map's most uncertain points (their scores are its uncertainty); a reset brings the
    random ones back."""
    from tests.hitl_support import decode_png

    session = post(server, "/sessions")["session"]
    ext = stripe_extent(FIELD, margin=-20)
    body = {"extent": ext, "session": session, "input_naip": False}

    said: list[str] = []

    def ask() -> tuple[list[tuple[float, float]], np.ndarray]:
        """(the points, |score - the uncertainty image's value at each|)."""
        result = post(server, "/predPatch", body)
        said.append(result["suggestions_by"])
        alpha = decode_png(result["output_uncertainty"])[..., 3] / 255
        h, w = alpha.shape
        points = [(p["x"], p["y"]) for p in result["suggestions"]]
        shown = [
            alpha[
                int((ext["ymax"] - y) / (ext["ymax"] - ext["ymin"]) * h),
                int((x - ext["xmin"]) / (ext["xmax"] - ext["xmin"]) * w),
            ]
            for x, y in points
        ]
        return points, np.abs(np.array([p["score"] for p in result["suggestions"]]) - shown)

    first, off = ask()
    assert len(first) == 5 and ask()[0] == first
    assert off.max() > 0.05  # drawn at random, not where the map is least sure
    field_to_built(server, session)
    post(server, "/retrainModel", {"session": session})
    learnt, off = ask()
    assert learnt and learnt != first and off.max() <= 1 / 255 + 1e-6
    post(server, "/resetModel", {"session": session})
    assert ask()[0] == first
    assert said == ["random", "random", "uncertainty", "random"]  # the answer says which


BOX = utm_extent(1, 1, 3, 3)
RC = "/recordCorrection"


def polygon(coordinates) -> dict:
    return {"type": "Polygon", "coordinates": coordinates}


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (RC, {"extent": BOX, "value": 9}, 400, "class index 9"),
        (RC, {"extent": BOX, "value": -1}, 400, "class index -1"),
        (RC, {"extent": BOX, "value": "water"}, 400, "value"),
        (RC, {"extent": BOX, "value": 1, "session": "nope"}, 404, "session"),
        (RC, {"extent": BOX, "value": 1, "dataset": "nope"}, 404, "dataset"),
        (RC, {"value": 1}, 400, "extent"),
        (RC, {"extent": BOX, "geometry": polygon([]), "value": 1}, 400, "exactly one"),
        (RC, {"geometry": {"type": "Point", "coordinates": [0, 0]}, "value": 1}, 400, "Polygon"),
        (RC, {"geometry": polygon([[0, 0], [1]]), "value": 1}, 400, "geometry"),
        (RC, {"geometry": polygon("x"), "value": 1}, 400, "geometry"),
        (RC, {"geometry": polygon([[[0, 0], [1, 1], [0, 0]]]), "value": 1}, 400, "geometry"),
        (RC, {"geometry": polygon([[[0, 0], [1, 0], [1, 1], [0, 0]]]), "crs": 99999, "value": 1}, 400, "crs"),
        (RC, {"extent": utm_extent(1000, 1000, 1002, 1002), "value": 1}, 404, "covers"),
        (RC, {"extent": utm_extent(0, 0, 2000, 2000), "value": 1}, 413, "pixels"),
        ("/retrainModel", {"session": "nope"}, 404, "session"),
        ("/predPatch", {"extent": stripe_extent(0), "session": "nope"}, 404, "session"),
        ("/doUndo", {"session": "../../etc"}, 404, "session"),
        ("/doLoad", {"checkpoint": "nope"}, 404, "checkpoint"),
        ("/doLoad", {"checkpoint": "../../etc/passwd"}, 404, "checkpoint"),
        ("/doLoad", {}, 400, "checkpoint"),
        ("/addClass", {"name": "X", "color": "red"}, 400, "color"),
        ("/addClass", {"name": "", "color": "#FF0000"}, 400, "name"),
    ],
)
def test_bad_input_gets_a_4xx_json_error_naming_the_problem(server, path, body, status, needle):
    result = post(server, path, body, status=status)
    assert needle.lower() in result["error"].lower()


def test_non_json_body_is_a_400(server):
    json_type = {"Content-Type": "application/json"}
    r = server.post("/recordCorrection", data=b"{not json", headers=json_type, timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = server.get("/sessions/nope", timeout=10)
    assert r.status_code == 404 and "session" in r.json()["error"]


def test_a_post_without_any_body_creates_a_session_as_curl_sends_it(real_server):
    server = real_server
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", server.url.rsplit(":", 1)[1], timeout=30)
    conn.putrequest("POST", "/sessions")  # `curl -X POST $S/sessions`: no Content-Length, no body
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 200, response.read()
    session = json.loads(response.read())["session"]
    assert server.get(f"/sessions/{session}", timeout=10).json()["corrections"] == 0
    json_type = {"Content-Type": "application/json"}
    r = server.post("/retrainModel", data=b"  ", headers=json_type, timeout=10)  # blank = {}
    assert r.status_code == 400 and "nothing to learn from" in r.json()["error"]
