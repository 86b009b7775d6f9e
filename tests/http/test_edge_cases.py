"""The smaller ways a request could go wrong, each answered with the right JSON status in the user's
words, and a failed request saving and changing nothing, in memory or on disk."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket

import pytest
import requests

from tests.conftest import InProcessServer, build_app
from tests.hitl_support import BUILT, FIELD, correct_box, post, serve, stripe_extent, utm_extent
from tests.http.test_api import call, extent_body
from tests.mapping.test_jobs_api import polygon_3857, submit, wait_for
from tests.test_faults import fill, small_disk  # noqa: F401 (a fixture)


@pytest.fixture
def server(scene, stripes_model, tmp_path):
    srv = serve(scene, stripes_model, tmp_path, in_process=True)
    yield srv
    srv.close()
    srv.config.jobs.close()


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "path",
    [
        "/%00",
        "/js/%00x.js",
        "/index.html%00.js",
        "/" + "a" * 300,
        "/js/" + "b" * 300 + ".js",
        "/css/" + "c/" * 200 + "x.css",
    ],
)
def test_odd_static_paths_are_a_json_404_not_a_500(app_server, path):
    status, headers, payload = call(app_server, path)
    assert status == 404 and headers["Content-Type"].startswith("application/json"), payload
    assert payload["error"].startswith("no such file")


def test_a_download_that_became_a_symlink_is_not_followed(app_server, tmp_path):
    app_server.config.jobs.window_px = 64
    done = wait_for(app_server, submit(app_server, {"geometry": polygon_3857(), "crs": 3857}))
    cog = app_server.config.jobs.downloads / done["outputs"]["cog"].rsplit("/", 1)[1]
    secret = tmp_path / "outside.txt"
    secret.write_text("not for the web")
    cog.unlink()
    cog.symlink_to(secret)
    status, _, payload = call(app_server, done["outputs"]["cog"])
    assert status == 404 and "no such download" in payload["error"]


def test_a_missing_or_damaged_checkpoint_is_gone_not_a_500_and_no_longer_listed(server):
    url = server
    s = post(url, "/sessions")["session"]
    correct_box(url, BUILT, 70, 70, session=s)
    files = server.config.sessions.store.checkpoint_dir
    damaged, missing, kept = (
        post(url, "/checkpoints", {"session": s, "name": n})["checkpoint"]
        for n in ("damaged", "missing", "kept")
    )
    (files / f"{damaged}.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (files / f"{missing}.npz").unlink()
    listed = url.get("/checkpoints", params={"session": s}, timeout=10).json()
    assert [c["name"] for c in listed] == ["kept", "damaged"]  # a missing file: not listed at all
    before = url.get(f"/sessions/{s}", timeout=10).json()
    for checkpoint, name in ((damaged, "damaged"), (missing, "missing")):
        reply = post(url, "/doLoad", {"checkpoint": checkpoint, "session": s}, status=410)
        assert f"checkpoint {name!r} can no longer be loaded" in reply["error"]
    assert url.get(f"/sessions/{s}", timeout=10).json() == before  # nothing changed
    listed = url.get("/checkpoints", params={"session": s}, timeout=10).json()
    assert [c["name"] for c in listed] == ["kept"]
    assert (files / f"{damaged}.npz.damaged").is_file()  # set aside for the operator, not deleted
    assert post(url, "/doLoad", {"checkpoint": kept, "session": s})["success"]


# --------------------------------------------------------------------------- waitress' own answers


def raw(port: int, data: bytes) -> tuple[int, str, bytes]:
    """Send raw bytes; → (status, Content-Type, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.getheader("Content-Type", ""), response.read()


def test_waitress_refusals_are_json_too(live_server):
    head = b"POST /predPatch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    for data, status, words in [
        (head + b"Content-Length: abc\r\n\r\n{}", 400, "malformed"),
        (head + b"Content-Length: " + str(9 * 2**20).encode() + b"\r\n\r\n", 413, "over the server's limit"),
    ]:
        got, content_type, body = raw(live_server.port, data)
        assert got == status and content_type == "application/json", body
        assert words in json.loads(body)["error"]


