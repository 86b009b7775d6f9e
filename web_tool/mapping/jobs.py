"""Long-running jobs: a bounded queue, worker thread(s), and every job's state in SQLite.

Each job belongs to the session that submitted it: only that session lists it, reads it or cancels
it (anyone else gets 404). Its downloads are named after its id, 128 random bits that only that
session learns, so a download link works for whoever the session hands it to, and for nobody else.

    state_dir/jobs.sqlite        a row per job (state, progress, message, stats) and per output file
    state_dir/downloads/<file>   outputs of finished jobs, written atomically by the job itself

A job is a function `run(ctx: JobContext) -> JobResult` that writes its outputs into
`ctx.downloads` under names that start with the job's id, reports `ctx.progress(...)` and asks
`ctx.cancelled()` now and then. The manager knows nothing of what a job computes, and holds no
lock while one runs. A job that a restart interrupted (queued or running when the process died)
is reported `failed`; output files that no finished job names are removed at start-up, so
`/downloads` can only ever serve complete outputs of `done` jobs.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from web_tool import db
from web_tool.errors import BusyError, LandCoverError, NotFoundError, disk_full, unreadable

log = logging.getLogger(__name__)

#: largest area (km²) that one /predTile job may map; the batch CLI has no cap
MAX_TILE_KM2 = 25.0
#: jobs waiting in the queue (beyond the running ones) before /predTile answers 503
MAX_QUEUED_JOBS = 16
#: threads that run jobs (one keeps the CPU mostly free for interactive requests)
JOB_WORKERS = 1
#: least time between two progress writes to the database, in seconds
PROGRESS_INTERVAL_S = 0.25
#: Retry-After (s) of a 503 when the queue is full
QUEUE_RETRY_S = 30

STATES = ("queued", "running", "done", "failed", "cancelled")
#: job ids: 128 random bits (64 before they were secrets)
JOB_ID = re.compile(r"^([0-9a-f]{32}|[0-9a-f]{16})$")
#: what a download's name may look like: a job id, then letters, digits, `_`, and 1-3 extensions
FILE_NAME = re.compile(r"^[0-9a-f]{16}[A-Za-z0-9_]*(\.[a-z]{2,7}){1,3}$")
RESTART_MESSAGE = "interrupted by a server restart"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, started REAL, finished REAL, state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '', info TEXT NOT NULL DEFAULT '{}',
    stats TEXT, session TEXT);
CREATE TABLE IF NOT EXISTS job_files (
    name TEXT PRIMARY KEY, job TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, kind TEXT NOT NULL);
"""
#: columns added since the first release (older databases get them on opening)
MIGRATIONS = [("jobs", "session", "TEXT")]
#: jobs of earlier versions kept their session in `info` ("session": null = the default session)
ADOPT_OLD_JOBS = """
UPDATE jobs SET session = coalesce(json_extract(info, '$.session'), 'default') WHERE session IS NULL;
CREATE INDEX IF NOT EXISTS jobs_by_session ON jobs(session, created);
"""
DEFAULT_SESSION = "default"


class JobCancelled(Exception):
    """A job's `run` may raise this when `ctx.cancelled()` said stop."""


@dataclass
class JobResult:
    """What a finished job made: output kind → file in the downloads folder, and optional stats."""

    outputs: dict[str, Path]
    stats: dict[str, Any] | None = None


@dataclass
class JobContext:
    """What a running job sees of its manager."""

    id: str
    downloads: Path
    cancel_event: threading.Event
    report: Callable[[str, float, str], None]
    _last: float = field(default=0.0, repr=False)

    def path(self, suffix: str) -> Path:
        """A file in the downloads folder named after this job: `<id><suffix>`."""
        return self.downloads / f"{self.id}{suffix}"

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def progress(self, fraction: float, message: str = "", force: bool = False) -> None:
        """Record progress (0..1); written at most every PROGRESS_INTERVAL_S unless `force`."""
        now = time.monotonic()
        if force or fraction >= 1 or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            self.report(self.id, min(max(fraction, 0.0), 1.0), message)


Work = Callable[[JobContext], JobResult]


