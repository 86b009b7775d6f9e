"""The sampling design: allocation to map classes, and the stratified random draw of pixels from a
class map read window by window; and, through both, that the estimates are unbiased and their 95 %
intervals cover the truth about 95 % of the time."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.io import MemoryFile

from web_tool.mapping.export import NODATA, zone_area_m2
from web_tool.validate import design
from web_tool.validate.design import DesignError, allocate, draw, map_classes, map_strata, sample_map
from web_tool.validate.report import sample_report

NAMES = {"Water": "#0000ff", "Forest": "#008000", "Field": "#80ff80", "Built": "#806060"}
CLASSES = [{"name": n, "color": c} for n, c in NAMES.items()]


def class_map(
    data: np.ndarray,
    names: list[str] | None = None,
    crs="EPSG:32618",
    res=1.0,
    origin=(500_000, 4_300_000),
    colormap: dict | None = None,
    dtype="uint8",
) -> MemoryFile:
    """An in-memory class map GeoTIFF like an export's (uint8, nodata 255, CLASSES tag)."""
    memfile = MemoryFile()
    h, w = data.shape
    with memfile.open(
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype=dtype,
        crs=crs,
        nodata=NODATA,
        transform=Affine(res, 0, origin[0], 0, -res, origin[1]),
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as dst:
        dst.write(data.astype(dtype), 1)
        if names is not None:
            dst.update_tags(CLASSES=str(names).replace("'", '"'))
        if colormap is not None:
            dst.write_colormap(1, colormap)
    return memfile


# --------------------------------------------------------------------------- allocation


def test_allocation_gives_rare_classes_the_minimum_and_the_rest_in_proportion():
    points = allocate([200_000, 150_000, 3_200_000, 6_450_000], total=640, minimum=75)
    assert points[:2] == [75, 75] and sum(points) == 640
    assert points[3] / points[2] == pytest.approx(6_450_000 / 3_200_000, rel=0.02)


def test_a_class_smaller_than_the_minimum_gets_all_its_pixels_and_empty_classes_none():
    assert allocate([3, 0, 1000, 1000], total=100, minimum=20) == [3, 0, 49, 48]


def test_a_map_smaller_than_the_sample_gives_every_pixel():
    assert allocate([5, 7], total=200, minimum=20) == [5, 7]


@pytest.mark.parametrize(
    "pixels,total,minimum,words",
    [
        ([10, 10, 10], 20, 10, "at least 30 points"),
        ([0, 0], 10, 2, "no classified pixel"),
        ([100, 100], 50, 1, "at least 2"),
    ],
)
def test_impossible_allocations_say_what_to_change(pixels, total, minimum, words):
    with pytest.raises(DesignError, match=words):
        allocate(pixels, total, minimum)


@settings(max_examples=300, deadline=None)
@given(
    pixels=st.lists(st.integers(0, 10**6), min_size=1, max_size=8).filter(any),
    total=st.integers(1, 2000),
    minimum=st.integers(2, 60),
)
def test_allocation_sums_to_the_total_and_respects_the_minimum(pixels, total, minimum):
    floor = sum(min(minimum, p) for p in pixels if p)
    if total < floor:
        with pytest.raises(DesignError):
            allocate(pixels, total, minimum)
        return
    points = allocate(pixels, total, minimum)
    assert sum(points) == min(total, sum(pixels))
    for n, p in zip(points, pixels, strict=True):
        assert 0 <= n <= p and (p == 0) == (n == 0)
        assert n >= min(minimum, p)


# --------------------------------------------------------------------------- the draw


def test_the_draw_takes_the_allocated_pixels_of_each_class_once_each():
    rng = np.random.default_rng(0)
    data = rng.choice(4, size=(300, 400), p=[0.05, 0.25, 0.6, 0.1]).astype(np.uint8)
    data[:20] = NODATA
    with class_map(data) as mem, mem.open() as src:
        strata = map_strata(src, CLASSES)
        assert strata.pixels == np.bincount(data[data != NODATA], minlength=4).tolist()
        assert strata.km2 == pytest.approx([p * 1e-6 for p in strata.pixels])
        points = allocate(strata.pixels, 120, 10)
        drawn = draw(src, points, strata.pixels, np.random.default_rng(1))
    assert len(set((r, c) for r, c, _ in drawn)) == len(drawn) == 120
    assert all(data[r, c] == k for r, c, k in drawn)
    assert np.bincount([k for *_, k in drawn], minlength=4).tolist() == points


def test_every_pixel_of_a_class_is_equally_likely_across_windows(monkeypatch):
    monkeypatch.setattr(design, "WINDOW_PX", 8)  # many windows on a small map
    data = np.full((20, 20), 1, np.uint8)
    spots = [(0, 0), (3, 17), (9, 9), (19, 2), (19, 19)]
    for r, c in spots:
        data[r, c] = 0
    hits = {s: 0 for s in spots}
    with class_map(data) as mem, mem.open() as src:
        strata = map_strata(src, CLASSES[:2])
        for seed in range(2000):
            (r, c, k), *_ = [p for p in draw(src, [1, 0], strata.pixels, np.random.default_rng(seed))]
            hits[(r, c)] += 1
    assert all(300 <= n <= 500 for n in hits.values()), hits  # 400 expected each


def test_the_same_seed_draws_the_same_sample_and_another_seed_another():
    data = np.random.default_rng(3).integers(0, 3, size=(100, 100)).astype(np.uint8)
    with class_map(data, ["A", "B", "C"]) as mem, mem.open() as src:
        a = sample_map(src, map_classes(src), 60, 10, seed=7)[2]
        b = sample_map(src, map_classes(src), 60, 10, seed=7)[2]
        c = sample_map(src, map_classes(src), 60, 10, seed=8)[2]
    assert a == b and a != c


def test_points_are_pixel_centres_with_their_outline_in_lon_lat():
    data = np.zeros((10, 10), np.uint8)
    with class_map(data, ["A"]) as mem, mem.open() as src:
        strata, plan, points = sample_map(src, map_classes(src), 5, 2, seed=1)
    for p in points:
        col, row = p["x"] - 500_000, 4_300_000 - p["y"]
        assert col % 1 == 0.5 and row % 1 == 0.5 and 0 < col < 10 and 0 < row < 10
        lons, lats = zip(*p["outline"], strict=True)
        assert min(lons) < p["lon"] < max(lons) and min(lats) < p["lat"] < max(lats)
        assert p["outline"][0] == p["outline"][-1]
    assert plan == {"seed": 1, "total": 5, "min_per_class": 2, "points": [5]}


def test_map_classes_come_from_the_exported_tag_and_colour_map():
    data = np.array([[0, 1], [2, NODATA]], np.uint8)
    colormap = {0: (0, 0, 255, 255), 1: (0, 128, 0, 255)}
    with class_map(data, list(NAMES), colormap=colormap) as mem, mem.open() as src:
        classes = map_classes(src)
    assert [c["name"] for c in classes] == ["Water", "Forest", "Field", "Built"]
    assert classes[0]["color"] == "#0000ff" and classes[1]["color"] == "#008000"
    with class_map(data) as mem, mem.open() as src:
        assert [c["name"] for c in map_classes(src)] == ["class 0", "class 1", "class 2"]


# --------------------------------------------------------------------------- design + estimators


def test_sample_estimates_are_unbiased_and_their_intervals_cover_the_truth():
    """A map of 80 % accuracy and its truth: over many stratified samples of 150 points, the mean
    estimates are the census values and the 95 % intervals cover them about 95 % of the time."""
    rng = np.random.default_rng(11)
    truth = rng.choice(4, size=(400, 400), p=[0.08, 0.3, 0.52, 0.1]).astype(np.uint8)
    wrong = rng.random(truth.shape) < 0.2
    mapped = np.where(wrong, rng.integers(0, 4, truth.shape), truth).astype(np.uint8)
    true_area = np.bincount(truth.ravel(), minlength=4) * 1e-6
    true_oa = (truth == mapped).mean()
    with class_map(mapped) as mem, mem.open() as src:
        strata = map_strata(src, CLASSES)
        points = allocate(strata.pixels, 150, 20)
        estimates, covered = [], []
        for seed in range(300):
            counts = np.zeros((4, 4), np.int64)
            for r, c, k in draw(src, points, strata.pixels, np.random.default_rng(seed)):
                counts[k, truth[r, c]] += 1
            report = sample_report(CLASSES, strata.pixels, strata.km2, counts)
            got = [report["overall"], *(c["estimated_km2"] for c in report["classes"])]
            want = [true_oa, *true_area]
            estimates.append([g["value"] for g in got])
            covered.append([abs(g["value"] - w) <= g["ci95"] for g, w in zip(got, want, strict=True)])
    means, se = np.mean(estimates, axis=0), np.std(estimates, axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(means - [true_oa, *true_area]) < 4 * se + 1e-12), (means, [true_oa, *true_area])
    coverage = np.mean(covered, axis=0)
    assert np.all((coverage > 0.88) & (coverage < 0.995)), coverage


def test_a_class_map_in_a_geographic_crs_weighs_each_pixel_by_its_ground_area():
    data = np.zeros((80, 10), np.uint8)
    data[40:] = 1  # as many pixels of each class; class 0 nearer the pole
    with class_map(data, ["A", "B"], crs="EPSG:4326", res=0.5, origin=(10, 60)) as mem, mem.open() as src:
        strata = map_strata(src, CLASSES[:2])
    assert strata.pixels == [400, 400]
    assert strata.km2[0] == pytest.approx(zone_area_m2(40, 60, 5, 6378137, 298.257223563) / 1e6, rel=1e-9)
    assert strata.km2[1] == pytest.approx(zone_area_m2(20, 40, 5, 6378137, 298.257223563) / 1e6, rel=1e-9)
    assert strata.weights[0] < 0.5 < strata.weights[1]
