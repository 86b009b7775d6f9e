"""What made interactive calls faster keeps their answers: the head inside the network's graph,
the top-two pass, bf16 (and how start-up decides on it), and corrections that leave their model
work to a heavy turn."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import rasterio

from tests.conftest import DEMO_DIR, DEMO_MODEL, InProcessServer, build_app
from tests.http.test_api import UTM, call, extent_body
from web_tool import startup
from web_tool.geometry import WEB_MERCATOR, Extent
from web_tool.learning.corrections import NO_CLASS
from web_tool.learning.sessions import seen_map
from web_tool.rendering.uncertainty import top_two
from web_tool.ServerModels import precision
from web_tool.ServerModels.keras_model import KerasSegmentationModel


def demo_image(size: int = 256) -> np.ndarray:
    with rasterio.open(DEMO_DIR / "imagery" / "a_r1_c1.tif") as src:
        return np.moveaxis(src.read(window=((100, 100 + size), (200, 200 + size))), 0, -1)


@pytest.fixture(scope="module")
def demo_model():
    if not DEMO_MODEL.exists() or not DEMO_DIR.exists():
        pytest.skip("the demo model or scene is missing: run `make demo`")
    return KerasSegmentationModel(DEMO_MODEL, [])


def test_the_head_inside_the_graph_gives_the_heads_own_probabilities(demo_model):
    image = demo_image(200)[:, :150]  # not a multiple of the network's 16
    probs = demo_model.predict(image)
    expected = demo_model.head.predict(demo_model.deep_features(image))
    assert probs.shape == (200, 150, demo_model.n_classes)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    grown = demo_model.with_head(
        demo_model.head.grown(), [*demo_model.classes, {"name": "x", "color": "#000"}]
    )
    assert grown.predict(image).shape[-1] == demo_model.n_classes + 1


@pytest.mark.parametrize("n_classes", [2, 4, 8, 9, 30])
def test_top_two_are_the_two_largest_probabilities(n_classes):
    probs = np.random.default_rng(n_classes).dirichlet(np.ones(n_classes), size=(40, 30)).astype(np.float32)
    probs[0, 0] = 1 / n_classes  # a tie
    first, second = top_two(probs)
    ranked = np.sort(probs, axis=-1)
    np.testing.assert_array_equal(first, ranked[..., -1])
    np.testing.assert_array_equal(second, ranked[..., -2])


# --- bf16 ----------------------------------------------------------------------------------------


def test_bf16_maps_the_same_classes_as_float32(demo_model):
    image = demo_image()
    bf16 = demo_model.in_bfloat16()
    assert bf16.precision == "bf16" and demo_model.precision == "float32"  # the original is untouched
    a, b = demo_model.predict(image), bf16.predict(image)
    assert b.dtype == np.float32 and np.allclose(b.sum(-1), 1, atol=1e-3)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.99
    assert np.abs(a - b).max() < 0.2
    assert bf16.features(image).dtype == np.float32  # what a learnt head sees stays float32


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(
        f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    return path


def test_cpu_flags_that_compute_in_bf16_are_found(tmp_path):
    assert precision.cpu_bf16_flag(cpuinfo(tmp_path, "avx512f avx512_bf16")) == "avx512_bf16"
    assert precision.cpu_bf16_flag(cpuinfo(tmp_path, "amx_tile amx_bf16 avx512_bf16")) == "amx_bf16"
    assert precision.cpu_bf16_flag(cpuinfo(tmp_path, "avx512f")) is None
    assert precision.cpu_bf16_flag(tmp_path / "missing") is None


def test_start_up_serves_float32_and_says_why_where_the_cpu_has_no_bf16(
    demo_model, tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo(tmp_path, "avx2 avx512f"))
    with caplog.at_level(logging.WARNING):
        model = startup.in_precision(demo_model, "bf16")
    assert model.precision == "float32"
    assert "no bf16 instructions" in caplog.text and "serving in float32" in caplog.text


def test_start_up_computes_in_bf16_where_the_cpu_has_it(demo_model, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo(tmp_path, "avx512f avx512_bf16"))
    with caplog.at_level(logging.INFO):
        model = startup.in_precision(demo_model, "bf16")
    assert model.precision == "bf16" and "avx512_bf16" in caplog.text
    assert startup.in_precision(demo_model, "float32") is demo_model


def test_a_model_without_a_network_says_bf16_changes_nothing(caplog):
    from web_tool.ServerModels.features_model import FeatureModel

    model = FeatureModel()
    with caplog.at_level(logging.WARNING):
        assert startup.in_precision(model, "bf16") is model
    assert "only Keras networks" in caplog.text


@pytest.mark.slow
def test_last_k_layers_learns_in_bf16(scene, stripes_model, tmp_path):
    from rasterio.crs import CRS
    from shapely.geometry import box

    from tests.hitl_support import STRIPE, X0, Y0
    from web_tool.DataLoader import DataLoader
    from web_tool.imagery.datasets import DatasetConfig
    from web_tool.learning.sessions import SessionManager
    from web_tool.learning.training_data import replay_path

    base = KerasSegmentationModel(stripes_model, []).in_bfloat16()
    sessions = SessionManager(base, tmp_path, "last_k_layers", replay_path(stripes_model), options={"k": 2})
    loader = DataLoader(DatasetConfig(name="stripes", paths=[str(scene / "stripes.tif")]))
    session = sessions.create()
    for value in range(4):  # a box inside each stripe
        x = X0 + value * STRIPE + 10
        sessions.record(session, loader, box(x, Y0 + 40, x + 6, Y0 + 46), CRS.from_epsg(32618), value)
    assert sessions.retrain(session)["strategy"] == "last_k_layers"
    assert sessions.model(session).precision == "bf16"


# --- corrections ---------------------------------------------------------------------------------


def test_a_correction_is_answered_before_its_model_work_which_waits_for_a_heavy_turn(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    srv = InProcessServer(app, config)
    store = config.sessions.store
    try:
        with config.gate.turn():  # a heavy request holds the one slot
            status, _, answer = call(srv, "/recordCorrection", {"extent": extent_body(), "value": 1})
            assert status == 200 and answer["count"] > 0
            while config.gate.state()["waiting"] == 0:  # the model work waits for its turn...
                time.sleep(0.01)
            (stored,) = store.session_corrections("default")
            assert stored.seen is None  # ...and has not run
        deadline = time.monotonic() + 60
        while store.session_corrections("default")[0].seen is None and time.monotonic() < deadline:
            time.sleep(0.05)
        (stored,) = store.session_corrections("default")
        expected, _ = seen_map(config.model, stored.image)
        known = stored.seen != NO_CLASS  # where learning reads it
        assert known.any()
        np.testing.assert_array_equal(stored.seen[known], expected[known])  # the base model's map there
    finally:
        srv.close()


def test_a_retrain_that_comes_first_computes_what_the_user_saw(tiny_dataset_dir, tiny_model_path, tmp_path):
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    srv = InProcessServer(app, config)
    sessions = config.sessions
    try:
        with config.gate.turn():  # the correction's model work cannot start
            for value, x in ((0, 500_030), (1, 500_080)):
                area = Extent(x, 4_300_030, x + 4, 4_300_034, crs=UTM).to_crs(WEB_MERCATOR)
                body = {"extent": extent_body(area), "value": value}
                assert call(srv, "/recordCorrection", body)[0] == 200
            sessions.retrain("default")  # as /retrainModel does, inside its own turn
            stored = sessions.store.session_corrections("default")
            assert all(c.seen is not None for c in stored)
        for thread in [t for t in threading.enumerate() if t.name.startswith("correction-")]:
            thread.join(60)  # the queued model work finds nothing left to do
        assert [c.seen.tolist() for c in sessions.store.session_corrections("default")] == [
            c.seen.tolist() for c in stored
        ]
    finally:
        srv.close()