class JobManager:
    """Jobs queued in memory, run by `workers` threads, with their state kept in SQLite."""

    def __init__(
        self,
        state_dir: str | Path,
        max_km2: float = MAX_TILE_KM2,
        workers: int = JOB_WORKERS,
        max_queued: int = MAX_QUEUED_JOBS,
        window_px: int | None = None,
        owner: Callable[[str | None], str] | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.downloads = self.state_dir / "downloads"
        self.db_path = self.state_dir / "jobs.sqlite"
        self.max_km2 = max_km2
        self.workers = max(1, workers)
        #: side of the map windows (None: chosen from the model); tests make it small
        self.window_px = window_px
        #: a caller's session → the id jobs are owned by (NotFoundError for an unknown session);
        #: None: any name is taken as it is (None standing for the default session)
        self.owner = owner or (lambda session: session or DEFAULT_SESSION)
        self.max_queued = max(1, max_queued)
        self._pending: deque[tuple[str, Work]] = deque()  # queued jobs, oldest first
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Condition()  # guards the three above; never held while a job runs
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._conn = db.Connections(self.db_path)
        #: job id → failure message that could not be written to the database (a full disk)
        self._unsaved: dict[str, str] = {}
        self.downloads.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.executescript(SCHEMA)
        db.migrate(conn, MIGRATIONS)
        conn.executescript(ADOPT_OLD_JOBS)
        self._recover()

    # ---------------------------------------------------------------- storage

    def _update(self, sql: str, *params: object) -> int:
        return self._conn().execute(sql, params).rowcount

    def _recover(self) -> None:
        """Jobs a previous process left queued or running failed; files no finished job names go."""
        n = self._update(
            "UPDATE jobs SET state='failed', message=?, finished=? WHERE state IN ('queued','running')",
            RESTART_MESSAGE,
            time.time(),
        )
        if n:
            log.warning("%d job(s) were interrupted by a restart and are marked failed", n)
        rows = self._conn().execute(
            "SELECT f.name FROM job_files f JOIN jobs j ON f.job = j.id WHERE j.state='done'"
        )
        keep = {r["name"] for r in rows}
        for path in self.downloads.iterdir():
            if path.name not in keep and path.is_file():
                path.unlink(missing_ok=True)

    def _remove_files(self, job_id: str) -> None:
        for path in list(self.downloads.glob(f"{job_id}*")) + list(self.downloads.glob(f".{job_id}*")):
            path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- public API

    def submit(self, work: Work, info: dict[str, Any] | None = None, session: str | None = None) -> str:
        """Queue `work` for `session` (None: the default one); its id. BusyError when the queue is full."""
        job_id = db.new_id()
        with self._lock:
            if len(self._pending) >= self.max_queued:
                raise BusyError(
                    f"the job queue is full ({len(self._pending)} jobs waiting): try again in a few minutes,"
                    " or map large areas offline with `python -m web_tool.batch`",
                    retry_after=QUEUE_RETRY_S,
                )
            self._update(
                "INSERT INTO jobs (id, created, state, info, session) VALUES (?, ?, 'queued', ?, ?)",
                job_id,
                time.time(),
                json.dumps(info or {}),
                self.owner(session),
            )
            self._events[job_id] = threading.Event()
            self._pending.append((job_id, work))
            self._start_workers()
            self._lock.notify()
        return job_id

    def get(self, job_id: str, session: str | None = None) -> dict[str, Any]:
        """The job as `GET /jobs/<id>` describes it (outputs as kind → file name); NotFoundError
        unless `session` (None: the default one) submitted it."""
        row = dict(self._row(job_id, session))
        if job_id in self._unsaved and row["state"] == "running":
            row.update(state="failed", message=self._unsaved[job_id])
        files = self._conn().execute("SELECT name, kind FROM job_files WHERE job=?", (job_id,)).fetchall()
        return describe(row, {f["kind"]: f["name"] for f in files} if row["state"] == "done" else {})

    def recent(self, session: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The session's most recent jobs, newest first."""
        session = self.owner(session)
        rows = (
            self._conn()
            .execute("SELECT id FROM jobs WHERE session=? ORDER BY created DESC LIMIT ?", (session, limit))
            .fetchall()
        )
        return [self.get(r["id"], session) for r in rows]

    def cancel(self, job_id: str, session: str | None = None) -> dict[str, Any]:
        """Cancel a queued or running job of `session` (a finished one is left as it is); the job
        afterwards. A queued job leaves the queue at once, freeing its place."""
        self._row(job_id, session)
        self._update(
            "UPDATE jobs SET state='cancelled', message='cancelled on request', finished=?"
            " WHERE id=? AND state IN ('queued','running')",
            time.time(),
            job_id,
        )
        with self._lock:
            self._pending = deque(item for item in self._pending if item[0] != job_id)
            event = self._events.get(job_id)
        if event is not None:
            event.set()
        return self.get(job_id, session)

    def download(self, name: str) -> Path:
        """The file `name` if a finished job made it (and it is a plain file in the downloads folder);
        NotFoundError for anything else."""
        not_found = NotFoundError(f"no such download: {name!r} (only outputs of finished jobs are served)")
        if not FILE_NAME.match(name or ""):
            raise not_found
        done = "SELECT f.name FROM job_files f JOIN jobs j ON f.job = j.id WHERE f.name=? AND j.state='done'"
        row = self._conn().execute(done, (name,)).fetchone()
        path: Path | None = self.downloads / row["name"] if row else None
        if path is None or path.is_symlink() or not path.is_file():  # a link could lead anywhere
            raise not_found
        return path

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers: a running job is stopped at its next check and marked failed; queued
        jobs stay queued (the next start marks them failed)."""
        with self._lock:
            self._closing = True
            threads, self._threads = self._threads, []
            for event in self._events.values():
                event.set()
            self._lock.notify_all()
        for t in threads:
            t.join(timeout)

    # ---------------------------------------------------------------- workers

    def _row(self, job_id: str, session: str | None = None) -> sqlite3.Row:
        """The job's row; NotFoundError if there is none or `session` did not submit it."""
        owner = self.owner(session)
        row: sqlite3.Row | None = None
        if JOB_ID.match(job_id or ""):
            row = self._conn().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or row["session"] != owner:
            raise NotFoundError(f"no such job: {job_id!r} (GET /jobs lists yours)")
        return row

    def _start_workers(self) -> None:
        while len(self._threads) < self.workers:
            t = threading.Thread(target=self._work_loop, name=f"job-worker-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _report(self, job_id: str, fraction: float, message: str) -> None:
        try:
            self._update(
                "UPDATE jobs SET progress=?, message=? WHERE id=? AND state='running'",
                fraction,
                message,
                job_id,
            )
        except sqlite3.Error as exc:  # progress is best-effort; the job goes on
            log.warning("job %s: cannot record progress: %s", job_id, exc)

    def _next(self) -> tuple[str, Work] | None:
        """The oldest queued job, once there is one; None when closing."""
        with self._lock:
            while not self._pending and not self._closing:
                self._lock.wait(0.5)
            return None if self._closing else self._pending.popleft()

    def _work_loop(self) -> None:
        while (item := self._next()) is not None:
            job_id, work = item
            try:
                self._run(job_id, work)
            except Exception:  # never let a bug in the bookkeeping kill the worker
                log.exception("job %s: cannot record its result", job_id)
                self._fail(job_id, "internal error: see the server log")
            finally:
                with self._lock:
                    self._events.pop(job_id, None)

    def _run(self, job_id: str, work: Work) -> None:
        with self._lock:
            event = self._events.setdefault(job_id, threading.Event())
        claimed = self._update(
            "UPDATE jobs SET state='running', started=?, message='started' WHERE id=? AND state='queued'",
            time.time(),
            job_id,
        )
        if not claimed:
            return  # cancelled while it waited
        ctx = JobContext(job_id, self.downloads, event, self._report)
        try:
            result = work(ctx)
            self._check_outputs(result)
        except JobCancelled:
            self._fail(job_id, "stopped: the server shut down")  # a DELETE has already marked it cancelled
            return
        except LandCoverError as exc:
            self._fail(job_id, str(exc))
            return
        except Exception as exc:
            known = disk_full(exc, self.downloads, lost="the map was not saved") or unreadable(exc)
            if known is not None:
                log.error("job %s: %s (%s)", job_id, known, exc)
                self._fail(job_id, str(known))
                return
            log.exception("job %s failed", job_id)
            self._fail(job_id, f"internal error ({type(exc).__name__}): see the server log")
            return
        self._finish(job_id, result)

    def _fail(self, job_id: str, message: str) -> None:
        """Remove a job's files and mark it failed (a cancelled one stays cancelled). If even that
        cannot be written, the failure is kept in memory; a restart marks the job failed anyway."""
        self._remove_files(job_id)  # first: frees the space a full disk needs for the update
        try:
            self._update(
                "UPDATE jobs SET state='failed', message=?, finished=? WHERE id=? AND state='running'",
                message,
                time.time(),
                job_id,
            )
        except sqlite3.Error as exc:
            log.error("job %s: cannot record its failure (%s): %s", job_id, exc, message)
            self._unsaved[job_id] = message

    def _check_outputs(self, result: JobResult) -> None:
        for path in result.outputs.values():
            if Path(path).parent != self.downloads or not FILE_NAME.match(Path(path).name):
                raise ValueError(f"job output {path} is not a job-named file in {self.downloads}")
            if not Path(path).is_file():
                raise FileNotFoundError(f"job output {path} was not written")

    def _finish(self, job_id: str, result: JobResult) -> None:
        """Record the outputs and mark the job done, unless it was cancelled meanwhile."""
        with db.transaction(self._conn()) as conn:
            done = conn.execute(
                "UPDATE jobs SET state='done', progress=1, message='done', finished=?, stats=?"
                " WHERE id=? AND state='running'",
                (time.time(), json.dumps(result.stats) if result.stats else None, job_id),
            ).rowcount
            if done:
                rows = [(Path(p).name, job_id, kind) for kind, p in result.outputs.items()]
                conn.executemany("INSERT INTO job_files (name, job, kind) VALUES (?, ?, ?)", rows)
        if not done:
            self._remove_files(job_id)


def describe(row: dict[str, Any], outputs: dict[str, str]) -> dict[str, Any]:
    """A job row as JSON: id, state, progress 0..1, message, outputs, times, info, stats."""
    return {
        "job": row["id"],
        "state": row["state"],
        "progress": round(float(row["progress"]), 4),
        "message": row["message"],
        "outputs": outputs,
        "created": row["created"],
        "started": row["started"],
        "finished": row["finished"],
        **{k: v for k, v in json.loads(row["info"] or "{}").items() if k != "session"},
        **({"stats": json.loads(row["stats"])} if row["stats"] and row["state"] == "done" else {}),
    }
