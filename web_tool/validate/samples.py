"""Validation samples and their answers, kept in SQLite apart from everything the model learns from.

    state_dir/validation.sqlite   a row per sample (its job, design and strata) and per point

A validation answer is never a training correction: a map scored on points it was trained on would
look better than it is. So the answers live in their own database, which nothing on the learning
side reads. Every answer is one committed UPDATE (WAL), so a walk-through survives a restart or a
`kill -9` and resumes at the next unanswered point.

A point's status is `pending`, `answered` (with a class index), `unsure` (the reference cannot be
told: left out of the estimates, counted in the report) or `skipped` (asked again after the others).
The map's class of a point is only revealed once it is answered or unsure.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from web_tool import db
from web_tool.errors import ClassIndexError, NotFoundError, RequestError
from web_tool.validate.design import MapStrata

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id TEXT PRIMARY KEY, job TEXT NOT NULL, created REAL NOT NULL, seed INTEGER NOT NULL,
    total INTEGER NOT NULL, min_per_class INTEGER NOT NULL, classes TEXT NOT NULL, strata TEXT NOT NULL,
    crs TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS samples_job ON samples (job);
CREATE TABLE IF NOT EXISTS points (
    sample TEXT NOT NULL REFERENCES samples(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, lon REAL NOT NULL, lat REAL NOT NULL, outline TEXT NOT NULL,
    map_class INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'pending', answer INTEGER, answered REAL,
    PRIMARY KEY (sample, idx));
"""
DB_NAME = "validation.sqlite"
#: most points one sample may have (each is a row; a request makes at most this many)
MAX_SAMPLE_POINTS = 5000
SAMPLE_ID = re.compile(r"^[0-9a-f]{16}$")
#: what a user may answer besides a class index
UNSURE, SKIP = "unsure", "skip"
STATUSES = ("pending", "answered", "unsure", "skipped")


