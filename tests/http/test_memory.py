"""The server keeps freed memory for reuse while it is a small part of what it holds (http/memory.py)."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from web_tool.http import memory


def test_freed_memory_goes_back_only_when_the_process_has_grown_past_its_slack():
    sizes = iter([1000, 1100, 1250, 1251, 1000, 1240, 1260, 1300])
    resident = lambda: next(sizes)  # noqa: E731
    trims = []
    trimmer = memory.Trimmer(lambda: trims.append(1), resident, slack=0.25)
    assert len(trims) == 1 and trimmer.limit == 1250  # trimmed at the start, from 1000
    assert not trimmer.check()  # 1100: one user's arrays, kept for the next request
    assert not trimmer.check()  # 1250: at the limit
    assert trimmer.check()  # 1251: over it, trimmed; what is left (1000) sets the next limit
    assert trimmer.limit == 1250 and len(trims) == 2
    assert not trimmer.check() and trimmer.check()  # 1240 kept, 1260 trimmed (then 1300 in use)
    assert trimmer.limit == 1300 * 1.25  # the limit follows what the server really holds


@pytest.mark.skipif(memory.malloc_trim() is None, reason="not glibc")
def test_the_real_trim_gives_freed_memory_back():
    assert abs(memory.resident_bytes() - psutil.Process().memory_info().rss) < 64 * 2**20
    trim = memory.malloc_trim()
    # many small arrays, every other one freed: glibc keeps the holes (in the heap's middle) for reuse
    arrays = [np.ones(2_000) for _ in range(10_000)]  # 16 kB each, 160 MB
    del arrays[::2]
    before = memory.resident_bytes()
    trim()
    assert before - memory.resident_bytes() > 40 * 2**20