def test_a_body_over_the_limit_is_refused_unread_not_buffered(live_server):
    """A 2 GiB Content-Length is answered at once: waitress no longer buffers up to 1 GiB first."""
    head = (
        b"POST /recordCorrection HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(2 * 2**30).encode() + b"\r\n\r\n"
    )
    status, content_type, body = raw(live_server.port, head + b"{" + b" " * 1000)
    assert status == 413 and content_type == "application/json"
    chunked = (
        b"POST /recordCorrection HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 2**20
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=30) as sock:
        sock.sendall(chunked)
        try:
            for _ in range(12):  # 12 MiB, beyond the 8 MiB limit: refused before the end
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except OSError:  # the server may close the connection as soon as it has refused
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413 and response.getheader("Content-Type") == "application/json"


# --------------------------------------------------------------------------- types and names


@pytest.mark.parametrize(
    "field, value",
    [
        ("value", True),
        ("value", "1"),
        ("value", 1.0),
        ("value", None),
        ("xmin", True),
        ("xmin", "500010"),
        ("latestWkid", "3857"),
        ("latestWkid", True),
    ],
)
def test_numbers_must_be_numbers_not_booleans_or_strings(server, field, value):
    extent = utm_extent(70, 70, 72, 72)
    body = {"extent": extent, "value": FIELD}
    if field == "value":
        body["value"] = value
    elif field == "latestWkid":
        extent["spatialReference"]["latestWkid"] = value
    else:
        extent[field] = value
    reply = post(server, "/recordCorrection", body, status=400)
    assert field in reply["error"], reply
    assert server.get("/sessions/default", timeout=10).json()["corrections"] == 0


def test_a_spatial_reference_may_say_wkid_and_must_say_something(server):
    from web_tool.geometry import WGS84, Extent, parse_crs

    ext = Extent(500_066, 4_300_010, 500_090, 4_300_110, crs=parse_crs(32618)).to_crs(WGS84)
    box = {"xmin": ext.xmin, "ymin": ext.ymin, "xmax": ext.xmax, "ymax": ext.ymax}
    said = ({"latestWkid": 4326}, {"wkid": 4326}, {"wkid": 3857, "latestWkid": 4326})
    answers = [
        post(server, "/getInput", {"extent": {**box, "spatialReference": ref}})["input_naip"] for ref in said
    ]
    assert answers[0] == answers[1] == answers[2]  # degrees, however it is said (not read as metres)
    reply = post(server, "/getInput", {"extent": {**box, "spatialReference": {"wkt": "..."}}}, status=400)
    assert "EPSG code" in reply["error"]


# --------------------------------------------------------------------------- imagery gone while running


