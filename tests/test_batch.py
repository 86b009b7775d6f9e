"""mapping + the batch CLI: window planning, no seams, nodata outside the AOI, Dask = one process."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import MultiPolygon, box, mapping

from tests.conftest import UTM18
from web_tool import batch
from web_tool.DataLoader import DataLoader
from web_tool.errors import ExtentError
from web_tool.geometry import Grid
from web_tool.imagery.datasets import DatasetConfig, from_cli
from web_tool.mapping.export import NODATA
from web_tool.mapping.pipeline import (
    AOI,
    WindowTask,
    aoi_from_geojson,
    default_window_px,
    outputs_beside,
    plan_map,
    predict_window,
    render_map,
    serial_results,
)
from web_tool.ServerModels.keras_model import KerasSegmentationModel

X0, Y0 = 500_000, 4_300_000
TWO_SQUARES = MultiPolygon([box(X0 + 3, Y0 + 70, X0 + 40, Y0 + 125), box(X0 + 90, Y0 + 2, X0 + 126, Y0 + 40)])


@pytest.fixture(scope="module")
def loader(tiny_dataset_dir):
    return DataLoader(from_cli([str(tiny_dataset_dir)])[0])


@pytest.fixture(scope="module")
def model(tiny_model_path, loader):
    return KerasSegmentationModel(tiny_model_path, loader.classes)


def read_map(path):
    with rasterio.open(path) as src:
        return src.read(1), src.transform, src.crs


def test_windows_tile_the_native_grid_once_and_skip_those_outside_the_aoi(loader):
    full = plan_map(loader, AOI(box(X0, Y0, X0 + 128, Y0 + 128), UTM18), window_px=20)
    assert full.grid.shape == (128, 128) and len(full.windows) == 7 * 7
    covered = np.zeros(full.grid.shape, int)
    for w in full.windows:
        covered[w.toslices()] += 1
    assert (covered == 1).all()
    sparse = plan_map(loader, AOI(TWO_SQUARES, UTM18), window_px=20)
    assert 0 < len(sparse.windows) < len(full.windows)


def test_the_default_window_fits_the_models_own_inference_window(model):
    assert default_window_px(model) + 2 * model.padding <= model.window


def test_windowed_prediction_has_no_seams(loader, model, tmp_path):
    aoi = AOI(box(X0 + 5, Y0 + 3, X0 + 123, Y0 + 127), UTM18)
    plan = plan_map(loader, aoi, window_px=16)  # 64 windows
    assert len(plan.windows) == 64
    outputs = outputs_beside(tmp_path / "map.tif")
    render_map(plan, serial_results(loader, model, plan), outputs, model.classes)
    windowed, transform, crs = read_map(outputs["cog"])
    # the same area in a single pass, with the same context around it
    pad = model.padding
    patch = loader.read(plan.grid.padded(pad))
    single = model.predict(patch.data)[pad:-pad, pad:-pad].argmax(-1)
    assert crs == UTM18 and transform == plan.grid.transform
    assert (windowed == single).mean() >= 0.999


def test_pixels_outside_a_multipolygon_are_nodata(loader, model, tmp_path):
    plan = plan_map(loader, AOI(TWO_SQUARES, UTM18), window_px=32)
    outputs = outputs_beside(tmp_path / "map.tif")
    stats = render_map(plan, serial_results(loader, model, plan), outputs, model.classes)
    classes, transform, _ = read_map(outputs["cog"])
    rows, cols = np.mgrid[0 : classes.shape[0], 0 : classes.shape[1]]
    xs, ys = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    import shapely

    inside = shapely.contains_xy(TWO_SQUARES, xs, ys).reshape(classes.shape)
    assert (classes[~inside] == NODATA).all() and (classes[inside] < 4).all()
    assert stats.pixels.sum() == inside.sum() == 37 * 55 + 36 * 38


def test_predict_window_marks_ground_without_imagery_as_nodata(loader, model):
    grid = Grid(UTM18, Affine(1.0, 0, X0 + 100, 0, -1.0, Y0 + 160), 60, 60)  # half off the dataset
    task = WindowTask(Window(0, 0, 60, 60), grid, box(*grid.extent.bounds), full=True)
    classes = predict_window(loader, model, task)
    # the dataset ends at x 128, y 128: rows 32.. and columns ..27 have imagery
    assert (
        (classes[32:, :28] < 4).all() and (classes[:32] == NODATA).all() and (classes[:, 28:] == NODATA).all()
    )


def test_an_aoi_much_larger_than_the_dataset_is_planned_only_where_imagery_is(loader):
    plan = plan_map(loader, AOI(box(X0 - 50_000, Y0 - 50_000, X0 + 50_000, Y0 + 50_000), UTM18), window_px=64)
    assert plan.grid.width <= 132 and plan.grid.height <= 132 and len(plan.windows) <= 9


def test_geojson_aois_accept_features_and_refuse_lines():
    feature = {"type": "Feature", "properties": {}, "geometry": mapping(TWO_SQUARES)}
    collection = {"type": "FeatureCollection", "features": [feature]}
    assert aoi_from_geojson(collection, UTM18).geometry.area == pytest.approx(TWO_SQUARES.area)
    with pytest.raises(ExtentError, match="Polygon"):
        aoi_from_geojson({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, UTM18)
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    assert aoi_from_geojson(bowtie, UTM18).geometry.area == pytest.approx(2)  # made valid


def write_aoi(tmp_path, geometry=TWO_SQUARES, epsg=32618):
    path = tmp_path / "aoi.geojson"
    crs = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": crs,
                "features": [{"type": "Feature", "geometry": mapping(geometry)}],
            }
        )
    )
    return path


def cli_args(tiny_dataset_dir, tiny_model_path, aoi, out, *extra):
    return [
        "--dataset",
        str(tiny_dataset_dir),
        "--aoi",
        str(aoi),
        "--model_fn",
        str(tiny_model_path),
        "--out",
        str(out),
        "--window",
        "32",
        "--quiet",
        *extra,
    ]


def test_cli_in_one_process_writes_the_same_map_as_the_server_code(
    tiny_dataset_dir, tiny_model_path, loader, model, tmp_path, capsys
):
    out = tmp_path / "cli" / "map.tif"
    args = cli_args(tiny_dataset_dir, tiny_model_path, write_aoi(tmp_path), out, "--workers", "0")
    assert batch.main(args) == 0
    assert "km²" in capsys.readouterr().out
    plan = plan_map(loader, AOI(TWO_SQUARES, UTM18), window_px=32)
    reference = outputs_beside(tmp_path / "ref.tif")
    render_map(plan, serial_results(loader, model, plan), reference, model.classes)
    assert (read_map(out)[0] == read_map(reference["cog"])[0]).all()
    assert {p.name for p in out.parent.iterdir()} == {
        "map.tif",
        "map.png",
        "map_stats.json",
        "map_stats.csv",
        "map.qml",
        "map.tif.aux.xml",
    }
    stats = json.loads((out.parent / "map_stats.json").read_text())
    assert sum(c["percent"] for c in stats["classes"]) == pytest.approx(100)


def test_cli_names_an_unknown_checkpoint_without_a_traceback(
    tiny_dataset_dir, tiny_model_path, tmp_path, capsys
):
    batch.worker_state.__globals__["_STATE"].clear()
    args = cli_args(
        tiny_dataset_dir,
        tiny_model_path,
        write_aoi(tmp_path),
        tmp_path / "m.tif",
        "--workers",
        "0",
        "--checkpoint",
        "0123456789abcdef",
        "--state_dir",
        str(tmp_path / "nowhere"),
    )
    assert batch.main(args) == 2
    err = capsys.readouterr().err
    assert "no checkpoints in" in err and "Traceback" not in err
    assert not (tmp_path / "m.tif").exists()


def test_cli_reports_an_aoi_outside_the_dataset_without_a_traceback(
    tiny_dataset_dir, tiny_model_path, tmp_path, capsys
):
    aoi = write_aoi(tmp_path, box(-100, 40, -99, 41), epsg=4326)
    args = cli_args(tiny_dataset_dir, tiny_model_path, aoi, tmp_path / "m.tif", "--workers", "0")
    assert batch.main(args) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_names_a_scheduler_it_cannot_reach(
    tiny_dataset_dir, tiny_model_path, tmp_path, monkeypatch, capsys
):
    from tests.conftest import free_port

    monkeypatch.setattr(batch, "SCHEDULER_TIMEOUT_S", 2)
    address = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there
    args = cli_args(
        tiny_dataset_dir, tiny_model_path, write_aoi(tmp_path), tmp_path / "m.tif", "--scheduler", address
    )
    assert batch.main(args) == 2
    assert f"error: cannot reach the Dask scheduler at {address}" in capsys.readouterr().err
    assert not (tmp_path / "m.tif").exists()


@pytest.mark.slow
def test_a_two_worker_dask_cluster_gives_the_same_map_as_one_process(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    aoi = write_aoi(tmp_path)
    single, dask = tmp_path / "single.tif", tmp_path / "dask.tif"
    assert batch.main(cli_args(tiny_dataset_dir, tiny_model_path, aoi, single, "--workers", "0")) == 0
    assert batch.main(cli_args(tiny_dataset_dir, tiny_model_path, aoi, dask, "--workers", "2")) == 0
    a, b = read_map(single), read_map(dask)
    assert (a[0] == b[0]).all() and a[1] == b[1] and a[2] == b[2]
    assert json.loads((tmp_path / "single_stats.json").read_text()) == json.loads(
        (tmp_path / "dask_stats.json").read_text()
    )


def test_cli_checkpoint_maps_with_the_sessions_tuned_model(
    app_server, tiny_dataset_dir, tiny_model_path, tmp_path
):
    """A session learns "Built" on a corner, saves a checkpoint; the CLI with --checkpoint maps what
    the session's /predTile maps, and not what the base model maps."""
    from web_tool.geometry import WEB_MERCATOR, Extent

    srv = app_server
    session = srv.post("/sessions", timeout=30).json()["session"]
    for x, y, value in ((5, 5, 3), (60, 60, 3), (100, 20, 0), (20, 100, 1)):
        ext = Extent(X0 + x, Y0 + y, X0 + x + 20, Y0 + y + 20, crs=UTM18).to_crs(WEB_MERCATOR)
        body = {
            "extent": dict(zip(("xmin", "ymin", "xmax", "ymax"), ext.bounds, strict=True)),
            "value": value,
            "session": session,
        }
        assert srv.post("/recordCorrection", json=body, timeout=30).status_code == 200
    assert srv.post("/retrainModel", json={"session": session}, timeout=120).status_code == 200
    checkpoint = srv.post("/checkpoints", json={"session": session}, timeout=30).json()["checkpoint"]

    app_server.config.jobs.window_px = 32
    aoi = AOI(box(X0 + 2, Y0 + 2, X0 + 126, Y0 + 126), UTM18)
    ext = aoi.to_crs(WEB_MERCATOR).extent
    body = {
        "extent": dict(zip(("xmin", "ymin", "xmax", "ymax"), ext.bounds, strict=True)),
        "session": session,
    }
    job = srv.post("/predTile", json=body, timeout=30).json()["job"]
    deadline = time.monotonic() + 60
    poll = {"session": session}
    while (status := srv.get(f"/jobs/{job}", params=poll, timeout=30).json())["state"] not in (
        "done",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "done", status
    (tmp_path / "server.tif").write_bytes(srv.get(status["outputs"]["cog"], timeout=30).content)

    aoi_file = write_aoi(tmp_path, box(*ext.bounds), epsg=3857)
    state_dir = app_server.config.state_dir
    tuned, base = tmp_path / "tuned.tif", tmp_path / "base.tif"
    args = cli_args(tiny_dataset_dir, tiny_model_path, aoi_file, tuned, "--workers", "0")
    assert batch.main([*args, "--checkpoint", checkpoint, "--state_dir", str(state_dir)]) == 0
    assert batch.main(cli_args(tiny_dataset_dir, tiny_model_path, aoi_file, base, "--workers", "0")) == 0
    server_map, tuned_map, base_map = (read_map(p)[0] for p in (tmp_path / "server.tif", tuned, base))
    assert (tuned_map == server_map).all()
    assert (tuned_map != base_map).any()


def test_cli_vector_writes_class_polygons_and_tags_name_the_model(
    tiny_dataset_dir, tiny_model_path, tmp_path
):
    import pyogrio

    out = tmp_path / "v" / "map.tif"
    args = cli_args(tiny_dataset_dir, tiny_model_path, write_aoi(tmp_path), out, "--workers", "0", "--vector")
    assert batch.main(args) == 0
    assert {"map.gpkg", "map.geojson", "map.qml", "map.tif.aux.xml"} <= {p.name for p in out.parent.iterdir()}
    assert pyogrio.read_info(out.with_suffix(".gpkg"))["features"] > 0
    with rasterio.open(out) as src:
        tags = src.tags()
    assert tags["MODEL_FILE"] == tiny_model_path.name and tags["DATASET"] and "CHECKPOINT" not in tags


def test_a_worker_that_cannot_read_some_imagery_is_told_which(tiny_dataset_dir, tiny_model_path, tmp_path):
    """What a worker reports of the files it can read, against the files the CLI reads."""
    from web_tool.mapping.workers import ModelSpec, WorkerSpec, worker_problems, worker_report

    files = sorted(str(p) for p in tiny_dataset_dir.glob("*.tif"))
    here = [*files[:2], str(tmp_path / "not-on-this-worker.tif")]  # as if 2 files were missing here
    model = ModelSpec("keras", str(tiny_model_path), (("a", "#000000"),) * 4)
    report = worker_report(WorkerSpec(DatasetConfig("tiny", here), model), {})
    problems = worker_problems(report, files)
    assert problems == [
        f"cannot read 2 of the dataset's 4 imagery files, e.g. {files[2]} (give every worker"
        " the same paths, or URLs)"
    ]
    assert worker_problems({**report, "files": files}, files) == []
