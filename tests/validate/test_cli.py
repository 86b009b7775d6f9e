"""`python -m web_tool.validate`: a sample to label in a GIS, and reports against labelled points,
a reference raster, a dataset's labels, or a sample answered on the page; and, on the real
Chesapeake development set (skipped without ../shared), a batch map of real NAIP against its labels."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from tests.conftest import REPO, SHARED
from tests.validate.test_design import CLASSES, NAMES
from web_tool.mapping.export import NODATA
from web_tool.validate import assess
from web_tool.validate.__main__ import main
from web_tool.validate.design import allocate
from web_tool.validate.report import sample_report
from web_tool.validate.samples import SampleStore

CHESAPEAKE = SHARED / "data" / "chesapeake-wv-dev"
CHESAPEAKE_CODES = "1=Water,2=Forest,3=Field,4=Built,5=Built,6=Built,15="


def write_class_map(path, data: np.ndarray, names=tuple(NAMES), origin=(500_000, 4_300_000)):
    """A class map GeoTIFF as the exports write it (uint8, nodata 255, CLASSES tag, colour map)."""
    h, w = data.shape
    transform = rasterio.Affine(1, 0, origin[0], 0, -1, origin[1])
    profile = dict(
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="uint8",
        crs="EPSG:32618",
        nodata=NODATA,
        transform=transform,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(CLASSES=json.dumps(list(names)))
    return path


@pytest.fixture
def mapped_and_truth(tmp_path):
    """A 200 x 200 class map that is right for 85 % of pixels, and its truth as a label raster."""
    rng = np.random.default_rng(2)
    truth = rng.choice(4, size=(200, 200), p=[0.1, 0.3, 0.5, 0.1]).astype(np.uint8)
    mapped = np.where(rng.random(truth.shape) < 0.15, rng.integers(0, 4, truth.shape), truth).astype(np.uint8)
    mapped[:5] = NODATA
    return (
        write_class_map(tmp_path / "map.tif", mapped),
        write_class_map(tmp_path / "truth.tif", truth),
        mapped,
        truth,
    )


def test_sample_writes_points_to_label_without_the_map_class(mapped_and_truth, tmp_path, capsys):
    map_path, _, mapped, _ = mapped_and_truth
    assert main(["sample", str(map_path), "--total", "80", "--min_per_class", "10", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "wrote 80 points" in out and "seed 3" in out and "Water" in out
    points = json.loads((tmp_path / "map_sample.geojson").read_text())
    assert len(points["features"]) == 80
    for f in points["features"]:
        assert set(f["properties"]) == {"id", "reference"} and f["properties"]["reference"] is None
        assert f["geometry"]["type"] == "Point"
    again = tmp_path / "again.geojson"
    main(
        [
            "sample",
            str(map_path),
            "--total",
            "80",
            "--min_per_class",
            "10",
            "--seed",
            "3",
            "--out",
            str(again),
        ]
    )
    assert json.loads(again.read_text()) == points


def label_points(points_path, truth: np.ndarray, every_other_unsure: bool = False) -> None:
    """Fill each point's `reference` with the truth's class name there (what an interpreter does)."""
    from rasterio.warp import transform as transform_points

    collection = json.loads(points_path.read_text())
    lon, lat = zip(*(f["geometry"]["coordinates"] for f in collection["features"]), strict=True)
    xs, ys = transform_points("EPSG:4326", "EPSG:32618", lon, lat)
    for i, (f, x, y) in enumerate(zip(collection["features"], xs, ys, strict=True)):
        name = list(NAMES)[truth[int(4_300_000 - y), int(x - 500_000)]]
        f["properties"]["reference"] = "unsure" if every_other_unsure and i % 2 else name
    points_path.write_text(json.dumps(collection))


def test_report_of_labelled_points_prints_and_writes_json_and_csv(mapped_and_truth, tmp_path, capsys):
    map_path, _, mapped, truth = mapped_and_truth
    main(["sample", str(map_path), "--total", "120", "--min_per_class", "15", "--seed", "1"])
    points = tmp_path / "map_sample.geojson"
    label_points(points, truth)
    code = main(
        [
            "report",
            str(map_path),
            "--points",
            str(points),
            "--json",
            str(tmp_path / "r.json"),
            "--csv",
            str(tmp_path / "r.csv"),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "from 120 reference points" in text and "overall accuracy:" in text and "±" in text
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["kind"] == "points" and report["complete"] and report["n"] == 120
    counts = np.array(report["error_matrix"]["counts"])
    pixels = np.bincount(mapped[mapped != NODATA], minlength=4)
    assert counts.sum(axis=1).tolist() == allocate(pixels.tolist(), 120, 15)  # the sample's own design
    again = sample_report(CLASSES, pixels.tolist(), (pixels * 1e-6).tolist(), counts, "points")
    assert report["overall"] == pytest.approx(again["overall"])  # the same estimators, whatever the source
    for got, want in zip(report["classes"], again["classes"], strict=True):
        assert got["users"] == pytest.approx(want["users"]) and got["estimated_km2"] == pytest.approx(
            want["estimated_km2"]
        )
    rows = list(csv.reader((tmp_path / "r.csv").open()))
    assert (
        rows[0][0].startswith("error matrix") and ["overall_accuracy", "se", "ci95", "points", "kind"] in rows
    )


def test_unsure_points_are_left_out(mapped_and_truth, tmp_path, capsys):
    map_path, _, _, truth = mapped_and_truth
    main(["sample", str(map_path), "--total", "60", "--min_per_class", "6", "--seed", "2"])
    label_points(tmp_path / "map_sample.geojson", truth, every_other_unsure=True)
    main(
        [
            "report",
            str(map_path),
            "--points",
            str(tmp_path / "map_sample.geojson"),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n"] == 30 and any("30 points have no reference class" in n for n in report["notes"])


def test_report_against_a_reference_raster_with_codes(mapped_and_truth, tmp_path, capsys):
    map_path, _, mapped, truth = mapped_and_truth
    coded = write_class_map(tmp_path / "coded.tif", (truth + 1).astype(np.uint8))  # codes 1..4
    codes = "1=Water,2=Forest,3=Field,4=Built"
    code = main(
        [
            "report",
            str(map_path),
            "--reference",
            str(coded),
            "--codes",
            codes,
            "--json",
            str(tmp_path / "c.json"),
        ]
    )
    assert code == 0 and "pixels (census)" in capsys.readouterr().out
    counts = np.array(json.loads((tmp_path / "c.json").read_text())["error_matrix"]["counts"])
    valid = mapped != NODATA
    expected = np.bincount(mapped[valid].astype(int) * 4 + truth[valid], minlength=16).reshape(4, 4)
    assert np.array_equal(counts, expected)


def test_report_against_a_datasets_labels(mapped_and_truth, tmp_path, capsys):
    map_path, truth_path, _, _ = mapped_and_truth
    spec = {"here": {"paths": [str(truth_path)], "labels": [str(truth_path)]}}
    (tmp_path / "datasets.json").write_text(json.dumps(spec))
    assert (
        main(
            ["report", str(map_path), "--dataset", "here", "--datasets_json", str(tmp_path / "datasets.json")]
        )
        == 0
    )
    assert "overall accuracy: 0.8" in capsys.readouterr().out


def test_report_of_a_sample_answered_on_the_page(mapped_and_truth, tmp_path, capsys):
    map_path, _, _, _ = mapped_and_truth
    store = SampleStore(tmp_path / "state")
    sample = assess.new_sample(store, "0123456789abcdef", map_path, None, 40, 5, seed=9)
    for i in range(40):
        store.answer("0123456789abcdef", sample, i, 1)
    args = ["report", "--state_dir", str(tmp_path / "state"), "--job", "0123456789abcdef", "--sample", sample]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"sample {sample} from 40 stratified sample points" in out


@pytest.mark.parametrize(
    "args,words",
    [
        (["report", "missing.tif", "--reference", "x.tif"], "no such map"),
        (["report", "{map}", "--reference", "/nowhere/*.tif"], "no raster files"),
        (["report", "{map}", "--points", "/nowhere.geojson"], "cannot read the points"),
        (["report", "{map}", "--reference", "{map}", "--codes", "1=Wetland"], "no class of the map"),
        (["sample", "{map}", "--total", "3"], "cannot give each"),
        (["report", "--sample", "0123456789abcdef", "--job", "x", "--state_dir", "/no"], "no validation"),
    ],
)
def test_mistakes_are_one_line_errors_with_exit_code_2(mapped_and_truth, capsys, args, words):
    map_path = str(mapped_and_truth[0])
    assert main([a.replace("{map}", map_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and "Traceback" not in err


def test_a_map_without_a_classified_pixel_has_nothing_to_assess(tmp_path, capsys):
    empty = write_class_map(tmp_path / "empty.tif", np.full((20, 20), NODATA, np.uint8))
    assert main(["sample", str(empty)]) == 2
    assert "no classified pixel" in capsys.readouterr().err
    points = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [-75, 38.8]},
                "properties": {"reference": 1},
            }
        ],
    }
    (tmp_path / "p.geojson").write_text(json.dumps(points))
    assert main(["report", str(empty), "--points", str(tmp_path / "p.geojson")]) == 2
    assert "no classified pixel" in capsys.readouterr().err


def test_the_module_runs_as_a_command(mapped_and_truth):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "web_tool.validate",
            "report",
            str(mapped_and_truth[0]),
            "--reference",
            str(mapped_and_truth[1]),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Accuracy of" in done.stdout and "census" in done.stdout


# --------------------------------------------------------------------------- real imagery and labels


@pytest.mark.naip
@pytest.mark.slow
@pytest.mark.skipif(not CHESAPEAKE.exists(), reason="../shared/data/chesapeake-wv-dev is absent")
def test_a_batch_map_of_real_naip_against_the_chesapeake_labels(tmp_path, capsys):
    """Map two real patches with the demo model, compare with the 1 m Chesapeake labels on every
    pixel, then check that stratified samples answered from the labels (a perfect interpreter)
    estimate the census: 95 % intervals cover it in most of 60 draws."""
    from web_tool.batch import main as batch

    patches = [rasterio.open(CHESAPEAKE / "lc" / f"train_m_3708020_sw_17_1_{i}_lc.tif") for i in (0, 3)]
    rings = [
        [[[b.left, b.bottom], [b.right, b.bottom], [b.right, b.top], [b.left, b.top], [b.left, b.bottom]]]
        for b in (p.bounds for p in patches)
    ]
    aoi = {"type": "MultiPolygon", "coordinates": rings}
    (tmp_path / "aoi.geojson").write_text(json.dumps(aoi))
    out = tmp_path / "wv.tif"
    naip, aoi_path = str(CHESAPEAKE / "naip2014"), str(tmp_path / "aoi.geojson")
    args = ["--dataset", naip, "--aoi", aoi_path, "--aoi_crs", "26917", "--out", str(out), "--workers", "0"]
    assert batch([*args, "--quiet"]) == 0
    code = main(
        [
            "report",
            str(out),
            "--reference",
            str(CHESAPEAKE / "lc"),
            "--codes",
            CHESAPEAKE_CODES,
            "--json",
            str(tmp_path / "census.json"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    census = json.loads((tmp_path / "census.json").read_text())
    assert census["n"] == 2 * 256 * 256  # every mapped pixel has a label (no 15 = no data here)
    labels = np.concatenate([p.read(1).ravel() for p in patches])
    forest_km2 = (labels == 2).sum() * 1e-6
    assert census["classes"][1]["estimated_km2"]["value"] == pytest.approx(forest_km2)

    with rasterio.open(out) as src:
        from web_tool.validate.design import draw, map_classes, map_strata

        truth = np.full((src.height, src.width), 255, np.uint8)
        for p in patches:
            col, row = (int(round(v)) for v in ~src.transform * (p.bounds.left, p.bounds.top))
            lut = np.array([255, 0, 1, 2, 3, 3, 3] + [255] * 249, np.uint8)
            truth[row : row + 256, col : col + 256] = lut[p.read(1)]
        classes = map_classes(src)
        strata = map_strata(src, classes)
        points = allocate(strata.pixels, 200, 20)
        covered = []
        for seed in range(60):
            counts = np.zeros((4, 4), np.int64)
            for r, c, k in draw(src, points, strata.pixels, np.random.default_rng(seed)):
                counts[k, truth[r, c]] += 1
            report = sample_report(classes, strata.pixels, strata.km2, counts)
            est = report["classes"][1]["estimated_km2"]
            covered.append(abs(est["value"] - forest_km2) <= est["ci95"])
    assert np.mean(covered) >= 0.8, np.mean(covered)
