"""Every request's work is bounded before it starts: vertices, crossings, classes, the padded canvas,
and heavy requests in flight (the rest wait their turn, or get 503 + Retry-After, while light
requests answer at once). bench/limits.py measures what a request at each cap costs."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DEMO_DIR, DEMO_MODEL
from tests.hitl_support import SIZE, X0, Y0, post, serve, start_server
from tests.http.test_api import call, extent_body
from web_tool import server
from web_tool.errors import BusyError, ConfigError
from web_tool.geometry import count_crossings, polygon_from_geojson
from web_tool.http import admission
from web_tool.http.admission import Gate, HeavyRoutes
from web_tool.ServerModels import tiling

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module")
def stripes_server(scene, stripes_model, tmp_path_factory):
    srv = serve(
        scene,
        stripes_model,
        tmp_path_factory.mktemp("limits"),
        in_process=True,
        max_vertices=500,
        max_classes=6,
    )
    srv.config.jobs.window_px = 64
    yield srv
    srv.close()
    srv.config.jobs.close()


# --------------------------------------------------------------------------- heavy requests take turns


def test_heavy_work_takes_turns_in_arrival_order_never_more_than_the_slots_at_once():
    gate, order, running, most = Gate(slots=2, max_waiting=10), [], [0], [0]
    lock = threading.Lock()
    blocker = threading.Event()

    def work(i):
        with gate.turn():
            with lock:
                order.append(i)
                running[0] += 1
                most[0] = max(most[0], running[0])
            blocker.wait(5)
            with lock:
                running[0] -= 1

    threads = []
    for i in range(8):
        threads.append(threading.Thread(target=work, args=(i,)))
        threads[-1].start()
        while gate.state()["running"] + gate.state()["waiting"] < i + 1:  # arrive one after the other
            time.sleep(0.001)
    blocker.set()
    for t in threads:
        t.join()
    assert order == list(range(8)) and most[0] == 2


def hold_turns(
    gate: Gate, n: int, release: threading.Event, refusable: bool = True
) -> list[threading.Thread]:
    """`n` threads that each take a turn at `gate` and keep it until `release`; → once all are in
    (running or waiting)."""

    def hold():
        with gate.turn(refusable):
            release.wait(10)

    start = gate.state()["running"] + gate.state()["waiting"]
    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    while gate.state()["running"] + gate.state()["waiting"] < start + n:
        time.sleep(0.001)
    return threads


def test_beyond_the_waiting_places_a_heavy_request_is_refused_with_retry_after():
    gate, release = Gate(slots=1, max_waiting=2), threading.Event()
    threads = hold_turns(gate, 3, release)  # one running, two waiting
    try:
        with pytest.raises(BusyError, match="busy") as refused:
            with gate.turn():
                pass
        assert refused.value.retry_after >= 1
        threads += hold_turns(gate, 2, release, refusable=False)  # background work waits anyway...
        assert gate.state() == {"running": 1, "waiting": 4}
        with pytest.raises(BusyError):  # ...and takes no waiting place from requests
            with gate.turn():
                pass
    finally:
        release.set()
        for t in threads:
            t.join()
    assert gate.state() == {"running": 0, "waiting": 0}


def test_a_heavy_request_that_cannot_get_a_turn_in_time_is_refused():
    gate, release = Gate(slots=1, max_waiting=5, max_wait_s=0.05), threading.Event()

    def hold():
        with gate.turn():
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    while gate.state()["running"] == 0:
        time.sleep(0.001)
    with pytest.raises(BusyError, match="no turn"):
        with gate.turn():
            pass
    assert gate.state() == {"running": 1, "waiting": 0}  # the refused one left no trace
    release.set()
    holder.join()
    with gate.turn():
        assert gate.state()["running"] == 1


def wsgi_get(app, path: str) -> tuple[str, bytes]:
    """(status, body) of a GET through the WSGI interface, without a server."""
    from wsgiref.util import setup_testing_defaults

    environ, answer = {"PATH_INFO": path}, {}
    setup_testing_defaults(environ)
    body = b"".join(app(environ, lambda status, headers, exc=None: answer.setdefault("status", status)))
    return answer["status"], body


def test_only_routes_declared_heavy_take_a_turn():
    import bottle

    from web_tool.http import api

    gate = Gate(slots=1, max_waiting=0)
    app = bottle.Bottle()
    api.install(app)  # JSON errors
    app.install(HeavyRoutes(gate))
    app.route("/heavy", "GET", lambda: str(gate.state()["running"]), heavy=True)
    app.route("/light", "GET", lambda: str(gate.state()["running"]))
    assert wsgi_get(app, "/heavy") == ("200 OK", b"1")  # it ran holding the turn
    assert wsgi_get(app, "/light") == ("200 OK", b"0")
    release = threading.Event()
    threads = hold_turns(gate, 1, release)
    try:
        assert wsgi_get(app, "/light") == ("200 OK", b"1")  # answers while the heavy turn is taken
        status, body = wsgi_get(app, "/heavy")
        assert status.startswith("503") and b"busy" in body
    finally:
        release.set()
        threads[0].join()


def test_threads_must_leave_room_for_light_requests(tiny_dataset_dir, tiny_model_path, tmp_path):
    with pytest.raises(ValueError, match="light"):
        admission.check_threads(8, 1, 10)
    args = server.parse_args(
        [
            "--dataset",
            str(tiny_dataset_dir),
            "--model_fn",
            str(tiny_model_path),
            "--state_dir",
            str(tmp_path),
            "--threads",
            "8",
        ]
    )
    with pytest.raises(ConfigError, match="--threads"):
        server.build_config(args)
    args.threads, args.max_classes = 16, 255
    with pytest.raises(ConfigError, match="--max_classes"):
        server.build_config(args)


def test_with_the_heavy_queue_full_light_requests_answer_and_one_more_heavy_gets_503(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    from tests.conftest import LiveServer, build_app

    app, config = build_app(
        [f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, max_heavy=1, max_waiting=1
    )
    srv = LiveServer(app, threads=6)
    answers = []
    try:
        with config.gate.turn():  # a heavy request holds the one slot
            waiting = threading.Thread(
                target=lambda: answers.append(call(srv, "/predPatch", {"extent": extent_body()}))
            )
            waiting.start()
            while config.gate.state()["waiting"] == 0:
                time.sleep(0.005)
            status, headers, payload = call(srv, "/predPatch", {"extent": extent_body()})
            assert status == 503 and "busy" in payload["error"] and int(headers["Retry-After"]) >= 1
            assert call(srv, "/getInput", {"extent": extent_body()})[0] == 503  # heavy too
            for path in (
                "/health",
                "/datasets",
                "/tiles/tiny/18/75090/100165.png",
                "/sessions/default",
                "/checkpoints",
                "/jobs",
            ):
                assert call(srv, path)[0] == 200, path
            body = {"extent": extent_body(), "value": 1}
            assert call(srv, "/recordCorrection", body)[0] == 200  # light: never waits for heavy work
            assert answers == []  # the waiting prediction is still waiting
        waiting.join(60)
        assert answers and answers[0][0] == 200  # and got its turn
    finally:
        srv.close()


# --------------------------------------------------------------------------- geometry


def polygon(points) -> dict:
    ring = [list(map(float, p)) for p in points]
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]}


def test_a_polygon_over_the_vertex_cap_is_refused_before_anything_is_built(stripes_server):
    url, cap = stripes_server, stripes_server.config.max_vertices
    for n, status in ((cap - 1, 200), (cap + 1, 413)):  # a ring of n - 1 corners is n positions
        angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
        ring = [(X0 + 64 + 30 * np.cos(a), Y0 + 64 + 30 * np.sin(a)) for a in angles]
        body = {"geometry": polygon(ring), "crs": 32618, "value": 1}
        reply = post(url, "/recordCorrection", body, status=status)
        if status == 413:
            assert "--max_vertices" in reply["error"] and str(n + 1) in reply["error"]
            post(url, "/predTile", {**body, "value": None}, status=413)
    features = [{"type": "Feature", "geometry": polygon([(0, 0), (1, 0), (1, 1)])}] * (cap // 4 + 1)
    post(url, "/predTile", {"geometry": {"type": "FeatureCollection", "features": features}}, status=413)


#: points inside the stripes scene (UTM 18N), for polygons that cross themselves at random
scene_points = st.tuples(st.floats(X0 + 1, X0 + SIZE - 1), st.floats(Y0 + 1, Y0 + SIZE - 1))


@FUZZ
@given(points=st.lists(scene_points, min_size=3, max_size=120))
def test_self_intersecting_polygons_are_repaired_or_refused_saying_why(stripes_server, points):
    body = {"geometry": polygon(points), "crs": 32618, "value": 2}
    r = stripes_server.post("/recordCorrection", json=body, timeout=60)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["count"] >= 1
    else:
        assert any(w in r.json()["error"] for w in ("encloses no area", "too many to repair")), r.text


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(n=st.integers(3, 1_200), turns=st.integers(1, 60))
def test_huge_and_star_shaped_polygons_never_cost_more_than_the_caps_allow(stripes_server, n, turns):
    """Stars of n points that wind `turns` times: up to n x turns crossings, beyond the vertex cap
    and the crossing budget too; the answer is a repair, or a 4xx that says which limit."""
    cx, cy, r = X0 + 64, Y0 + 64, 60
    ring = [
        (cx + r * math.cos(2 * math.pi * i * turns / n), cy + r * math.sin(2 * math.pi * i * turns / n))
        for i in range(n)
    ]
    body = {"geometry": polygon(ring), "crs": 32618, "value": 0}
    reply = stripes_server.post("/recordCorrection", json=body, timeout=60)
    assert reply.status_code in (200, 400, 413), reply.text
    if reply.status_code == 413:
        assert n + 1 > stripes_server.config.max_vertices and "--max_vertices" in reply.json()["error"]


def test_crossings_are_counted_up_to_the_budget_and_no_further():
    from shapely.geometry import Polygon

    from web_tool.geometry import make_valid

    ring = [(math.cos(2 * math.pi * i * 7 / 101), math.sin(2 * math.pi * i * 7 / 101)) for i in range(101)]
    star = Polygon(ring)  # a {101/7} star: each edge crosses 12 others
    assert count_crossings(star, 10**9) == 101 * 6
    assert 50 < count_crossings(star, 50) < 101 * 6  # stopped soon after the budget
    repaired = polygon_from_geojson(polygon(ring))  # 606 crossings: within the budget, repaired
    assert repaired.is_valid and repaired.area > 0
    with pytest.raises(Exception, match="too many to repair"):
        make_valid(star, max_crossings=100)


# --------------------------------------------------------------------------- classes


def test_a_session_cannot_grow_past_the_class_cap_and_a_refusal_changes_nothing(stripes_server):
    url = stripes_server
    s = post(url, "/sessions")["session"]
    for name in ("Wetland", "Quarry"):
        post(url, "/addClass", {"session": s, "name": name, "color": "#00AAAA"})
    before = url.get(f"/sessions/{s}", timeout=10).json()
    reply = post(url, "/addClass", {"session": s, "name": "One too many", "color": "#000000"}, status=413)
    assert "--max_classes 6" in reply["error"]
    assert url.get(f"/sessions/{s}", timeout=10).json() == before
    assert len(stripes_server.config.sessions.model(s).classes) == 6


@pytest.mark.parametrize("name", ["   ", "\tBad\x00name", "a\u200bb", "\u202eevil"])
def test_class_and_checkpoint_names_must_be_visible_text(stripes_server, name):
    for path, body in (("/addClass", {"name": name, "color": "#000000"}), ("/checkpoints", {"name": name})):
        reply = post(stripes_server, path, body, status=400)
        assert "name" in reply["error"]
    kept = post(
        stripes_server,
        "/addClass",
        {
            "session": post(stripes_server, "/sessions")["session"],
            "name": "  Wetland  ",
            "color": "#000000",
        },
    )
    assert kept["classes"][-1]["name"] == "Wetland"


# --------------------------------------------------------------------------- the canvas, strips, blocks


def test_the_pixel_cap_counts_the_models_context(tiny_dataset_dir, tiny_model_path, tmp_path):
    from tests.conftest import InProcessServer, build_app

    app, config = build_app(
        [f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, max_patch_pixels=100 * 100
    )
    srv = InProcessServer(app, config)
    try:
        from web_tool.geometry import WEB_MERCATOR, Extent, parse_crs

        def extent(side):
            ext = Extent(
                500_064 - side / 2,
                4_300_064 - side / 2,
                500_064 + side / 2,
                4_300_064 + side / 2,
                crs=parse_crs(32618),
            ).to_crs(WEB_MERCATOR)
            return extent_body(ext)

        status, _, payload = call(srv, "/predPatch", {"extent": extent(60)})  # 60² px, 124² with context
        assert status == 413 and "context" in payload["error"] and "--max_patch_pixels" in payload["error"]
        assert call(srv, "/getInput", {"extent": extent(60)})[0] == 200  # no model, no context
        assert call(srv, "/predPatch", {"extent": extent(30)})[0] == 200  # 94² px with context
    finally:
        srv.close()


def shapes_seen(image_shape, **kwargs) -> list[tuple[int, ...]]:
    seen = []

    def network(batch):
        seen.append(batch.shape)
        return [batch[..., :1] * 2]

    (out,) = tiling.run_tiled(network, np.ones(image_shape, np.float32), **kwargs)
    assert out.shape == (*image_shape[:2], 1) and np.allclose(out, 2)
    return seen


def test_a_thin_strip_is_tiled_along_its_length_never_padded_to_a_square():
    seen = shapes_seen((65, 8256, 4), window=1536, overlap=64, multiple=16)
    assert all(s[1] == 80 and s[2] <= 1536 for s in seen), seen  # 65 rows → 80, never 1536
    assert sum(s[0] * s[1] * s[2] for s in seen) < 2 * 80 * 8256
    assert shapes_seen((8256, 1, 4), window=1536, overlap=64, multiple=16)[0][2] == 16


@settings(max_examples=40, deadline=None, database=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), window=st.sampled_from([96, 128, 256]))
def test_no_call_of_the_network_sees_more_than_max_pixels_and_nothing_changes(h, w, window):
    image = np.random.default_rng(h * w).random((h, w, 2), np.float32)
    seen = []

    def identity(batch):
        seen.append(batch.shape)
        return [batch]

    (out,) = tiling.run_tiled(identity, image, window=window, overlap=16, multiple=16, max_pixels=20_000)
    np.testing.assert_allclose(out, image, rtol=1e-5)
    assert all(
        n * rows * cols <= max(20_000, rows * cols) and rows * cols <= max(20_000, 48 * 48)
        for n, rows, cols, _ in seen
    )


@settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(h=st.integers(1, 300), w=st.integers(1, 300), classes=st.sampled_from([2, 4, 50, 254]))
def test_blocks_cover_every_pixel_once_and_hold_at_most_the_budget(monkeypatch, h, w, classes):
    monkeypatch.setattr(tiling, "MAX_VALUES", 40_000)  # the same for every example
    monkeypatch.setattr(tiling, "MAX_PIXELS", 30_000)
    context, covered, asked = 5, np.zeros((h, w), int), []

    def predict(image):
        asked.append(image.shape[0] * image.shape[1] * classes)
        return np.full((*image.shape[:2], classes), 1 / classes, np.float32)

    image = np.zeros((h + 2 * context, w + 2 * context, 3), np.uint8)
    for (rows, cols), probs in tiling.predict_blocks(predict, image, context, classes):
        assert probs.shape == (rows.stop - rows.start, cols.stop - cols.start, classes)
        covered[rows, cols] += 1
    assert (covered == 1).all()
    smallest = (tiling.MIN_BLOCK + 2 * context) ** 2 * classes
    assert max(asked) <= max(40_000, smallest)


def test_predictions_in_blocks_equal_one_pass(tiny_model_path, monkeypatch):
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    model = KerasSegmentationModel(
        tiny_model_path, classes=[{"name": str(i), "color": "#000"} for i in range(4)]
    )
    image = np.random.default_rng(3).integers(0, 255, (300, 260, 4)).astype(np.uint8)
    whole = model.predict(image)[32:-32, 32:-32]
    monkeypatch.setattr(tiling, "MAX_PIXELS", 120 * 260)  # strips of 56 rows + 64 rows of context
    got = np.zeros_like(whole)
    blocks = list(tiling.predict_blocks(model.predict, image, 32, 4))
    assert len(blocks) > 3
    for block, probs in blocks:
        got[block] = probs
    np.testing.assert_allclose(got, whole, atol=1e-5)  # the tiny net sees 5 px: 32 px of context is plenty


# --------------------------------------------------------------------------- memory of the real server


def peak_mb(pid: int, send) -> float:
    """Peak resident MB of process `pid` during `send()`, above its resident memory just before."""
    status = Path(f"/proc/{pid}/status")

    def field(name: str) -> float:
        line = next(line for line in status.read_text().splitlines() if line.startswith(name))
        return int(line.split()[1]) / 1024

    before = field("VmRSS:")
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    send()
    return field("VmHWM:") - before


#: the aim of the issue: one request at the pixel cap costs at most 1.5 GB above idle
AIM_MB = 1536


def demo_extent(width_px: int, height_px: int) -> dict:
    """An EPSG:3857 extent of width x height demo pixels in the middle of area a."""
    from web_tool.geometry import WEB_MERCATOR, Extent, center_latitude, ground_resolution_in, parse_crs

    ext = Extent(325_736, 4_305_464, 325_737, 4_305_465, crs=parse_crs(32618)).to_crs(WEB_MERCATOR)
    res = ground_resolution_in(WEB_MERCATOR, 1.0, center_latitude(ext))
    half_w, half_h = width_px * res / 2, height_px * res / 2
    return {
        "xmin": ext.xmin - half_w,
        "xmax": ext.xmin + half_w,
        "ymin": ext.ymin - half_h,
        "ymax": ext.ymin + half_h,
        "spatialReference": {"latestWkid": 3857},
    }


@pytest.mark.slow
def test_strips_odd_shapes_and_huge_polygons_stay_within_the_memory_aim_on_the_demo(tmp_path):
    """The demo model on the demo, in a real server process: whatever extent the caps let through,
    however thin, and whatever polygon, peaks at most 1.5 GB above the server's memory before it."""
    if not DEMO_MODEL.exists() or not (DEMO_DIR / "scene.json").exists():
        pytest.skip("demo data or model missing: run `make demo-data`")
    from tests.conftest import free_port
    from web_tool.DataLoader import MAX_PATCH_SIDE

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(f"demo={DEMO_DIR / 'imagery'}", DEMO_MODEL, tmp_path / "state", port)
    answers = []

    def predict(width: int, height: int) -> None:
        r = requests.post(url + "/predPatch", json={"extent": demo_extent(width, height)}, timeout=600)
        answers.append((width, height, r.status_code))
        assert r.status_code in (200, 413), r.text  # 413: over the pixel cap or the longest side
        assert r.headers["Content-Type"] == "application/json"

    try:
        predict(256, 256)  # warm
        assert peak_mb(proc.pid, lambda: predict(1984, 1984)) <= AIM_MB  # the canvas at the cap
        assert answers[-1][2] == 200

        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(long=st.integers(2048, MAX_PATCH_SIDE), short=st.integers(1, 64), upright=st.booleans())
        def strips(long, short, upright):
            width, height = (short, long) if upright else (long, short)
            assert peak_mb(proc.pid, lambda: predict(width, height)) <= AIM_MB

        strips()
        assert [a for a in answers if a[2] == 200 and min(a[:2]) < 65], answers  # strips were predicted
        angles = np.arange(200_003) * 7 * 2 * np.pi / 200_003  # a 200 003-point star, 6.5 MiB of JSON
        ring = np.c_[325_736 + 200 * np.cos(angles), 4_305_464 + 200 * np.sin(angles)].tolist()
        body = {"geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}, "crs": 32618, "value": 1}

        def huge() -> None:
            r = requests.post(url + "/recordCorrection", json=body, timeout=600)
            assert r.status_code == 413 and "--max_vertices" in r.json()["error"]

        assert peak_mb(proc.pid, huge) <= 256  # refused once read: only the parsed JSON was ever held
        assert requests.get(url + "/health", timeout=10).ok
    finally:
        proc.kill()
        proc.wait()
