"""The measuring instrument of bench/hitl_real.py: scoring, grids, the filter bank and the forests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import devset  # noqa: E402
import forests  # noqa: E402
import hitl_real  # noqa: E402
from simulated_user import Click  # noqa: E402

UTM17 = CRS.from_epsg(26917)


def patch(truth: np.ndarray, image: np.ndarray | None = None) -> devset.Patch:
    h, w = truth.shape
    image = np.zeros((h, w, 4), np.uint8) if image is None else image
    return devset.Patch("t", image, truth.astype(np.int16), UTM17, Affine(1, 0, 535_000, 0, -1, 4_170_000))


def test_scores_count_unpredicted_pixels_wrong_and_average_iou_over_present_classes():
    truth = np.array([[1, 1, 2, 2], [1, 1, 2, -1]])
    pred = np.array([[1, 1, 2, 1], [-1, 0, 2, 3]])
    s = devset.score([patch(truth)], [pred], 4)
    assert s["accuracy"] == pytest.approx(4 / 7)  # the unlabelled pixel is left out, -1 is wrong
    assert s["iou"] == pytest.approx({1: 2 / 5, 2: 2 / 3})  # class 1: 2 right, 2 missed, 1 extra
    assert s["miou"] == pytest.approx((2 / 5 + 2 / 3) / 2)


def test_another_folder_of_the_same_layout_serves_with_its_own_looks_and_names(tmp_path):
    """Labels in lc/, any look folders beside it, images named after the label tile or not."""
    import rasterio

    profile = {
        "driver": "GTiff",
        "width": 8,
        "height": 8,
        "crs": UTM17,
        "transform": Affine(1, 0, 0, 0, -1, 8),
    }
    for folder in ("lc", "naip2019", "spring"):
        (tmp_path / folder).mkdir()
    with rasterio.open(tmp_path / "lc" / "tile_7_lc.tif", "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(np.full((1, 8, 8), 2, np.uint8))
    for path in (
        tmp_path / "naip2019" / "tile_7_naip2019.tif",
        tmp_path / "spring" / "tile_7_flown_2020.tif",
    ):
        with rasterio.open(path, "w", count=4, dtype="uint8", **profile) as dst:
            dst.write(np.full((4, 8, 8), 9, np.uint8))
    assert devset.available(tmp_path) and devset.looks(tmp_path) == ["naip2019", "spring"]
    for look in devset.looks(tmp_path):
        (tile,) = devset.load(look, ["Water", "Forest", "Field", "Built"], tmp_path)
        assert tile.name == "tile_7" and (tile.truth == 1).all() and (tile.image == 9).all()  # code 2: Forest
    args = hitl_real.parse_args(["--data", str(tmp_path)])
    assert args.look == ["naip2019"]
    with pytest.raises(SystemExit):
        hitl_real.parse_args(["--data", str(tmp_path), "--look", "naip2014"])


def test_a_web_mercator_answer_sampled_back_lands_on_the_native_pixels():
    rng = np.random.default_rng(0)
    truth = np.kron(rng.integers(0, 4, (8, 8)), np.ones((8, 8), int))  # 8 m fields
    p = patch(truth)
    xmin, ymin, xmax, ymax = p.bounds_3857
    width, height = round((xmax - xmin) / 1.26), round((ymax - ymin) / 1.26)  # ~1 m at 37.6 N
    answer = np.full((height, width), -1, np.int16)
    grid = Affine((xmax - xmin) / width, 0, xmin, 0, -(ymax - ymin) / height, ymax)
    reproject(
        p.truth,
        answer,
        src_transform=p.transform,
        src_crs=UTM17,
        dst_transform=grid,
        dst_crs=devset.WEB_MERCATOR,
        resampling=Resampling.nearest,
        src_nodata=-1,
    )
    back = p.to_native(answer)
    assert back.shape == truth.shape
    assert (back == truth).mean() > 0.97  # a nearest warp there and back moves some field edges a pixel
    ids = np.arange(height * width).reshape(height, width)  # which answer pixel each native pixel took
    rows, cols = np.divmod(p.to_native(ids), width)
    xs, ys = p.transform * (np.arange(64) + 0.5, np.full(64, 30.5))  # native row 30's centres
    mx, my = (np.asarray(v) for v in transform(UTM17, devset.WEB_MERCATOR, xs, ys))
    col, row = ~grid * (mx, my)
    assert (cols[30] == np.floor(col)).all() and (rows[30] == np.floor(row)).all()


def test_pixel_at_finds_the_native_pixel_under_a_point_in_another_crs():
    p = patch(np.zeros((32, 32)))
    x, y = p.centre(5, 7)
    (mx,), (my,) = transform(UTM17, devset.WEB_MERCATOR, [x], [y])
    assert p.pixel_at(mx, my, devset.WEB_MERCATOR) == (5, 7)
    assert p.pixel_at(mx - 1000, my, devset.WEB_MERCATOR) is None


def test_interior_pixels_have_one_label_in_their_3x3_neighbourhood():
    truth = np.full((6, 6), 1)
    truth[:, 3:] = 2
    truth[0, 0] = -1
    inner = devset.interior(truth)
    assert not inner[:, 2:4].any()  # both sides of the edge
    assert inner[2:, 0:2].all() and inner[:, 4:].all()
    assert not inner[0, 0] and not inner[1, 1]  # an unlabelled pixel and its neighbour


def test_eigenvalues_match_numpy():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 50))
    big, small = forests.eigenvalues(a, b, c)
    expected = np.linalg.eigvalsh(np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2))
    assert np.allclose(big, expected[:, 1]) and np.allclose(small, expected[:, 0])


def test_filter_bank_has_48_features_per_band_and_no_seam_at_the_edges():
    image = np.full((40, 40, 4), 120, np.uint8)
    features = forests.filter_bank(image)
    assert features.shape == (40, 40, 192) and features.dtype == np.float32
    smooth = features[..., 0]  # Gaussian smoothing, band 1, sigma 0.7: a flat image stays flat
    assert np.allclose(smooth, 120, atol=1e-3)
    assert np.abs(features[..., 1]).max() < 1e-3  # no gradient at the reflected edges either


def test_a_forest_learns_a_separable_patch_from_a_few_clicks():
    truth = np.zeros((32, 32), np.int16)
    truth[:, 16:] = 2
    image = np.zeros((32, 32, 4), np.uint8)
    image[..., 3] = np.where(truth == 2, 200, 40)  # NIR tells the classes apart
    clicks = [Click(0, r, c, int(truth[r, c])) for r, c in [(3, 3), (20, 5), (3, 25), (28, 28)]]
    pred = forests.PixelForest([forests.bands_ndvi(image)], seed=0).fit(clicks).predict()
    assert devset.score([patch(truth, image)], pred, 4)["accuracy"] == 1.0


def test_the_bench_says_so_and_exits_cleanly_without_the_real_data(tmp_path, capsys):
    assert hitl_real.main(["--quick", "--data", str(tmp_path / "absent")]) == 0
    assert "absent" in capsys.readouterr().out


def test_the_tables_have_a_row_per_round_with_medians_over_seeds():
    def run(acc: float) -> list[dict]:
        score = {"accuracy": acc, "miou": acc / 2, "iou": {1: acc, 2: 0.0}}
        return [{"clicks": c, "labelled": c + 6, "tool": score} for c in (0, 25, 50, 100)]

    results = {("naip2014", "wrong"): [run(0.1), run(0.3), run(0.2)], ("naip2014", "random"): [run(0.5)] * 3}
    curve = hitl_real.curve_table(results[("naip2014", "wrong")], ["tool"]).splitlines()
    assert len(curve) == 2 + 4 and curve[-1] == "| 100 | 106 | 0.200 | 0.100 |"
    strategies = hitl_real.strategy_table("naip2014", results).splitlines()
    assert len(strategies) == 2 + 4 and strategies[-1] == "| 100 | 0.200 / 0.100 | 0.500 / 0.250 |"
