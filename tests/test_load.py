"""bench/load.py's load run, short, against the in-process server on the tiny dataset and model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from load import ENDPOINTS, run_load  # noqa: E402


@pytest.mark.slow
def test_concurrent_sessions_get_no_server_errors_and_keep_their_corrections(live_server):
    result = run_load(live_server.url, clients=4, seconds=8, warmup=1, patch_px=(16, 64), retrain_every=3)

    assert result["failures"] == []
    stats = result["endpoints"]
    for path in ENDPOINTS:
        assert stats[path]["requests"] > 0, path
        assert stats[path]["5xx"] == 0 and stats[path]["errors"] == 0, path
    assert stats["/sessions"]["requests"] == 4
    for path in ("/predPatch", "/recordCorrection", "/retrainModel"):
        assert stats[path]["latencies"], f"{path} was not called in the timed run"

    sessions = result["sessions"]
    assert len({s["session"] for s in sessions}) == 4  # each client its own session
    assert all(s["corrections"] > 0 and s["pixels"] > 0 for s in sessions)
    recorded = stats["/recordCorrection"]["requests"] - stats["/recordCorrection"]["4xx"]
    assert sum(s["corrections"] for s in sessions) == recorded  # none lost, none counted twice
