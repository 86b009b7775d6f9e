"""/predTile jobs, in-process: outputs, agreement with /predPatch, cap, cancel, restart, downloads."""

from __future__ import annotations

import base64
import csv
import io
import shlex
import threading
import time

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.warp import transform as transform_points
from rio_cogeo.cogeo import cog_validate

from tests.conftest import InProcessServer, build_app
from tests.http.test_api import call
from web_tool.errors import BusyError, ExtentError
from web_tool.geometry import WEB_MERCATOR, Extent, parse_crs
from web_tool.mapping.jobs import RESTART_MESSAGE, JobManager, JobResult

UTM = parse_crs(32618)
# the tiny dataset: 2x2 tiles of 64 m at 1 m, UTM 18N, x 500000..500128, y 4300000..4300128
X0, Y0 = 500_000, 4_300_000
POLYGON_UTM = [
    (X0 + 6.3, Y0 + 5.2),
    (X0 + 121.7, Y0 + 15.4),
    (X0 + 100.2, Y0 + 122.9),
    (X0 + 12.1, Y0 + 90.6),
]


def polygon_3857(points=POLYGON_UTM) -> dict:
    xs, ys = transform_points(UTM, WEB_MERCATOR, [p[0] for p in points], [p[1] for p in points])
    ring = [[x, y] for x, y in zip(xs, ys, strict=True)]
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]}


def wait_for(server, job, states=("done", "failed", "cancelled"), timeout=60, session=None):
    """The job once it is in one of `states` (polled as `session`, whose job it is; None: default)."""
    deadline = time.monotonic() + timeout
    query = f"?session={session}" if session else ""
    while time.monotonic() < deadline:
        status, _, body = call(server, f"/jobs/{job}{query}")
        assert status == 200, body
        if body["state"] in states:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job} still {body['state']} after {timeout} s")


def submit(server, body) -> str:
    status, _, reply = call(server, "/predTile", body)
    assert status == 202, reply
    return reply["job"]


@pytest.fixture
def done_job(app_server):
    app_server.config.jobs.window_px = 48  # several windows on the 128 px dataset
    job = submit(app_server, {"geometry": polygon_3857(), "crs": 3857})
    return wait_for(app_server, job)


def download(server, url, tmp_path, name):
    status, _, data = call(server, url)
    assert status == 200, data
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_pred_tile_job_makes_a_valid_cog_on_the_native_grid(app_server, done_job, tmp_path):
    assert done_job["state"] == "done" and done_job["progress"] == 1
    assert set(done_job["outputs"]) == {"cog", "preview", "stats_json", "stats_csv", "aux", "qml", "overlay"}
    cog = download(app_server, done_job["outputs"]["cog"], tmp_path, "map.tif")
    valid, errors, _ = cog_validate(str(cog))
    assert valid, errors
    with rasterio.open(cog) as src:
        assert src.crs == UTM and src.dtypes == ("uint8",) and src.nodata == 255
        t = src.transform
        assert (t.a, t.e) == (1.0, -1.0) and float(t.c).is_integer() and float(t.f).is_integer()
        assert src.overviews(1), "internal overviews"
        cmap = src.colormap(1)
        assert cmap[0] == (0, 0, 255, 255) and cmap[1] == (0, 128, 0, 255) and cmap[255][3] == 0
        classes = src.read(1)
        # pixels whose centre lies outside the polygon are nodata, inside are classes
        rows, cols = np.mgrid[0 : src.height, 0 : src.width]
        xs, ys = rasterio.transform.xy(t, rows.ravel(), cols.ravel())
        import shapely

        inside = shapely.contains_xy(shapely.Polygon(POLYGON_UTM), xs, ys).reshape(classes.shape)
    assert (classes[~inside] == 255).all()
    assert (classes[inside] < 4).all() and inside.sum() > 5000


