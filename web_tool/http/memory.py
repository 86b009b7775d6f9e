"""Freed memory: kept for the next request while it is a small part of what the server holds.

A prediction allocates and frees a few hundred MB of arrays (the padded canvas, the network's
activations, the maps). glibc's malloc keeps freed memory for reuse, which is what makes a
request fast (its arrays are not faulted in afresh: at 512 px the server answered /predPatch in
~0.83x the time it took when every freed array went back to the system at once), but under many
users its heap fragments and the process's resident memory creeps up (bench/load.py: +11-17 %
over 60 s of 8 users). So a watcher thread gives freed memory back (`malloc_trim`) whenever the
resident memory has grown more than SLACK above what it was after the last trim: one user's
clicks reuse their memory, and many users' fragments are given back. What the server really
holds (sessions, caches) still grows with use: the limit follows it.

On C libraries other than glibc (no `malloc_trim`) nothing is started.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: growth of the resident memory, as a share of it after the last trim, before freed memory is
#: given back
SLACK = 0.25
#: seconds between two looks at the resident memory
EVERY_S = 1.0


def resident_bytes() -> int:
    """This process's resident set size (Linux: /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` (give every freed page back to the system), or None elsewhere."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    """Gives freed memory back whenever the resident memory exceeds (1 + slack) x its size after
    the last trim. `check()` is one look; `start()` looks every `every` seconds in a daemon thread."""

    def __init__(
        self,
        trim: Callable[[], object],
        resident: Callable[[], int] = resident_bytes,
        slack: float = SLACK,
        every: float = EVERY_S,
    ):
        self.trim, self.resident, self.slack, self.every = trim, resident, slack, every
        self.limit = self._trim()

    def _trim(self) -> float:
        self.trim()
        return self.resident() * (1 + self.slack)

    def check(self) -> bool:
        """Trim if the resident memory is over the limit; whether it did."""
        if self.resident() <= self.limit:
            return False
        self.limit = self._trim()
        return True

    def start(self) -> Trimmer:
        def watch() -> None:
            while True:
                time.sleep(self.every)
                try:
                    self.check()
                except OSError as exc:  # /proc unreadable: stop looking, the server carries on
                    log.warning("no longer trimming freed memory: %s", exc)
                    return

        threading.Thread(target=watch, name="memory-trim", daemon=True).start()
        return self


def keep_memory_bounded() -> Trimmer | None:
    """Start the watcher (see the module), or None where malloc_trim or /proc is missing."""
    trim = malloc_trim()
    if trim is None or not os.path.exists("/proc/self/statm"):
        return None
    return Trimmer(trim).start()