class SampleStore:
    """The samples of one state folder; safe to use from many threads."""

    def __init__(self, state_dir: str | Path, max_points: int = MAX_SAMPLE_POINTS):
        self.path = Path(state_dir) / DB_NAME
        self.max_points = max_points
        self._conn = db.Connections(self.path)
        self._conn().executescript(SCHEMA)

    # ---------------------------------------------------------------- writing

    def add(self, job: str, strata: MapStrata, design: dict[str, Any], points: list[dict[str, Any]]) -> str:
        """Keep a new sample of `job`'s map (one transaction); its id. `design` holds seed, total,
        min_per_class and the points per class; `points` come from `design.locate`."""
        sample_id = db.new_id(8)
        rows = [
            (sample_id, i, p["x"], p["y"], p["lon"], p["lat"], json.dumps(p["outline"]), p["map_class"])
            for i, p in enumerate(points)
        ]
        per_class = [
            {"pixels": px, "km2": km2, "points": n}
            for px, km2, n in zip(strata.pixels, strata.km2, design["points"], strict=True)
        ]
        with db.transaction(self._conn()) as conn:
            conn.execute(
                "INSERT INTO samples VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    sample_id,
                    job,
                    time.time(),
                    design["seed"],
                    design["total"],
                    design["min_per_class"],
                    json.dumps(strata.classes),
                    json.dumps(per_class),
                    strata.grid.crs.to_string(),
                ),
            )
            conn.executemany(
                "INSERT INTO points (sample, idx, x, y, lon, lat, outline, map_class)"
                " VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
        return sample_id

    def answer(self, job: str, sample_id: str, index: int, answer: int | str) -> dict[str, Any]:
        """Record the answer to point `index` (a class index, UNSURE or SKIP); the point afterwards."""
        sample = self._sample_row(job, sample_id)
        n_classes = len(json.loads(sample["classes"]))
        if answer == SKIP:
            status, value = "skipped", None
        elif answer == UNSURE:
            status, value = "unsure", None
        elif isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < n_classes:
            status, value = "answered", answer
        else:
            raise ClassIndexError(
                f"answer must be a class index 0..{n_classes - 1}, {UNSURE!r} or {SKIP!r}; got {answer!r}"
            )
        changed = (
            self._conn()
            .execute(
                "UPDATE points SET status = ?, answer = ?, answered = ? WHERE sample = ? AND idx = ?",
                (status, value, time.time(), sample_id, index),
            )
            .rowcount
        )
        if not changed:
            last = self._size(sample_id) - 1
            raise NotFoundError(f"sample {sample_id} has no point {index} (its points are 0..{last})")
        return self.point(sample_id, index)

    # ---------------------------------------------------------------- reading

    def describe(self, job: str, sample_id: str, with_points: bool = False) -> dict[str, Any]:
        """The sample as the API shows it: design, strata, progress and the next point to answer."""
        row = self._sample_row(job, sample_id)
        classes = json.loads(row["classes"])
        strata = [
            {"index": i, **c, **s}
            for i, (c, s) in enumerate(zip(classes, json.loads(row["strata"]), strict=True))
        ]
        out = {
            "sample": row["id"],
            "job": row["job"],
            "created": db_time(row["created"]),
            "seed": row["seed"],
            "total": row["total"],
            "min_per_class": row["min_per_class"],
            "crs": row["crs"],
            "classes": classes,
            "strata": strata,
            "progress": self.progress(sample_id),
            "next": self.next_point(sample_id),
        }
        if with_points:
            rows = self._conn().execute("SELECT * FROM points WHERE sample = ? ORDER BY idx", (sample_id,))
            out["points"] = [point_json(r) for r in rows]
        return out

    def list(self, job: str) -> builtins.list[dict[str, Any]]:
        rows = self._conn().execute("SELECT id FROM samples WHERE job = ? ORDER BY created DESC", (job,))
        return [self.describe(job, r["id"]) for r in rows.fetchall()]

    def progress(self, sample_id: str) -> dict[str, int]:
        rows = self._conn().execute(
            "SELECT status, COUNT(*) AS n FROM points WHERE sample = ? GROUP BY status", (sample_id,)
        )
        counts = dict.fromkeys(STATUSES, 0) | {r["status"]: r["n"] for r in rows}
        return {"points": sum(counts.values()), **counts}

    def next_point(self, sample_id: str) -> dict[str, Any] | None:
        """The first pending point, else the first skipped one, else None (all answered)."""
        row = self._one(
            "SELECT * FROM points WHERE sample = ? AND status IN ('pending', 'skipped')"
            " ORDER BY status = 'skipped', idx LIMIT 1",
            sample_id,
        )
        return point_json(row) if row else None

    def point(self, sample_id: str, index: int) -> dict[str, Any]:
        row = self._one("SELECT * FROM points WHERE sample = ? AND idx = ?", sample_id, index)
        if row is None:
            raise NotFoundError(f"sample {sample_id} has no point {index}")
        return point_json(row)

    def counts(
        self, job: str, sample_id: str
    ) -> tuple[builtins.list[dict[str, Any]], builtins.list[dict[str, Any]], np.ndarray]:
        """(classes, strata, K x K counts of answered points: map class rows, answer columns)."""
        row = self._sample_row(job, sample_id)
        classes, strata = json.loads(row["classes"]), json.loads(row["strata"])
        counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
        rows = self._conn().execute(
            "SELECT map_class, answer, COUNT(*) AS n FROM points WHERE sample = ? AND status = 'answered'"
            " GROUP BY map_class, answer",
            (sample_id,),
        )
        for r in rows:
            counts[r["map_class"], r["answer"]] = r["n"]
        return classes, strata, counts

    def _sample_row(self, job: str, sample_id: str) -> sqlite3.Row:
        row = None
        if SAMPLE_ID.match(str(sample_id)):
            row = self._one("SELECT * FROM samples WHERE id = ? AND job = ?", sample_id, job)
        if row is None:
            raise NotFoundError(f"job {job} has no validation sample {sample_id!r}")
        return row

    def _size(self, sample_id: str) -> int:
        count: int = (
            self._conn().execute("SELECT COUNT(*) FROM points WHERE sample = ?", (sample_id,)).fetchone()[0]
        )
        return count

    def _one(self, sql: str, *params: object) -> sqlite3.Row | None:
        """The first row `sql` finds, or None."""
        row: sqlite3.Row | None = self._conn().execute(sql, params).fetchone()
        return row

    def check_size(self, total: int) -> None:
        if total > self.max_points:
            raise RequestError(
                f"a sample may have at most {self.max_points} points (the server's"
                f" --max_sample_points); asked for {total}"
            )


def point_json(row: sqlite3.Row) -> dict[str, Any]:
    """A point as the API shows it; its map class only once it is answered or marked unsure."""
    revealed = row["status"] in ("answered", "unsure")
    return {
        "index": row["idx"],
        "lon": row["lon"],
        "lat": row["lat"],
        "x": row["x"],
        "y": row["y"],
        "outline": json.loads(row["outline"]),
        "status": row["status"],
        "answer": row["answer"],
        "map_class": row["map_class"] if revealed else None,
    }


def db_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
