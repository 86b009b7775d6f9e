"""The pieces behind the human-in-the-loop endpoints, without HTTP: pixels, fitting, hold-out, store."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from web_tool.DataLoader import DataLoader
from web_tool.errors import ExtentError, NotFoundError, TooLargeError
from web_tool.geometry import WEB_MERCATOR, Extent, Grid, polygon_from_geojson
from web_tool.imagery.datasets import DatasetConfig
from web_tool.learning.corrections import labelled_pixels, record
from web_tool.learning.finetune import get_strategy
from web_tool.learning.store import Store
from web_tool.learning.training_data import class_weights, replay_path
from web_tool.rendering.uncertainty import suggestions, uncertainty
from web_tool.ServerModels.heads import LinearHead
from web_tool.ServerModels.state import ModelState

UTM18 = CRS.from_epsg(32618)


@pytest.fixture(scope="module")
def loader(tiny_dataset_dir):
    paths = sorted(str(p) for p in tiny_dataset_dir.glob("*.tif"))
    return DataLoader(DatasetConfig(name="tiny", paths=paths))


def test_box_labels_the_pixels_whose_centre_is_inside(loader):
    grid, rows, cols = labelled_pixels(loader, box(500_010, 4_300_010, 500_013, 4_300_012), UTM18)
    assert len(rows) == 6 and grid.crs == UTM18
    xs, ys = grid.transform @ (cols + 0.5, rows + 0.5)
    assert set(np.round(xs, 1)) == {500_010.5, 500_011.5, 500_012.5}
    assert set(np.round(ys, 1)) == {4_300_010.5, 4_300_011.5}


def test_box_without_a_pixel_centre_labels_the_pixel_under_its_centre(loader):
    grid, rows, cols = labelled_pixels(loader, box(500_020.6, 4_300_030.1, 500_020.9, 4_300_030.4), UTM18)
    assert len(rows) == 1
    x, y = grid.transform @ (cols[0] + 0.5, rows[0] + 0.5)
    assert (x, y) == (500_020.5, 4_300_030.5)


def test_web_mercator_box_is_labelled_on_the_native_utm_grid(loader):
    ext = Extent(500_040, 4_300_040, 500_050, 4_300_050, crs=UTM18).to_crs(WEB_MERCATOR)
    c = record(loader, box(*ext.bounds), WEB_MERCATOR, 2, context=8)
    assert c.crs == "EPSG:32618" and 100 <= c.count <= 121  # 10 x 10 m, plus the reprojected edges
    xs, _ = c.centres()
    assert np.allclose((xs - 0.5) % 1, 0) and c.image.shape[:2] == (c.rows.max() + 9, c.cols.max() + 9)


def test_a_correction_stored_with_its_pixel_centres_by_an_earlier_version_loads_the_same(loader):
    import io
    import sqlite3

    from web_tool.learning.store import correction_blob, correction_from_row

    c = record(loader, box(500_030, 4_300_030, 500_041, 4_300_037), UTM18, 1, context=8)
    xs, ys = c.centres()
    assert c.count == 77 and set(np.round(xs, 1)) == {500_030.5 + i for i in range(11)}
    earlier = Affine(*c.transform) @ (c.cols + 0.5, c.rows + 0.5)  # how earlier versions stored them
    np.testing.assert_array_equal(xs, earlier[0])
    np.testing.assert_array_equal(ys, earlier[1])
    old = io.BytesIO()  # the blob as earlier versions wrote it: with the centres as arrays
    with np.load(io.BytesIO(correction_blob(c))) as f:
        np.savez_compressed(old, xs=xs, ys=ys, **{k: f[k] for k in f.files})
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    query = "SELECT ? AS data, ? AS dataset, ? AS crs, 1 AS value, 7 AS id"
    loaded = correction_from_row(db.execute(query, (old.getvalue(), "tiny", c.crs)).fetchone())
    for got, want in zip(loaded.centres(), (xs, ys), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.count == c.count and loaded.nbytes == c.nbytes and loaded.id == 7


def test_huge_areas_and_bad_geometries_are_refused(loader):
    with pytest.raises(TooLargeError):
        labelled_pixels(loader, box(499_000, 4_299_000, 501_000, 4_301_000), UTM18)
    for bad in (
        {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
        {"type": "Polygon"},
        [1, 2],
        {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
        {"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [1, 1], [0, 0]]]},
    ):
        with pytest.raises(ExtentError):
            polygon_from_geojson(bad)
    bowtie = polygon_from_geojson(
        {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    )
    assert bowtie.is_valid and bowtie.area == pytest.approx(2)


def test_class_weights_give_each_class_the_same_total():
    w = class_weights(np.array([0, 0, 0, 1]), 2.0)
    assert w.sum() == pytest.approx(2.0) and w[:3].sum() == pytest.approx(w[3])


def test_suggestions_are_the_most_uncertain_points_spread_apart():
    probs = np.full((64, 64, 2), [0.99, 0.01], np.float32)
    probs[10:13, 10:13] = [0.5, 0.5]  # one unsure blob ...
    probs[50, 40] = [0.6, 0.4]  # ... and a less unsure pixel far away
    grid = Grid(WEB_MERCATOR, Affine(2, 0, 1000, 0, -2, 5000), 64, 64)
    points = suggestions(uncertainty(probs), np.ones((64, 64), bool), grid, n=5)
    assert points[0]["score"] == pytest.approx(1.0) and 1020 < points[0]["x"] < 1026
    assert points[1]["x"] == 1000 + 2 * 40.5 and points[1]["y"] == 5000 - 2 * 50.5
    xy = np.array([[p["x"], p["y"]] for p in points])
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert d.min() >= 2 * 9  # at least the spacing (15% of 64 px) apart


def test_with_the_class_map_suggestions_avoid_the_edges_between_classes():
    probs = np.full((64, 64, 2), [0.9, 0.1], np.float32)
    probs[:, 32:] = [0.1, 0.9]
    probs[:, 31:33] = [0.5, 0.5]  # the most uncertain pixels: the edge between the two classes
    probs[20, 10] = [0.7, 0.3]  # less unsure, inside the left class
    classes = probs.argmax(-1).astype(np.uint8)
    grid = Grid(WEB_MERCATOR, Affine(1, 0, 0, 0, -1, 0), 64, 64)
    edge_blind = suggestions(uncertainty(probs), np.ones((64, 64), bool), grid, n=3)
    assert 30 < edge_blind[0]["x"] < 34
    points = suggestions(uncertainty(probs), np.ones((64, 64), bool), grid, n=3, classes=classes)
    assert all(not 28 < p["x"] < 36 for p in points)  # at least 2 px from the class edge (x 31..33)
    assert (points[0]["x"], points[0]["y"]) == (10.5, -20.5)


def test_with_the_class_map_the_predicted_classes_take_turns():
    probs = np.full((64, 64, 2), [0.9, 0.1], np.float32)
    probs[40:56, 40:56] = [0.2, 0.8]  # a small area of class 1, its pixels fairly sure
    probs[40:56, 40:56][5, 5] = [0.35, 0.65]
    for r, c in [(8, 8), (8, 30), (30, 8), (20, 50)]:  # class 0: the most uncertain pixels
        probs[r, c] = [0.55, 0.45]
    classes = probs.argmax(-1).astype(np.uint8)
    grid = Grid(WEB_MERCATOR, Affine(1, 0, 0, 0, -1, 0), 64, 64)
    points = suggestions(uncertainty(probs), np.ones((64, 64), bool), grid, n=2, classes=classes)
    doubts = [(8.5, -8.5), (30.5, -8.5), (8.5, -30.5), (50.5, -20.5)]
    assert (points[0]["x"], points[0]["y"]) in doubts
    assert (points[1]["x"], points[1]["y"]) == (45.5, -45.5)  # class 1's most uncertain pixel
    # without the class map, class 0's doubts take every place
    blind = suggestions(uncertainty(probs), np.ones((64, 64), bool), grid, n=2)
    assert all(p["score"] == pytest.approx(blind[0]["score"]) for p in blind)


def test_on_the_base_models_map_suggestions_are_spread_at_random():
    """Before the first retrain the model's doubt is not what picks the points: they are drawn at
    random, spread apart, inside the imagery, the same for the same square and others elsewhere."""
    probs = np.full((64, 64, 2), [0.99, 0.01], np.float32)
    probs[10:13, 10:13] = [0.5, 0.5]  # the one place a learnt map's suggestions would go first
    valid = np.ones((64, 64), bool)
    valid[:, 48:] = False  # no imagery on the right
    classes = probs.argmax(-1).astype(np.uint8)
    grid = Grid(WEB_MERCATOR, Affine(2, 0, 1000, 0, -2, 5000), 64, 64)
    learnt = suggestions(uncertainty(probs), valid, grid, n=5, classes=classes)
    assert 1020 < learnt[0]["x"] < 1026 and learnt[0]["score"] == pytest.approx(1.0)
    points = suggestions(uncertainty(probs), valid, grid, n=5, classes=classes, by="random")
    assert len(points) == 5
    assert points == suggestions(uncertainty(probs), valid, grid, n=5, classes=classes, by="random")
    xy = np.array([[p["x"], p["y"]] for p in points])
    assert (xy[:, 0] < 1000 + 2 * 48).all()  # inside the imagery
    d = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    assert d.min() >= 2 * 9  # as far apart as a learnt map's
    blob = [p for p in points if 1020 < p["x"] < 1026 and 4974 < p["y"] < 4980]
    assert len(blob) <= 1  # the unsure blob is no magnet
    draws = []
    for shift in range(20):  # other squares, other points: uniform over the imagery, not the doubt
        moved = Grid(WEB_MERCATOR, Affine(2, 0, 1000 + 128 * shift, 0, -2, 5000), 64, 64)
        found = suggestions(uncertainty(probs), valid, moved, n=5, classes=classes, by="random")
        draws += [((p["x"] - 1000 - 128 * shift) / 2, (5000 - p["y"]) / 2) for p in found]
    cols, rows = np.array(draws).T
    assert len(set(draws)) > 80 and cols.max() < 48
    assert np.mean((rows < 16) & (cols < 16)) < 0.3  # not drawn to the blob's corner


def test_store_removes_temp_files_and_unlisted_checkpoints_at_start_up(tmp_path):
    store = Store(tmp_path)
    head = LinearHead(np.ones((2, 3), np.float32), np.zeros(3, np.float32))
    state = ModelState(head.to_arrays(), [{"name": "a", "color": "#000"}] * 3)
    store.add_session("default", state.classes)
    kept = store.add_checkpoint(
        name="../x",
        session="default",
        parent=None,
        state=state,
        corrections=[],
        metrics={},
        strategy="last_layer",
    )
    (tmp_path / "checkpoints" / ".abc.npz.tmp").write_bytes(b"half")
    (tmp_path / "checkpoints" / "0123456789abcdef.npz").write_bytes(b"no row")
    Store(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [f"{kept}.npz"]
    assert (Store(tmp_path).checkpoint_state(kept).head["kernel"] == 1).all()
    with pytest.raises(NotFoundError):
        Store(tmp_path).checkpoint_state("../../etc/passwd")


def test_replay_file_sits_next_to_the_model_and_strategies_are_registered():
    assert replay_path("web_tool/data/demo_model").name == "demo_model.replay.npz"
    assert replay_path("x/m.keras").as_posix() == "x/m.replay.npz"
    assert get_strategy("last_k_layers")
    with pytest.raises(Exception, match="last_layer"):
        get_strategy("everything")


def test_without_replay_the_retrain_message_says_so(tiny_dataset_dir, tiny_model_path, tmp_path):
    from web_tool.learning.sessions import SessionManager
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    paths = sorted(str(p) for p in tiny_dataset_dir.glob("*.tif"))
    loader = DataLoader(DatasetConfig(name="tiny", paths=paths))
    base = KerasSegmentationModel(tiny_model_path, classes=[])
    sessions = SessionManager(base, tmp_path, "last_layer", replay_path(tiny_model_path))
    sessions.record(None, loader, box(500_010, 4_300_010, 500_014, 4_300_014), UTM18, 1)
    sessions.record(None, loader, box(500_030, 4_300_030, 500_034, 4_300_034), UTM18, 2)
    result = sessions.retrain(None)
    assert "no replay data" in result["message"] and "too few corrections to measure" in result["message"]
    assert sessions.model(None).head is not base.head and sessions.model("default") is sessions.model(None)
    image = np.random.default_rng(0).integers(0, 255, (16, 16, 4)).astype(np.uint8)
    fresh = KerasSegmentationModel(tiny_model_path, classes=[])
    np.testing.assert_allclose(base.predict(image), fresh.predict(image))  # the base model is untouched


def test_a_k_the_network_cannot_tune_is_refused_at_start_up(tiny_model_path, tmp_path):
    from web_tool.errors import ModelError
    from web_tool.learning.sessions import SessionManager
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    base = KerasSegmentationModel(tiny_model_path, classes=[])
    with pytest.raises(ModelError, match="between 2 and 3"):
        SessionManager(base, tmp_path, "last_k_layers", options={"k": 7})
    SessionManager(base, tmp_path, "last_k_layers", options={"k": 3})


def test_a_first_retrain_on_the_base_models_errors_only_says_how_to_keep_its_map(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    """Corrections that all contradict the base model cannot tell a mostly right network from a
    mostly wrong one: the first retrain's message says what to do if it was mostly right; one
    correction that agrees with it, or a later retrain, and the message says nothing of it."""
    from web_tool.learning.corrections import record as dry_record
    from web_tool.learning.sessions import ERRORS_ONLY_HINT, SessionManager
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    paths = sorted(str(p) for p in tiny_dataset_dir.glob("*.tif"))
    loader = DataLoader(DatasetConfig(name="tiny", paths=paths))
    base = KerasSegmentationModel(tiny_model_path, classes=[])
    boxes = [box(500_010 + 9 * i, 4_300_010 + 5 * i, 500_012 + 9 * i, 4_300_012 + 5 * i) for i in range(6)]

    def base_class(b) -> int:  # the base model's class under a box, as the fit sees it (with context)
        c = dry_record(loader, b, UTM18, 0, context=base.padding)
        return int(np.bincount(base.predict(c.image).argmax(-1)[c.rows, c.cols]).argmax())

    said = [base_class(b) for b in boxes]
    assert len(boxes) >= ERRORS_ONLY_HINT
    hint = f"All {len(boxes)} corrections were on the model's own errors"
    runs = {}
    for agreeing in (0, 1):
        sessions = SessionManager(base, tmp_path / f"s{agreeing}", "last_layer", replay_path(tiny_model_path))
        for i, (b, k) in enumerate(zip(boxes, said, strict=True)):
            sessions.record(None, loader, b, UTM18, k if i < agreeing else (k + 1) % base.n_classes)
        runs[agreeing] = sessions, sessions.retrain(None)["message"]
    assert hint in runs[0][1] and "label a few places it has right too" in runs[0][1]
    assert "own errors" not in runs[1][1]  # one correction agreed with the base model
    sessions = runs[0][0]  # all on its errors, a second round: that retrain has evidence of its own
    sessions.record(None, loader, box(500_100, 4_300_100, 500_102, 4_300_102), UTM18, (said[0] + 1) % 4)
    assert "own errors" not in sessions.retrain(None)["message"]
