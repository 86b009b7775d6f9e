"""Accuracy assessment, in-process: a validation sample of a finished /predTile map, answers that
survive a restart and never become corrections, the report as JSON and CSV, and the same report
against a reference (the dataset's labels, an uploaded GeoTIFF, GeoJSON points)."""

from __future__ import annotations

import base64
import csv
import io
import json
import sqlite3
import threading

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import InProcessServer, build_app, make_geotiff
from tests.http.test_api import call
from tests.http.test_fuzz import JSON, assert_clean, post
from tests.mapping.test_jobs_api import polygon_3857, submit, wait_for
from web_tool.mapping.jobs import JobResult

X0, Y0 = 500_000, 4_300_000  # the tiny dataset: 128 x 128 px of 1 m, UTM 18N


@pytest.fixture
def done_job(app_server):
    app_server.config.jobs.window_px = 48
    return wait_for(app_server, submit(app_server, {"geometry": polygon_3857(), "crs": 3857}))


def new_sample(server, job, **body):
    status, _, sample = call(
        server, f"/jobs/{job}/samples", {"total": 30, "min_per_class": 3, "seed": 5, **body}
    )
    assert status == 201, sample
    return sample


def class_map(server, job) -> tuple[np.ndarray, rasterio.Affine]:
    status, _, data = call(server, job["outputs"]["cog"])
    assert status == 200
    with rasterio.MemoryFile(data) as mem, mem.open() as src:
        return src.read(1), src.transform


def answer(server, job, sample, point, value):
    return call(server, f"/jobs/{job}/samples/{sample}/answers", {"point": point, "answer": value})


def test_a_sample_is_stratified_by_map_class_and_hides_the_map_class_until_answered(app_server, done_job):
    job = done_job["job"]
    sample = new_sample(app_server, job)
    classes, pixels = done_job["stats"]["classes"], [c["pixels"] for c in done_job["stats"]["classes"]]
    assert [s["pixels"] for s in sample["strata"]] == pixels
    assert [s["name"] for s in sample["strata"]] == [c["name"] for c in classes]
    points_per_class = [s["points"] for s in sample["strata"]]
    assert sum(points_per_class) == sample["total"] == 30
    assert all(n >= min(3, p) and (n == 0) == (p == 0) for n, p in zip(points_per_class, pixels, strict=True))
    assert sample["progress"] == {"points": 30, "pending": 30, "answered": 0, "unsure": 0, "skipped": 0}
    status, _, full = call(app_server, f"/jobs/{job}/samples/{sample['sample']}")
    assert status == 200 and len(full["points"]) == 30
    assert all(p["map_class"] is None and p["status"] == "pending" for p in full["points"])
    assert sample["next"] == full["points"][0]

    data, transform = class_map(app_server, done_job)
    seen = np.zeros(len(classes), int)
    for p in full["points"]:
        status, _, reply = answer(app_server, job, sample["sample"], p["index"], 0)
        assert status == 200
        col, row = ~transform * (p["x"], p["y"])
        assert reply["point"]["map_class"] == data[int(row), int(col)]  # revealed: the map's own class there
        seen[reply["point"]["map_class"]] += 1
    assert seen.tolist() == points_per_class
    assert reply["next"] is None and reply["progress"]["answered"] == 30


def test_answers_survive_a_restart_and_the_walk_resumes_where_it_stopped(
    app_server, done_job, tiny_dataset_dir, tiny_model_path, tmp_path
):
    job = done_job["job"]
    sample = new_sample(app_server, job)["sample"]
    assert answer(app_server, job, sample, 0, "skip")[0] == 200
    assert answer(app_server, job, sample, 1, 2)[0] == 200
    assert answer(app_server, job, sample, 2, "unsure")[0] == 200
    restarted = InProcessServer(build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path)[0])
    try:
        status, _, got = call(restarted, f"/jobs/{job}/samples/{sample}")
        assert status == 200
        assert [p["status"] for p in got["points"][:4]] == ["skipped", "answered", "unsure", "pending"]
        assert got["points"][1]["answer"] == 2 and got["points"][1]["map_class"] is not None
        assert got["points"][0]["map_class"] is None  # skipped: still hidden
        assert got["next"]["index"] == 3  # the first pending point; the skipped one comes last
        for p in got["points"][3:]:
            answer(restarted, job, sample, p["index"], 1)
        assert call(restarted, f"/jobs/{job}/samples/{sample}")[2]["next"]["index"] == 0
        status, _, listed = call(restarted, f"/jobs/{job}/samples")
        assert status == 200 and [s["sample"] for s in listed] == [sample]
    finally:
        restarted.close()


