"""Heavy requests (predictions, retrains) take turns; light ones (corrections, tiles, `/health`,
session reads) never wait for them.

    @app.post("/predPatch", heavy=True)      # a route that needs a turn

A heavy request runs only while it holds one of `slots` turns; up to `max_waiting` more wait, first
come first served, each at most `max_wait_s`. Beyond that it is answered 503 with a Retry-After
estimated from recent heavy requests. Waiting requests hold a server thread each, so the server
keeps at least LIGHT_THREADS threads that heavy requests can never take (checked at start-up):
light requests run at once, whatever the heavy load. Memory is bounded as well: at most `slots`
heavy requests hold their large arrays at a time. Background work (map jobs) takes the same turns,
window by window, and is never refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import bottle

from web_tool.errors import BusyError
from web_tool.http.api import Callback

#: heavy requests that run at once (TensorFlow already uses every core for one)
HEAVY_SLOTS = 1
#: heavy requests that may wait for a turn; beyond them: 503 + Retry-After
MAX_WAITING = 10
#: longest wait for a turn, in seconds, before a 503
MAX_WAIT_S = 60.0
#: server threads that heavy requests (running or waiting) can never take
LIGHT_THREADS = 4


class Gate:
    """Turns for heavy work: `slots` at once, in arrival order, at most `max_waiting` waiting."""

    def __init__(
        self,
        slots: int = HEAVY_SLOTS,
        max_waiting: int = MAX_WAITING,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        if slots < 1 or max_waiting < 0:
            raise ValueError("a gate needs at least one slot and a non-negative waiting limit")
        self.slots, self.max_waiting, self.max_wait_s, self.clock = slots, max_waiting, max_wait_s, clock
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()  # tickets in arrival order
        self._refusable = 0  # tickets in the queue that may be refused (requests, not jobs)
        self._running = 0
        self._seconds = 1.0  # moving average of a turn's length

    def state(self) -> dict[str, int]:
        with self._cond:
            return {"running": self._running, "waiting": len(self._queue)}

    def retry_after(self) -> float:
        """Seconds after which a refused request may find room (at least 1)."""
        return max(1.0, math.ceil(self._seconds * (len(self._queue) + self._running) / self.slots))

    @contextmanager
    def turn(self, refusable: bool = True) -> Iterator[None]:
        """Hold a turn for the `with` block. BusyError (503) if `refusable` and the queue is full or
        the wait too long; otherwise waits as long as it takes."""
        ticket = object()
        with self._cond:
            if refusable and self._running >= self.slots and self._refusable >= self.max_waiting:
                raise BusyError(
                    f"the server is busy: {self._running} heavy request(s) running and {len(self._queue)}"
                    " waiting; try again in a moment",
                    retry_after=self.retry_after(),
                )
            self._wait_for_turn(ticket, refusable)
        start = self.clock()
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * (self.clock() - start)
                self._cond.notify_all()

    def _wait_for_turn(self, ticket: object, refusable: bool) -> None:
        """Queue `ticket` and wait until it is first and a slot is free. Called holding the lock."""
        self._queue.append(ticket)
        self._refusable += refusable
        deadline = self.clock() + self.max_wait_s
        try:
            while self._queue[0] is not ticket or self._running >= self.slots:
                left = deadline - self.clock()
                if refusable and left <= 0:
                    raise BusyError(
                        f"the server is busy: no turn for this request within {self.max_wait_s:g} s;"
                        " try again in a moment",
                        retry_after=self.retry_after(),
                    )
                self._cond.wait(left if refusable else None)
        finally:
            self._queue.remove(ticket)
            self._refusable -= refusable
            self._cond.notify_all()  # the next ticket may go (or may now be first)
        self._running += 1


class HeavyRoutes:
    """Bottle plugin: routes declared with `heavy=True` run inside a `gate.turn()`."""

    name = "heavy_routes"
    api = 2

    def __init__(self, gate: Gate):
        self.gate = gate

    def apply(self, callback: Callback, route: bottle.Route) -> Callback:
        if not route.config.get("heavy"):
            return callback

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.gate.turn():
                return callback(*args, **kwargs)

        return wrapper


def check_threads(threads: int, slots: int, max_waiting: int) -> None:
    """ValueError unless `threads` leave LIGHT_THREADS free with every heavy slot and waiting place taken."""
    needed = slots + max_waiting + LIGHT_THREADS
    if threads < needed:
        raise ValueError(
            f"--threads {threads} is too few for --max_heavy {slots} and --max_waiting {max_waiting}: light"
            f" requests need {LIGHT_THREADS} threads of their own; use --threads {needed} or more"
        )