def test_pred_tile_classes_equal_pred_patch_on_the_same_ground(app_server, done_job, tmp_path):
    cog = download(app_server, done_job["outputs"]["cog"], tmp_path, "map.tif")
    ext = Extent(X0 + 40, Y0 + 40, X0 + 90, Y0 + 90, crs=UTM).to_crs(WEB_MERCATOR)
    body = {"extent": {"xmin": ext.xmin, "ymin": ext.ymin, "xmax": ext.xmax, "ymax": ext.ymax}}
    status, _, reply = call(app_server, "/predPatch", body)
    assert status == 200, reply
    png = cv2.imdecode(np.frombuffer(base64.b64decode(reply["output_hard"]), np.uint8), cv2.IMREAD_UNCHANGED)
    rgb = cv2.cvtColor(png, cv2.COLOR_BGRA2RGB).astype(int)
    colours = np.array([(0, 0, 255), (0, 128, 0), (128, 255, 128), (128, 96, 96)])
    patch_classes = np.abs(rgb[:, :, None, :] - colours).sum(-1).argmin(-1)
    h, w = patch_classes.shape
    # the PNG's pixel centres in UTM → the COG's pixels there
    px = ext.xmin + (np.arange(w) + 0.5) * (ext.xmax - ext.xmin) / w
    py = ext.ymax - (np.arange(h) + 0.5) * (ext.ymax - ext.ymin) / h
    gx, gy = np.meshgrid(px, py)
    ux, uy = transform_points(WEB_MERCATOR, UTM, gx.ravel(), gy.ravel())
    with rasterio.open(cog) as src:
        rows, cols = rasterio.transform.rowcol(src.transform, ux, uy)
        tile_classes = src.read(1)[np.asarray(rows), np.asarray(cols)].reshape(h, w)
    core = (slice(3, h - 3), slice(3, w - 3))
    agreement = (tile_classes[core] == patch_classes[core]).mean()
    assert agreement >= 0.99, agreement


def test_statistics_sum_to_100_percent_and_give_km2_of_1m_pixels(app_server, done_job, tmp_path):
    status, headers, stats = call(app_server, done_job["outputs"]["stats_json"])
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert stats == done_job["stats"]
    assert sum(c["percent"] for c in stats["classes"]) == pytest.approx(100)
    with rasterio.open(download(app_server, done_job["outputs"]["cog"], tmp_path, "m.tif")) as src:
        counts = np.bincount(src.read(1).ravel(), minlength=256)
    for row in stats["classes"]:
        assert row["pixels"] == counts[row["index"]]
        assert row["km2"] == pytest.approx(row["pixels"] * 1e-6)
    table = list(csv.DictReader(io.StringIO(call(app_server, done_job["outputs"]["stats_csv"])[2].decode())))
    assert [r["name"] for r in table] == ["Water", "Forest", "Field", "Built"]
    assert sum(float(r["percent"]) for r in table) == pytest.approx(100, abs=1e-3)
    preview = download(app_server, done_job["outputs"]["preview"], tmp_path, "p.png")
    img = cv2.imread(str(preview), cv2.IMREAD_UNCHANGED)
    assert img.shape[2] == 4 and img[0, 0, 3] == 0 and (img[..., 3] == 255).any()


def test_pred_tile_accepts_an_extent_and_maps_all_of_it(app_server):
    ext = Extent(X0 + 10, Y0 + 10, X0 + 50, Y0 + 30, crs=UTM)
    body = {
        "extent": {
            "xmin": ext.xmin,
            "ymin": ext.ymin,
            "xmax": ext.xmax,
            "ymax": ext.ymax,
            "spatialReference": {"latestWkid": 32618},
        }
    }
    job = wait_for(app_server, submit(app_server, body))
    assert job["state"] == "done" and job["stats"]["total_pixels"] == 40 * 20


def test_pred_tile_over_the_area_cap_is_413_pointing_to_the_cli(tiny_model_path, tmp_path, geotiff_factory):
    coarse = geotiff_factory("big/coarse.tif", (X0, Y0, X0 + 8000, Y0 + 8000), size=(80, 80))  # 64 km², 100 m
    app, _ = build_app([f"big={coarse}"], tiny_model_path, tmp_path)
    server = InProcessServer(app)
    try:
        ext = Extent(X0 + 100, Y0 + 100, X0 + 6100, Y0 + 5100, crs=UTM)  # 30 km² > the 25 km² default
        body = {
            "extent": {
                **dict(zip(("xmin", "ymin", "xmax", "ymax"), ext.bounds, strict=True)),
                "spatialReference": {"latestWkid": 32618},
            }
        }
        status, _, reply = call(server, "/predTile", body)
        assert status == 413
        assert "25 km²" in reply["error"] and "python -m web_tool.batch" in reply["error"]
        # the command maps with this server's model and a checkpoint of the session's model
        command = shlex.split(reply["error"].split(": ", 2)[-1])
        assert command[command.index("--model_fn") + 1] == str(tiny_model_path)
        checkpoint = command[command.index("--checkpoint") + 1]
        assert command[command.index("--state_dir") + 1] == str(tmp_path / "state")
        assert command[command.index("--dataset") + 1] == f"big={coarse}"  # as the server was told
        assert checkpoint in [c["id"] for c in call(server, "/checkpoints")[2]]
        # beyond the imagery does not count: 9 km² of it under a 100 km² box
        box = {
            "xmin": X0 + 5000,
            "ymin": Y0 + 5000,
            "xmax": X0 + 15000,
            "ymax": Y0 + 15000,
            "spatialReference": {"latestWkid": 32618},
        }
        status, _, reply = call(server, "/predTile", {"extent": box})
        assert status == 202, reply
        assert wait_for(server, reply["job"])["area_km2"] == pytest.approx(9, rel=0.01)
    finally:
        server.close()


