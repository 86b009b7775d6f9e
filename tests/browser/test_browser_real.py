"""Learning on real imagery through the page: clicks made with the mouse on real NAIP (a UTM
dataset, 1 m) in Correct mode, one Retrain, and the session's map of the patch is far better
(scripts/screenshot_real.py, which draws the README's picture of it)."""

from __future__ import annotations

import pytest
from screenshot_real import accuracy, available, walkthrough  # scripts/, on the path (conftest.py)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.naip,
    pytest.mark.skipif(not available(), reason="../shared/data/chesapeake-wv-dev is absent"),
]


@pytest.mark.timeout(600)
def test_clicks_in_the_page_on_real_naip_fix_the_map(browser):
    """30 clicks on the demo model's errors in the page, then Retrain: the map of the patch goes
    from mostly wrong (0.17) to mostly right (0.87, the README's picture), forest and field both
    found. A map of forest alone would score 0.76 here: the floor is above it."""
    patch, _, before, after = walkthrough(browser, clicks=30)
    right_before, right_after = accuracy(before, patch.truth), accuracy(after, patch.truth)
    forest_alone = float((patch.truth == 1).sum() / (patch.truth >= 0).sum())
    assert right_before < 0.5, "the demo model should not know this ground"
    assert right_after > max(0.8, forest_alone + 0.05), (right_before, right_after, forest_alone)
    field = patch.truth == 2
    assert (after[field] == 2).mean() > 0.3, "the field is mapped too (0.47 of it here)"