def test_imagery_deleted_or_damaged_while_the_server_runs_is_left_out_never_a_500(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    """The DataLoader leaves out a file it can no longer read (issue 12): what is left is served, and
    where nothing is left the answer is a 404 that says so; never a 500."""
    from web_tool.geometry import WEB_MERCATOR, Extent, parse_crs

    copy = tmp_path / "imagery"
    shutil.copytree(tiny_dataset_dir, copy)
    app, config = build_app([f"tiny={copy}"], tiny_model_path, tmp_path)
    config.jobs.window_px = 64
    srv = InProcessServer(app, config)
    try:
        assert call(srv, "/getInput", {"extent": extent_body()})[0] == 200
        files = sorted(copy.glob("*.tif"))  # t_00 and t_01: the top half of the dataset
        files[0].write_bytes(files[0].read_bytes()[:3000])  # damaged (truncated)
        files[1].unlink()  # deleted
        top = extent_body(
            Extent(500_010, 4_300_080, 500_110, 4_300_120, crs=parse_crs(32618)).to_crs(WEB_MERCATOR)
        )
        for path, body in [
            ("/getInput", {"extent": top}),
            ("/recordCorrection", {"extent": top, "value": 1}),
        ]:
            status, headers, payload = call(srv, path, body)
            assert status == 404 and "no imagery" in payload["error"], (path, payload)
            assert str(copy) not in payload["error"]  # says what, not where on the server
        status, _, reply = call(srv, "/predPatch", {"extent": top})  # its context reaches readable files
        assert status == 200 and alpha_of(reply).max() == 0  # nothing shown where nothing was read
        status, _, reply = call(srv, "/predPatch", {"extent": extent_body()})  # half broken, half not
        alpha = alpha_of(reply)
        assert (
            status == 200 and alpha[: len(alpha) // 4].max() == 0 and alpha[-len(alpha) // 4 :].min() == 255
        )
        assert {call(srv, f"/tiles/tiny/{z}/{x}/{y}.png")[0] for z, x, y in tiles_over_the_dataset()} == {200}
        assert wait_for(srv, submit(srv, {"extent": extent_body()}))["state"] == "done"
        assert call(srv, "/sessions/default")[2]["corrections"] == 0  # nothing recorded
    finally:
        srv.close()
        config.jobs.close()


def test_a_read_error_that_reaches_a_route_is_a_503_in_words_not_a_500():
    """The safety net for rasterio failures outside the DataLoader's own (remote reads, say)."""
    import bottle
    from rasterio.errors import RasterioIOError

    from web_tool.errors import unreadable
    from web_tool.http import api

    assert unreadable(ValueError("x")) is None
    wrapped = RuntimeError("while mapping")
    wrapped.__cause__ = RasterioIOError("/secret/path/a.tif: Read failed")
    bottle.request.bind({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"})
    answer = api.exception_response(wrapped)
    body = json.loads(answer.body)
    assert answer.status_code == 503 and "cannot read its imagery" in body["error"]
    assert "/secret" not in body["error"]


def alpha_of(reply: dict):
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(base64.b64decode(reply["output_hard"]), np.uint8), -1)[..., 3]


def tiles_over_the_dataset():
    import mercantile

    from tests.http.test_api import INSIDE
    from web_tool.geometry import WGS84

    ext = INSIDE.to_crs(WGS84)
    return [(t.z, t.x, t.y) for t in mercantile.tiles(*ext.bounds, zooms=[19])]


# --------------------------------------------------------------------------- the job queue


def test_a_full_job_queue_says_so_and_a_cancelled_job_frees_its_place_at_once(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path, max_queued_jobs=1)
    config.jobs.window_px = 64
    srv = InProcessServer(app, config)
    body = {"geometry": polygon_3857(), "crs": 3857}
    try:
        with config.gate.turn():  # the running job waits here for its first window's turn
            running = submit(srv, body)
            wait_for(srv, running, states=("running",))
            queued = submit(srv, body)
            status, headers, payload = call(srv, "/predTile", body)
            assert status == 503 and "job queue is full" in payload["error"], payload
            assert "internal error" not in payload["error"] and int(headers["Retry-After"]) >= 1
            assert call(srv, f"/jobs/{queued}", method="DELETE")[2]["state"] == "cancelled"
            third = submit(srv, body)  # the cancelled job's place is free now, not when `running` ends
            assert call(srv, f"/jobs/{third}")[2]["state"] == "queued"
        for job, state in ((running, "done"), (queued, "cancelled"), (third, "done")):
            assert wait_for(srv, job)["state"] == state, job
    finally:
        srv.close()
        config.jobs.close()


# --------------------------------------------------------------------------- a full disk changes nothing


def test_on_a_full_disk_add_class_undo_and_retrain_change_nothing_in_memory(scene, stripes_model, small_disk):  # noqa: F811
    srv = serve(scene, stripes_model, small_disk)
    try:
        url = srv.url
        s = post(url, "/sessions")["session"]
        for i in range(4):
            correct_box(url, BUILT, 66 + 4 * i, 10 + 25 * i, size=2, session=s)
        post(url, "/retrainModel", {"session": s})
        before = requests.get(f"{url}/sessions/{s}", timeout=10).json()
        shown = post(url, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"]
        model = srv.config.sessions.model(s)
        fill(small_disk)  # not a byte left
        for path, body in [
            ("/addClass", {"session": s, "name": "Quarry", "color": "#FF00FF"}),
            ("/retrainModel", {"session": s}),
            ("/doUndo", {"session": s}),
            ("/doUndo", {"session": s}),
            ("/resetModel", {"session": s}),
        ]:
            r = requests.post(url + path, json=body, timeout=120)
            assert r.status_code == 507 and "disk is full" in r.json()["error"], (path, r.status_code, r.text)
            assert requests.get(f"{url}/sessions/{s}", timeout=10).json() == before, path
            assert srv.config.sessions.model(s) is model, path  # the same model object: nothing swapped
        assert post(url, "/predPatch", {"extent": stripe_extent(FIELD), "session": s})["output_hard"] == shown
        for f in small_disk.glob("filler*"):
            f.unlink()
        assert (
            len(post(url, "/addClass", {"session": s, "name": "Quarry", "color": "#FF00FF"})["classes"]) == 5
        )
        assert post(url, "/doUndo", {"session": s})["undone"] == "retrain"  # the failed undos took nothing
    finally:
        srv.close()
        srv.config.jobs.close()