def test_validation_answers_are_kept_apart_from_corrections(app_server, done_job, tmp_path):
    job = done_job["job"]
    sample = new_sample(app_server, job)
    for p in call(app_server, f"/jobs/{job}/samples/{sample['sample']}")[2]["points"][:10]:
        answer(app_server, job, sample["sample"], p["index"], 1)
    assert call(app_server, "/sessions/default")[2]["corrections"] == 0
    with sqlite3.connect(tmp_path / "state" / "hitl.sqlite") as hitl:
        assert hitl.execute("SELECT COUNT(*) FROM corrections").fetchone()[0] == 0
    with sqlite3.connect(tmp_path / "state" / "validation.sqlite") as validation:
        assert validation.execute("SELECT COUNT(*) FROM points WHERE status = 'answered'").fetchone()[0] == 10


def test_the_report_gives_the_error_matrix_accuracies_and_areas_as_json_and_csv(app_server, done_job):
    job = done_job["job"]
    sample = new_sample(app_server, job, total=40)
    points = call(app_server, f"/jobs/{job}/samples/{sample['sample']}")[2]["points"]
    status, _, early = call(app_server, f"/jobs/{job}/samples/{sample['sample']}/report")
    assert status == 200 and early["complete"] is False and early["overall"]["value"] is None
    truth = {}
    for i, p in enumerate(points):  # the map is right except at every third point, where it is class 3
        reply = answer(app_server, job, sample["sample"], p["index"], 3 if i % 3 == 0 else 0)[2]["point"]
        truth[p["index"]] = (reply["map_class"], 3 if i % 3 == 0 else reply["map_class"])
        if i % 3:
            answer(app_server, job, sample["sample"], p["index"], reply["map_class"])
    status, _, report = call(app_server, f"/jobs/{job}/samples/{sample['sample']}/report")
    assert status == 200 and report["complete"] and report["kind"] == "sample" and report["n"] == 40
    expected = np.zeros((4, 4), int)
    for m, r in truth.values():
        expected[m, r] += 1
    assert report["error_matrix"]["counts"] == expected.tolist()
    km2 = [c["km2"] for c in done_job["stats"]["classes"]]
    assert [c["mapped_km2"] for c in report["classes"]] == pytest.approx(km2)
    assert sum(c["estimated_km2"]["value"] for c in report["classes"]) == pytest.approx(sum(km2))
    assert 0 < report["overall"]["value"] < 1 and report["overall"]["ci95"] > 0
    assert np.array(report["error_matrix"]["proportions"]).sum() == pytest.approx(1)

    status, headers, text = call(app_server, f"/jobs/{job}/samples/{sample['sample']}/report.csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(text.decode())))
    assert rows[1] == ["map \\ reference", "Water", "Forest", "Field", "Built", "total"]
    assert [int(v) for v in rows[2][1:5]] == expected[0].tolist()
    overall = rows[rows.index(["overall_accuracy", "se", "ci95", "points", "kind"]) + 1]
    assert float(overall[0]) == pytest.approx(report["overall"]["value"], rel=1e-5)


def test_answers_in_any_order_give_the_same_report(app_server, done_job):
    job = done_job["job"]
    a, b = new_sample(app_server, job)["sample"], new_sample(app_server, job)["sample"]  # same seed
    points = call(app_server, f"/jobs/{job}/samples/{a}")[2]["points"]
    values = {p["index"]: p["index"] % 4 for p in points}
    for index in sorted(values):
        answer(app_server, job, a, index, values[index])
    for index in np.random.default_rng(1).permutation(sorted(values)):
        answer(app_server, job, b, int(index), values[int(index)])
    ra = call(app_server, f"/jobs/{job}/samples/{a}/report")[2]
    rb = call(app_server, f"/jobs/{job}/samples/{b}/report")[2]
    assert {**ra, "sample": None} == {**rb, "sample": None}


@pytest.mark.parametrize(
    "body,status,words",
    [
        ({"total": 3, "min_per_class": 3}, 400, "at least"),
        ({"total": 10**6}, 400, "at most 5000"),
        ({"min_per_class": 1}, 400, "min_per_class"),
        ({"total": "30"}, 400, "total"),
        ({"total": True}, 400, "total"),
    ],
)
def test_impossible_samples_are_refused_with_what_to_change(app_server, done_job, body, status, words):
    got, _, reply = call(app_server, f"/jobs/{done_job['job']}/samples", body)
    assert got == status and words in reply["error"], reply


@pytest.mark.parametrize(
    "body,status,words",
    [
        ({"point": 0, "answer": 4}, 400, "class index 0..3"),
        ({"point": 0, "answer": True}, 400, "answer"),
        ({"point": 0, "answer": "maybe"}, 400, "answer"),
        ({"point": 99, "answer": 1}, 404, "no point 99"),
        ({"answer": 1}, 400, "point"),
    ],
)
def test_bad_answers_are_refused_and_change_nothing(app_server, done_job, body, status, words):
    job = done_job["job"]
    sample = new_sample(app_server, job)["sample"]
    got, _, reply = call(app_server, f"/jobs/{job}/samples/{sample}/answers", body)
    assert got == status and words in reply["error"], reply
    assert call(app_server, f"/jobs/{job}/samples/{sample}")[2]["progress"]["pending"] == 30


def test_unknown_jobs_and_samples_are_404_and_unfinished_maps_cannot_be_sampled(app_server, done_job):
    job = done_job["job"]
    sample = new_sample(app_server, job)["sample"]
    assert call(app_server, "/jobs/0123456789abcdef/samples", {})[0] == 404
    assert call(app_server, f"/jobs/{job}/samples/0123456789abcdef")[0] == 404
    assert call(app_server, f"/jobs/{job}/samples/..%2Fjobs")[0] == 404
    release = threading.Event()

    def unfinished(ctx):
        release.wait(10)
        return JobResult({})

    running = app_server.config.jobs.submit(unfinished)
    try:
        wait_for(app_server, running, states=("running",))
        status, _, reply = call(app_server, f"/jobs/{running}/samples", {})
        assert status == 400 and "running" in reply["error"] and "finished map" in reply["error"]
        assert call(app_server, f"/jobs/{running}/samples/{sample}")[0] == 400
    finally:
        release.set()
    other = wait_for(app_server, submit(app_server, {"geometry": polygon_3857(), "crs": 3857}))
    assert call(app_server, f"/jobs/{other['job']}/samples/{sample}")[0] == 404  # a sample of another job
    no_map = wait_for(app_server, app_server.config.jobs.submit(lambda ctx: JobResult({})))
    status, _, reply = call(app_server, f"/jobs/{no_map['job']}/samples", {})
    assert status == 400 and "no class map" in reply["error"]


# --------------------------------------------------------------------------- against a reference


@pytest.fixture
def labelled_server(tiny_dataset_dir, tiny_model_path, tmp_path):
    """The tiny dataset described in a datasets.json with a label raster (quadrants of classes 0..3)."""
    labels = np.zeros((128, 128), np.uint8)
    labels[:64, 64:], labels[64:, :64], labels[64:, 64:] = 1, 2, 3
    make_geotiff(
        tmp_path / "labels.tif", (X0, Y0, X0 + 128, Y0 + 128), size=(128, 128), bands=1, data=labels[None]
    )
    spec = {"tiny": {"paths": [str(tiny_dataset_dir / "*.tif")], "labels": [str(tmp_path / "labels.tif")]}}
    (tmp_path / "datasets.json").write_text(json.dumps(spec))
    app, config = build_app([], tiny_model_path, tmp_path, datasets_json=str(tmp_path / "datasets.json"))
    config.jobs.window_px = 48
    server = InProcessServer(app)
    server.labels = labels
    yield server
    server.close()
    config.jobs.close()


def expected_census(server, job, labels) -> np.ndarray:
    data, transform = class_map(server, job)
    col0, row0 = (int(round(v)) for v in ~transform * (X0, Y0 + 128))
    counts = np.zeros((4, 4), int)
    for (r, c), k in np.ndenumerate(data):
        if k != 255:
            counts[k, labels[r - row0, c - col0]] += 1
    return counts


def test_the_map_against_the_datasets_labels_is_a_census_on_its_grid(labelled_server):
    job = wait_for(labelled_server, submit(labelled_server, {"geometry": polygon_3857(), "crs": 3857}))
    status, _, report = call(labelled_server, f"/jobs/{job['job']}/reference", {"labels": True})
    assert status == 200 and report["kind"] == "census", report
    counts = expected_census(labelled_server, job, labelled_server.labels)
    assert report["error_matrix"]["counts"] == counts.tolist()
    assert report["overall"]["value"] == pytest.approx(np.trace(counts) / counts.sum())
    assert [c["estimated_km2"]["value"] for c in report["classes"]] == pytest.approx(
        counts.sum(axis=0) * 1e-6
    )
    status, headers, text = call(
        labelled_server, f"/jobs/{job['job']}/reference", {"labels": True, "format": "csv"}
    )
    assert status == 200 and headers["Content-Type"].startswith("text/csv") and b"census" in text


def test_an_uploaded_reference_geotiff_with_codes(app_server, done_job, tmp_path):
    labels = np.full((128, 128), 12, np.uint8)  # everything "12", which the codes call Forest
    labels[:10] = 99  # a value that names no class
    path = make_geotiff(
        tmp_path / "ref.tif", (X0, Y0, X0 + 128, Y0 + 128), size=(128, 128), bands=1, data=labels[None]
    )
    body = {"raster": base64.b64encode(path.read_bytes()).decode(), "codes": {"12": "Forest", "99": None}}
    status, _, report = call(app_server, f"/jobs/{done_job['job']}/reference", body)
    assert status == 200, report
    counts = np.array(report["error_matrix"]["counts"])
    assert counts[:, [0, 2, 3]].sum() == 0 and counts[:, 1].sum() > 0
    assert report["classes"][1]["producers"]["value"] is not None
    bad = {"raster": base64.b64encode(b"not a tiff").decode()}
    status, _, reply = call(app_server, f"/jobs/{done_job['job']}/reference", bad)
    assert status == 400 and "not a GeoTIFF" in reply["error"]
    damaged = path.read_bytes()
    damaged = damaged[: len(damaged) - 200] + bytes(200)  # the last tiles' bytes zeroed
    status, _, reply = call(
        app_server, f"/jobs/{done_job['job']}/reference", {"raster": base64.b64encode(damaged).decode()}
    )
    assert status == 400 and "cannot be read" in reply["error"], reply
    status, _, reply = call(app_server, f"/jobs/{done_job['job']}/reference", {"labels": True})
    assert status == 400 and "no label rasters" in reply["error"]


def test_reference_points_as_geojson_with_a_class_property(app_server, done_job):
    from rasterio.warp import transform as transform_points

    job = done_job["job"]
    data, transform = class_map(app_server, done_job)
    rows, cols = np.nonzero(data != 255)
    pick = np.random.default_rng(0).choice(rows.size, 50, replace=False)
    xs, ys = transform * (cols[pick] + 0.5, rows[pick] + 0.5)
    lon, lat = transform_points("EPSG:32618", "EPSG:4326", xs, ys)
    names = ["Water", "Forest", "Field", "Built"]
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [a, b]},
            "properties": {"truth": names[int(data[r, c])]},
        }
        for a, b, r, c in zip(lon, lat, rows[pick], cols[pick], strict=True)
    ]
    body = {"points": {"type": "FeatureCollection", "features": features}, "property": "truth"}
    status, _, report = call(app_server, f"/jobs/{job}/reference", body)
    assert status == 200 and report["kind"] == "points" and report["n"] == 50, report
    assert report["overall"]["value"] == pytest.approx(1.0)  # the points agree with the map
    status, _, reply = call(app_server, f"/jobs/{job}/reference", {"points": {"type": "Point"}})
    assert status == 400 and "FeatureCollection" in reply["error"]
    status, _, reply = call(app_server, f"/jobs/{job}/reference", {"labels": True, "points": body["points"]})
    assert status == 400 and "exactly one" in reply["error"]


