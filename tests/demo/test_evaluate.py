"""`make evaluate` on real imagery: the development set's looks scored like the synthetic areas.

A development set is built here from the demo's held-out tile (its labels written as Chesapeake
codes, its imagery as a look), so the real-set path must score it exactly as the scene path does;
the demo model runs for real.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import DEMO_DIR, DEMO_MODEL
from web_tool.demo import evaluate
from web_tool.demo.scene import CLASSES

pytestmark = pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model not built (make demo-data)")

#: the demo's class index -> a Chesapeake code of that class (Built as 'impervious road')
CODE_OF = np.array([1, 2, 3, 6], np.uint8)
NO_DATA = 15


@pytest.fixture(scope="module")
def model():
    from web_tool.ServerModels.keras_io import load_keras_model

    return load_keras_model(DEMO_MODEL)


def holdout_tile() -> tuple[str, dict]:
    scene = evaluate.load_scene(DEMO_DIR)
    [(name, tiles)] = [(k, v) for k, v in evaluate.evaluation_sets(scene).items() if k.startswith("a ")]
    return name, tiles[0]


def dev_set_from(tile: dict, root: Path, look: str, blank_rows: int = 0) -> Path:
    """`root` laid out like chesapeake-wv-dev: lc/t_lc.tif and <look>/t_<look>.tif from `tile`."""
    (root / "lc").mkdir(parents=True)
    (root / look).mkdir()
    shutil.copy(DEMO_DIR / tile["imagery"], root / look / f"t_{look}.tif")
    with rasterio.open(DEMO_DIR / tile["labels"]) as src:
        codes, profile = CODE_OF[src.read(1)], src.profile
    codes[:blank_rows] = NO_DATA
    with rasterio.open(root / "lc" / "t_lc.tif", "w", **profile) as dst:
        dst.write(codes, 1)
    return root


def test_a_real_look_scores_like_the_same_pixels_in_the_scene(model, tmp_path):
    name, tile = holdout_tile()
    expected = evaluate.evaluate(model, DEMO_DIR)[name]
    got = evaluate.evaluate_real(model, CLASSES, dev_set_from(tile, tmp_path / "dev", "summer"))
    assert list(got) == ["real summer (no clicks)"]
    real = got["real summer (no clicks)"]
    assert real["confusion"] == expected["confusion"]
    assert real["accuracy"] == pytest.approx(expected["accuracy"]) and real["accuracy"] > 0.9


def test_pixels_without_a_class_are_left_out(model, tmp_path):
    _, tile = holdout_tile()
    whole = evaluate.evaluate_real(model, CLASSES, dev_set_from(tile, tmp_path / "a", "x"))
    part = evaluate.evaluate_real(model, CLASSES, dev_set_from(tile, tmp_path / "b", "x", blank_rows=100))
    with rasterio.open(DEMO_DIR / tile["labels"]) as src:
        width = src.width
    assert part["real x (no clicks)"]["pixels"] == whole["real x (no clicks)"]["pixels"] - 100 * width


def test_a_class_absent_from_the_truth_has_no_iou_and_is_left_out_of_the_mean():
    cm = np.array([[0, 0, 0], [0, 8, 2], [0, 1, 9]])  # no class 0 in the truth; predicted nowhere either
    s = evaluate.scores(cm)
    assert np.isnan(s["iou"][0])
    assert s["miou"] == pytest.approx((8 / 11 + 9 / 12) / 2)
    assert "| – |" in evaluate.markdown_table({"x": s}, ["A", "B", "C"])


def test_the_command_says_when_the_real_set_is_absent(tmp_path, capsys):
    assert evaluate.main(["--data", str(DEMO_DIR), "--dev", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert f"no real development set at {tmp_path / 'none'}" in out
    assert "| a (held-out" in out and "real " not in out.split("mean IoU")[1]
