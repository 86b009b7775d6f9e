"""Corrections fix the map on real imagery: 100 clicks on the development patches lift accuracy,
and clicks that confirm what the map has right never make it worse.

The real NAIP development set (../shared/data/chesapeake-wv-dev/naip2014, 8 tiles with
Chesapeake land-cover labels) served with the seed's launch line plus `--dataset`; the simulated
user of bench/hitl_real.py (3 confirming clicks per class, then clicks on wrongly predicted
pixels in rounds of 25, 50 and 100 with a retrain after each) in its own session, through HTTP.

The floor, 0.80 pixel accuracy, is well under the issue's aim (0.90 at 200 clicks); a random forest
on ilastik's filter bank reaches ~0.87 from the same clicks. Today's `last_layer` learner (the one
issue 10 reports) FAILS it: 0.086 before the clicks, 0.152 after. It passes once the learner
moves as far as the corrections ask.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import devset  # noqa: E402
from common import ServerProcess  # noqa: E402
from simulated_user import Tool, User, learn  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.naip,
    pytest.mark.skipif(not devset.available(), reason="../shared/data/chesapeake-wv-dev is absent"),
]

SEED_LINE = ("--model", "nips_hr", "--model_fn", "web_tool/data/demo_model", "--fine_tune", "last_layer")
ACCURACY_FLOOR = 0.80


@contextmanager
def simulated_user(tmp_path: Path, look: str, strategy: str) -> Iterator[tuple[User, int]]:
    """(a user with `strategy` in its own session of a server of the seed's launch line serving the
    development `look`, the number of classes)."""
    args = ["--dataset", f"dev={devset.DEV_DIR / look}", "--state_dir", str(tmp_path / "state")]
    with ServerProcess(*SEED_LINE, *args) as server:
        server.keep_log()
        tool = Tool(server, "dev")
        yield User(tool, devset.load(look, tool.class_names), strategy, seed=0), len(tool.classes)


@pytest.mark.timeout(900)
def test_100_clicks_on_wrong_pixels_lift_accuracy_above_the_floor(tmp_path):
    with simulated_user(tmp_path, "naip2014", "wrong") as (user, n_classes):
        before = devset.score(user.patches, user.predict(), n_classes)
        *_, last = learn(user, (25, 50, 100))
    after = devset.score(user.patches, last.preds, n_classes)

    assert last.clicks == 100 and user.confirming == 3 * len(user.present)
    assert len({(k.patch, k.row, k.col) for k in user.clicks}) == len(user.clicks)  # no pixel twice
    assert after["accuracy"] > before["accuracy"]
    assert after["accuracy"] >= ACCURACY_FLOOR, f"accuracy {before['accuracy']:.3f} → {after['accuracy']:.3f}"


@pytest.mark.timeout(900)
def test_clicks_on_pixels_the_map_has_right_never_make_it_worse(tmp_path):
    """A user who only confirms what the demo model maps right on the summer look (46 % right),
    50 clicks in two rounds: the map keeps at least its accuracy (bench/hitl_real.py --strategy
    right, 4 seeds: 0.422 -> 0.45-0.49 at 25 to 200 clicks)."""
    with simulated_user(tmp_path, "naip2011", "right") as (user, n_classes):
        base = user.predict()
        before = devset.score(user.patches, base, n_classes)
        rounds = list(learn(user, (25, 50)))
    assert user.confirming == 0 and rounds[-1].clicks == 50
    assert all(base[k.patch][k.row, k.col] == k.value for k in user.clicks[:25])  # they confirm the base map
    for r in rounds:
        after = devset.score(user.patches, r.preds, n_classes)
        assert after["accuracy"] >= before["accuracy"] - 0.005, (
            r.clicks,
            before["accuracy"],
            after["accuracy"],
        )


@pytest.mark.timeout(900)
def test_confirming_what_a_learnt_map_has_right_never_makes_it_worse(tmp_path):
    """100 clicks on errors, then 50 on pixels the learnt map has right, in two rounds: each round
    keeps at least the accuracy the map had (2 seeds by hand, both looks: 0.932 -> 0.934 / 0.934 /
    0.935 at 25 / 50 / 100 confirming clicks, 0.853 -> 0.860 / 0.866 / 0.871 on naip2011)."""
    with simulated_user(tmp_path, "naip2014", "wrong") as (user, n_classes):
        user.predict()
        *_, learnt = learn(user, (25, 50, 100))
        before = devset.score(user.patches, learnt.preds, n_classes)["accuracy"]
        user.strategy = "right"
        after = []
        for extra in (25, 50):
            user.click_until(100 + extra)
            user.tool.retrain()
            after.append(devset.score(user.patches, user.predict(), n_classes)["accuracy"])
    assert user.strategy_clicks == 150
    assert min(after) >= before - 0.005, (before, after)