# --------------------------------------------------------------------------- fuzzing the new bodies


@pytest.fixture(scope="module")
def fuzz_target(tiny_dataset_dir, tiny_model_path, tmp_path_factory):
    """A server with a finished job and a sample of it, for the whole module."""
    app, config = build_app([f"tiny={tiny_dataset_dir}"], tiny_model_path, tmp_path_factory.mktemp("vfuzz"))
    config.jobs.window_px = 64
    server = InProcessServer(app)
    job = wait_for(server, submit(server, {"geometry": polygon_3857(), "crs": 3857}))["job"]
    sample = new_sample(server, job)["sample"]
    yield server, job, sample
    server.close()
    config.jobs.close()


VALID_BODIES = {
    "samples": {"total": 12, "min_per_class": 2, "seed": 1},
    "answers": {"point": 0, "answer": 1},
    "reference": {"points": {"type": "FeatureCollection", "features": []}, "property": "class"},
}
FIELDS = [
    "total",
    "min_per_class",
    "seed",
    "point",
    "answer",
    "labels",
    "raster",
    "points",
    "property",
    "crs",
    "codes",
    "format",
    "session",
    "features",
    "type",
    "geometry",
    "coordinates",
]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    endpoint=st.sampled_from(sorted(VALID_BODIES)),
    changes=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4),
)
def test_any_values_in_the_validation_bodies_get_an_answer_or_a_json_error(fuzz_target, endpoint, changes):
    server, job, sample = fuzz_target
    path = {
        "samples": f"/jobs/{job}/samples",
        "answers": f"/jobs/{job}/samples/{sample}/answers",
        "reference": f"/jobs/{job}/reference",
    }[endpoint]
    body = {**VALID_BODIES[endpoint], **changes}
    assert_clean(*post(server, path, body), what=f"POST {path} {body!r:.300}")