def test_the_area_cap_is_configurable(app_server):
    app_server.config.jobs.max_km2 = 0.001
    status, _, reply = call(app_server, "/predTile", {"geometry": polygon_3857()})
    assert status == 413 and "0.001 km²" in reply["error"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({}, 400, "exactly one of"),
        (
            {"extent": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1}, "geometry": polygon_3857()},
            400,
            "exactly one",
        ),
        ({"geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}, 400, "Polygon"),
        ({"geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}}, 400, "area"),
        ({"geometry": polygon_3857(), "crs": 999999}, 400, "999999"),
        ({"geometry": polygon_3857(), "dataset": "nope"}, 404, "nope"),
        ({"geometry": polygon_3857(), "session": "0123456789abcdef"}, 404, "session"),
        ({"geometry": polygon_3857(), "weights": [1, 1]}, 400, "weights"),
        ({"geometry": polygon_3857([(0, 0), (100, 0), (100, 100)]), "crs": 3857}, 404, "imagery"),
    ],
)
def test_bad_pred_tile_requests_are_json_errors(app_server, body, status, words):
    got, _, reply = call(app_server, "/predTile", body)
    assert got == status, reply
    assert words in reply["error"]


def test_unknown_jobs_are_404(app_server):
    for path in ("/jobs/0123456789abcdef", "/jobs/..%2Fjobs.sqlite", "/jobs/x"):
        status, _, reply = call(app_server, path)
        assert status == 404 and "error" in reply
    assert call(app_server, "/jobs/0123456789abcdef", method="DELETE")[0] == 404


# rasterio's own warning filters are process-wide (warnings.catch_warnings is not thread-safe), so a
# read in one thread may now and then let through a warning another thread had silenced
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cancel_a_running_and_a_queued_job(app_server):
    app_server.config.jobs.window_px = 4  # ~700 windows: seconds of work
    running = submit(app_server, {"geometry": polygon_3857()})
    queued = submit(app_server, {"geometry": polygon_3857()})
    wait_for(app_server, running, states=("running",))
    assert call(app_server, f"/jobs/{queued}")[2]["state"] == "queued"
    for job in (queued, running):
        status, _, reply = call(app_server, f"/jobs/{job}", method="DELETE")
        assert status == 200 and reply["state"] == "cancelled"
    time.sleep(0.5)  # the worker notices at its next window
    for job in (queued, running):
        reply = call(app_server, f"/jobs/{job}")[2]
        assert reply["state"] == "cancelled" and reply["outputs"] == {}
        assert call(app_server, f"/downloads/{job}.tif")[0] == 404
    downloads = app_server.config.jobs.downloads
    deadline = time.monotonic() + 10
    while list(downloads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(downloads.iterdir()) == [], "a cancelled job leaves no files"


# rasterio's own warning filters are process-wide (warnings.catch_warnings is not thread-safe), so a
# read in one thread may now and then let through a warning another thread had silenced
@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_pred_patch_stays_responsive_while_a_job_runs(app_server):
    app_server.config.jobs.window_px = 4
    job = submit(app_server, {"geometry": polygon_3857()})
    wait_for(app_server, job, states=("running",))
    ext = Extent(X0 + 40, Y0 + 40, X0 + 90, Y0 + 90, crs=UTM).to_crs(WEB_MERCATOR)
    started = time.monotonic()
    body = {"extent": {"xmin": ext.xmin, "ymin": ext.ymin, "xmax": ext.xmax, "ymax": ext.ymax}}
    status, _, _ = call(app_server, "/predPatch", body)
    elapsed = time.monotonic() - started
    assert status == 200 and elapsed < 5
    assert call(app_server, f"/jobs/{job}")[2]["state"] == "running"
    call(app_server, f"/jobs/{job}", method="DELETE")


def test_a_restart_reports_an_interrupted_job_failed(tmp_path):
    manager = JobManager(tmp_path / "state")
    release, started = threading.Event(), threading.Event()

    def work(ctx):
        ctx.path(".tif").write_bytes(b"half a map")
        started.set()
        release.wait(10)
        return JobResult({"cog": ctx.path(".tif")})

    job = manager.submit(work)
    queued = manager.submit(work)
    assert started.wait(10)
    restarted = JobManager(tmp_path / "state")  # what a new server process does on start-up
    for j in (job, queued):
        state = restarted.get(j)
        assert state["state"] == "failed" and state["message"] == RESTART_MESSAGE
    assert not (restarted.downloads / f"{job}.tif").exists()
    release.set()
    manager.close()
    assert restarted.get(job)["state"] == "failed", "the old worker must not revive it"


def test_downloads_serve_only_finished_outputs(app_server, done_job):
    jobs = app_server.config.jobs
    (jobs.downloads / "0123456789abcdef.tif").write_bytes(b"not a job output")
    name = done_job["outputs"]["cog"].rsplit("/", 1)[1]
    assert call(app_server, f"/downloads/{name}")[0] == 200
    for path in (
        "/downloads/0123456789abcdef.tif",  # on disk, but no finished job made it
        "/downloads/jobs.sqlite",
        "/downloads/..%2Fjobs.sqlite",
        "/downloads/%2e%2e/jobs.sqlite",
        "/downloads/../jobs.sqlite",
        "/downloads/.." + name,
        "/downloads/" + name + "%00",
        "/downloads/",
    ):
        status, headers, body = call(app_server, path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json")


def test_restarted_server_still_serves_finished_outputs(
    app_server, done_job, tiny_dataset_dir, tiny_model_path, tmp_path
):
    app, _ = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)
    server = InProcessServer(app)
    try:
        status, _, job = call(server, f"/jobs/{done_job['job']}")
        assert status == 200 and job["state"] == "done"
        assert call(server, job["outputs"]["cog"])[0] == 200
    finally:
        server.close()


def test_a_full_queue_is_refused_with_busy_and_a_failing_job_reports_why(tmp_path):
    manager = JobManager(tmp_path / "state", max_queued=1)
    release = threading.Event()

    def blocked(ctx):
        release.wait(10)
        raise ExtentError("the area is not valid")

    first = manager.submit(blocked)
    deadline = time.monotonic() + 10
    while manager.get(first)["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    manager.submit(blocked)  # waits in the queue
    with pytest.raises(BusyError, match="queue is full"):
        manager.submit(blocked)
    release.set()
    while manager.get(first)["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (
        manager.get(first)["state"] == "failed" and manager.get(first)["message"] == "the area is not valid"
    )
    manager.close()


def test_job_outputs_have_meaningful_names_the_pages_colours_and_polygons(app_server, tmp_path):
    app_server.config.jobs.window_px = 64
    classes = [
        {"name": "Lake", "color": "#112233"},
        {"name": "Wood", "color": "#445566"},
        {"name": "Crop", "color": "#778899"},
        {"name": "Town", "color": "#aabbcc"},
    ]
    job = wait_for(
        app_server,
        submit(app_server, {"geometry": polygon_3857(), "crs": 3857, "classes": classes, "vector": True}),
    )
    assert job["state"] == "done", job
    checkpoint = job["checkpoint"]
    assert checkpoint in [c["id"] for c in call(app_server, "/checkpoints")[2]]
    assert {"gpkg", "geojson", "qml", "aux"} <= set(job["outputs"])

    r = app_server.get(job["outputs"]["cog"], timeout=30)
    today = time.strftime("%Y%m%d")
    assert f'filename="tiny_{today}_{checkpoint}.tif"' in r.headers["Content-Disposition"]
    aux = app_server.get(job["outputs"]["aux"], timeout=30)
    assert f'filename="tiny_{today}_{checkpoint}.tif.aux.xml"' in aux.headers["Content-Disposition"]
    assert "<Category>Wood</Category>" in aux.text
    cog = tmp_path / "map.tif"
    cog.write_bytes(r.content)
    with rasterio.open(cog) as src:
        assert src.colormap(1)[0] == (0x11, 0x22, 0x33, 255) and src.tags()["CLASS_3"] == "Town"
        assert src.tags()["CHECKPOINT"] == checkpoint and src.tags()["MODEL_FILE"].endswith(".keras")
    geojson = app_server.get(job["outputs"]["geojson"], timeout=30).json()
    assert {f["properties"]["class_name"] for f in geojson["features"]} <= {"Lake", "Wood", "Crop", "Town"}
    assert sum(f["properties"]["area_m2"] for f in geojson["features"]) == pytest.approx(
        job["stats"]["total_km2"] * 1e6, rel=0.05
    )
    assert job["stats"]["classes"][0]["name"] == "Lake"


def test_classes_must_match_the_model(app_server):
    status, _, reply = call(
        app_server,
        "/predTile",
        {"geometry": polygon_3857(), "classes": [{"name": "only", "color": "#000000"}]},
    )
    assert status == 400 and "classes has 1 entries" in reply["error"]
