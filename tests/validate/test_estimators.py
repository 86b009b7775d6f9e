"""The stratified estimators against the numerical example of Olofsson et al. (2014), and their
properties (a perfect map, incomplete samples; the order of the points: test_validate_reference,
test_validate_api).

The example (Olofsson, Foody, Herold, Stehman, Woodcock, Wulder 2014, "Good practices for estimating
area and assessing accuracy of land change", Remote Sensing of Environment 148: 42-57, section 5):
a change map of 10,000,000 Landsat pixels (30 m) in four classes, a stratified random sample of 640
pixels. Table 8 gives the sample counts and the mapped pixels; Table 9 the error matrix in area
proportions; p. 54 the accuracies and the areas in hectares with 95 % confidence intervals
(± 1.96 standard errors). The figures below are the paper's, to the digits it prints them (the
paper was read through the public implementations and tutorials that reproduce it: the R package
mapaccuracy's `olofsson()` example, PyMapAccuracy's tests and several validation tutorials).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from web_tool.validate.estimators import Z95, IncompleteSample, stratified
from web_tool.validate.report import sample_report

# Table 8: rows = map class, columns = reference class (deforestation, forest gain, stable forest,
# stable non-forest); mapped area in 30 m pixels
TABLE_8 = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
MAPPED_PIXELS = np.array([200_000, 150_000, 3_200_000, 6_450_000])
HECTARES_PER_PIXEL = 0.09
# Table 9 (estimated area proportions): the cells the paper prints, and its column totals
TABLE_9_CELLS = {(0, 0): 0.0176, (0, 2): 0.0013, (1, 1): 0.0110, (2, 2): 0.2967, (3, 3): 0.6212}
TABLE_9_COLUMN_TOTALS = [0.0235, 0.0130, 0.3175, 0.6460]
# p. 54, as value ± 95 % CI half-width
USERS = [(0.88, 0.07), (0.73, 0.10), (0.93, 0.04), (0.96, 0.02)]
PRODUCERS = [0.75, 0.85, 0.93, 0.96]
OVERALL = (0.95, 0.02)
AREAS_HA = [(21_158, 6_158), (11_686, 3_756), (285_770, 15_510), (581_386, 16_282)]


@pytest.fixture(scope="module")
def example():
    return stratified(TABLE_8, MAPPED_PIXELS)


def test_table_9_error_matrix_of_area_proportions(example):
    assert example.weights.tolist() == pytest.approx([0.020, 0.015, 0.320, 0.645])
    assert example.counts.sum(axis=1).tolist() == [75, 75, 165, 325]
    for (i, j), printed in TABLE_9_CELLS.items():
        assert round(example.proportions[i, j], 4) == printed
    assert [round(v, 4) for v in example.proportions.sum(axis=0)] == TABLE_9_COLUMN_TOTALS
    assert example.proportions.sum() == pytest.approx(1)


def test_users_and_overall_accuracy_with_their_intervals(example):
    for estimate, (value, ci) in zip(example.users, USERS, strict=True):
        assert (round(estimate.value, 2), round(estimate.ci95, 2)) == (value, ci)
    assert (round(example.overall.value, 2), round(example.overall.ci95, 2)) == OVERALL
    assert Z95 == 1.96  # the paper's multiplier


def test_producers_accuracy(example):
    assert [round(e.value, 2) for e in example.producers] == PRODUCERS
    # Eq. 7's intervals: deforestation ± 0.21 and stable forest ± 0.03, as printed. For forest gain and
    # stable non-forest one secondary source reports the paper printing ± 0.23 and ± 0.01; eq. 7 (and
    # the mapaccuracy and PyMapAccuracy packages) give the values pinned here.
    assert [round(e.ci95, 3) for e in example.producers] == [0.213, 0.254, 0.034, 0.018]


def test_areas_in_hectares_with_95_percent_intervals(example):
    total_ha = MAPPED_PIXELS.sum() * HECTARES_PER_PIXEL
    for estimate, (area, ci) in zip(example.areas, AREAS_HA, strict=True):
        assert (round(estimate.value * total_ha), round(estimate.ci95 * total_ha)) == (area, ci)
    # the deforestation area in pixels, as the paper works it out: 235,086 ± 68,418
    pixels = MAPPED_PIXELS.sum()
    assert round(example.areas[0].value * pixels) == 235_086
    assert round(example.areas[0].ci95 * pixels) == 68_418


def test_the_report_gives_the_example_in_km2_beside_the_mapped_area():
    classes = [{"name": n, "color": "#000000"} for n in ("defor.", "gain", "forest", "non-forest")]
    km2 = (MAPPED_PIXELS * HECTARES_PER_PIXEL / 100).tolist()
    report = sample_report(classes, MAPPED_PIXELS.tolist(), km2, TABLE_8)
    deforestation = report["classes"][0]
    assert deforestation["mapped_km2"] == pytest.approx(180.0)  # the map says 18,000 ha
    assert round(deforestation["estimated_km2"]["value"] * 100) == 21_158  # the sample says 21,158 ha
    assert round(report["overall"]["value"], 4) == 0.9465 and report["complete"] and report["n"] == 640


# --------------------------------------------------------------------------- properties


@st.composite
def samples(draw, perfect: bool = False):
    """(counts K x K, mapped pixels K): every mapped class with at least 2 points."""
    k = draw(st.integers(2, 6))
    pixels = np.array(draw(st.lists(st.integers(1, 10**7), min_size=k, max_size=k)))
    rows = []
    for i in range(k):
        n = draw(st.integers(2, 60))
        if perfect:
            row = np.zeros(k, dtype=np.int64)
            row[i] = n
        else:
            row = np.array(draw(st.lists(st.integers(0, 30), min_size=k, max_size=k)))
            row[i] += 2 - min(2, row.sum())  # at least two points in the stratum
        rows.append(row)
    return np.array(rows), pixels


@settings(max_examples=200, deadline=None)
@given(sample=samples(perfect=True))
def test_a_perfect_map_has_accuracy_1_with_zero_width_intervals_and_its_own_areas(sample):
    counts, pixels = sample
    a = stratified(counts, pixels)
    for e in [a.overall, *a.users, *a.producers]:
        assert e.value == pytest.approx(1.0) and e.ci95 == 0.0
    shares = pixels / pixels.sum()
    for e, share in zip(a.areas, shares, strict=True):
        assert e.value == pytest.approx(share) and e.ci95 == 0.0


@settings(max_examples=200, deadline=None)
@given(sample=samples())
def test_estimates_are_proportions_and_areas_add_up_to_the_whole(sample):
    counts, pixels = sample
    a = stratified(counts, pixels)
    assert sum(e.value for e in a.areas) == pytest.approx(1.0)
    assert a.proportions.sum(axis=1) == pytest.approx(pixels / pixels.sum())  # rows keep the map's areas
    for e in [a.overall, *a.users, *(p for p in a.producers if p.value is not None)]:
        assert -1e-12 <= e.value <= 1 + 1e-12 and e.se >= 0


def test_a_mapped_class_without_points_leaves_the_estimates_unknown():
    counts = np.array([[5, 1], [0, 0]])
    with pytest.raises(IncompleteSample) as info:
        stratified(counts, [10, 90])
    assert info.value.missing == [1]
    report = sample_report([{"name": "A"}, {"name": "B"}], [10, 90], [1.0, 9.0], counts)
    assert report["complete"] is False and report["overall"]["value"] is None
    assert any("B" in note for note in report["notes"])


def test_one_point_in_a_class_gives_estimates_but_no_intervals():
    a = stratified(np.array([[1, 0], [3, 7]]), [10, 90])
    assert a.overall.value == pytest.approx(0.1 + 0.9 * 0.7) and a.overall.se is None and not a.intervals


def test_a_class_sampled_whole_is_known_exactly_even_from_one_point():
    """A map with one stray pixel of a class still gets intervals when that pixel was sampled."""
    counts = np.array([[1, 0], [3, 7]])
    a = stratified(counts, [1, 90], sizes=[1, 90_000])
    assert a.intervals and a.users[0].value == 1.0 and a.users[0].se == 0.0
    # the whole-sampled stratum adds nothing: the overall variance is the other stratum's alone
    w = 90 / 91
    assert a.overall.se == pytest.approx(np.sqrt(w**2 * 0.7 * 0.3 / 9 * (1 - 10 / 90_000)))
    assert not stratified(counts, [1, 90]).intervals  # without the sizes nothing says it was whole


def test_the_finite_population_correction_scales_each_stratum_by_its_unsampled_share():
    counts = np.array([[3, 1], [1, 3]])
    plain = stratified(counts, [8, 8])
    half = stratified(counts, [8, 8], sizes=[8, 8])  # half of each stratum's pixels sampled
    assert half.overall.value == plain.overall.value
    for a, b in zip(
        [half.overall, *half.users, *half.producers, *half.areas],
        [plain.overall, *plain.users, *plain.producers, *plain.areas],
        strict=True,
    ):
        assert a.se**2 == pytest.approx(0.5 * b.se**2)
    # strata far larger than their samples (the paper's example) leave the printed figures unchanged
    big = stratified(TABLE_8, MAPPED_PIXELS, sizes=MAPPED_PIXELS)
    assert [round(e.ci95, 2) for e in big.users] == [ci for _, ci in USERS]
    with pytest.raises(ValueError, match="at least as many"):
        stratified(counts, [8, 8], sizes=[3, 8])


def test_a_class_without_mapped_area_is_no_stratum():
    with_empty = stratified(np.array([[5, 1, 0], [2, 8, 0], [0, 0, 0]]), [40, 60, 0])
    without = stratified(np.array([[5, 1], [2, 8]]), [40, 60])
    assert with_empty.overall == without.overall
    assert with_empty.users[2].value is None and with_empty.producers[2].value is None
    assert with_empty.areas[2].value == 0
