"""Human-in-the-loop state on disk: a SQLite database and model files under `state_dir`.

    state_dir/hitl.sqlite            sessions, corrections, checkpoints (WAL, one transaction per change)
    state_dir/checkpoints/<id>.npz   a checkpoint's model (head, classes, body weights if tuned)
    state_dir/sessions/<id>.npz      a session's current model, rewritten after each change

Files are written with `db.atomic_write` (temp file, fsync, rename) *before* the row that names
them is committed, so a `kill -9` at any moment leaves either no row or a complete file. Start-up
removes temp files and checkpoint files no row names. File names are generated ids, never user
input. Corrections are stored once and linked to sessions and checkpoints by id.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from web_tool import db
from web_tool.errors import GoneError, NotFoundError
from web_tool.learning.corrections import Correction
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.state import ModelState, state_bytes, state_from_file

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created REAL NOT NULL, classes TEXT NOT NULL, parent TEXT,
    has_model INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL, dataset TEXT NOT NULL,
    crs TEXT NOT NULL, value INTEGER NOT NULL, count INTEGER NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS session_corrections (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    correction INTEGER NOT NULL REFERENCES corrections(id), PRIMARY KEY (session, correction));
CREATE TABLE IF NOT EXISTS checkpoints (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, session TEXT NOT NULL,
    parent TEXT, classes TEXT NOT NULL, n_corrections INTEGER NOT NULL, pixels INTEGER NOT NULL,
    metrics TEXT NOT NULL, strategy TEXT NOT NULL, share TEXT);
CREATE TABLE IF NOT EXISTS checkpoint_corrections (
    checkpoint TEXT NOT NULL REFERENCES checkpoints(id) ON DELETE CASCADE,
    correction INTEGER NOT NULL REFERENCES corrections(id), PRIMARY KEY (checkpoint, correction));
"""
#: added since the first release: (table, column, declaration) added to older databases on opening
MIGRATIONS = [("checkpoints", "share", "TEXT")]
INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS checkpoints_by_share ON checkpoints(share);
CREATE INDEX IF NOT EXISTS checkpoints_by_session ON checkpoints(session);
"""
DB_NAME = "hitl.sqlite"
#: ids this module generates (128 random bits; 64 before the ids became secrets) and the shared
#: "default" session: the only names used in paths
ID_PATTERN = re.compile(r"^(default|[0-9a-f]{32}|[0-9a-f]{16})$")


def iso_time(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def correction_blob(c: Correction) -> bytes:
    buf = io.BytesIO()
    seen = {} if c.seen is None else {"seen": c.seen}
    trust = {} if c.seen_trust is None else {"seen_trust": np.float64(c.seen_trust)}
    np.savez_compressed(
        buf,
        rows=c.rows,
        cols=c.cols,
        image=c.image,
        transform=np.array(c.transform, dtype=np.float64),
        allow_pickle=False,
        **seen,
        **trust,
    )
    return buf.getvalue()


def correction_from_row(row: sqlite3.Row) -> Correction:
    """The correction a row stores (rows written before `seen` existed have no seen map)."""
    with np.load(io.BytesIO(row["data"]), allow_pickle=False) as f:
        seen = f["seen"] if "seen" in f.files else None
        trust = float(f["seen_trust"]) if "seen_trust" in f.files else None
        return Correction(
            dataset=row["dataset"],
            crs=row["crs"],
            value=row["value"],
            rows=f["rows"],
            cols=f["cols"],
            image=f["image"],
            transform=tuple(f["transform"].tolist()),
            id=row["id"],
            seen=seen,
            seen_trust=trust,
        )


class Store:
    """The database and model files of one `state_dir`; safe to use from many threads."""

    def __init__(self, state_dir: str | Path, clean: bool = True):
        self.dir = Path(state_dir)
        self.checkpoint_dir = self.dir / "checkpoints"
        self.session_dir = self.dir / "sessions"
        for folder in (self.checkpoint_dir, self.session_dir):
            folder.mkdir(parents=True, exist_ok=True)
        #: this thread's connection (SQLite connections are cheap but not shared across threads)
        self.conn = db.Connections(self.dir / DB_NAME)
        self.conn().executescript(SCHEMA)
        db.migrate(self.conn(), MIGRATIONS)
        self.conn().executescript(INDEXES)
        if clean:  # only the server that owns state_dir, at start-up: a writer may be mid-write
            self.clean_orphans()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return db.transaction(self.conn())

    def clean_orphans(self) -> None:
        """Remove temp files left by a crash, and checkpoint files whose row was never committed."""
        known = {r["id"] for r in self.conn().execute("SELECT id FROM checkpoints")}
        for folder in (self.checkpoint_dir, self.session_dir):
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)
        for path in self.checkpoint_dir.glob("*.npz"):
            if path.stem not in known:
                path.unlink(missing_ok=True)

    # --- sessions ------------------------------------------------------------------------------

    def add_session(self, session_id: str, classes: list[dict[str, Any]], parent: str | None = None) -> None:
        self.conn().execute(
            "INSERT OR IGNORE INTO sessions (id, created, classes, parent) VALUES (?,?,?,?)",
            (session_id, time.time(), json.dumps(classes), parent),
        )

    def session_row(self, session_id: str) -> sqlite3.Row | None:
        """The session's row (rows are sqlite3.Row: db.connect's row_factory), or None."""
        row: sqlite3.Row | None = (
            self.conn().execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        )
        return row

    def legacy_sessions(self) -> int:
        """Sessions made before ids became 128-bit secrets (earlier versions listed their ids)."""
        count: int = self.conn().execute("SELECT count(*) FROM sessions WHERE length(id) = 16").fetchone()[0]
        return count

    def set_session(self, session_id: str, classes: list[dict[str, Any]], parent: str | None) -> None:
        self.conn().execute(
            "UPDATE sessions SET classes = ?, parent = ? WHERE id = ?",
            (json.dumps(classes), parent, session_id),
        )

    def save_session_model(self, session_id: str, state: ModelState | None) -> None:
        """Keep the session's current model (None: it is the base model again)."""
        path = self.session_dir / f"{_checked(session_id)}.npz"
        if state is None:
            self.conn().execute("UPDATE sessions SET has_model = 0 WHERE id = ?", (session_id,))
            path.unlink(missing_ok=True)
            return
        db.atomic_write(path, state_bytes(state))
        self.conn().execute("UPDATE sessions SET has_model = 1 WHERE id = ?", (session_id,))

    def session_model(self, session_id: str) -> ModelState | None:
        row = self.session_row(session_id)
        path = self.session_dir / f"{_checked(session_id)}.npz"
        return state_from_file(path) if row and row["has_model"] and path.is_file() else None

    # --- corrections ---------------------------------------------------------------------------

    def add_correction(self, session_id: str, c: Correction) -> int:
        with self.transaction() as conn:
            return _insert_correction(conn, session_id, c)

    def update_correction(self, c: Correction) -> None:
        """Store what `c` holds now (its seen map, computed after it was added)."""
        with self.transaction() as conn:
            conn.execute("UPDATE corrections SET data = ? WHERE id = ?", (correction_blob(c), c.id))

    def session_corrections(self, session_id: str) -> list[Correction]:
        rows = self.conn().execute(
            "SELECT c.* FROM corrections c JOIN session_corrections s ON s.correction = c.id"
            " WHERE s.session = ? ORDER BY c.id",
            (session_id,),
        )
        return [correction_from_row(r) for r in rows]

    def remove_corrections(self, session_id: str, ids: list[int] | None = None) -> None:
        """Unlink `ids` (all when None) from the session; rows nothing links to any more go."""
        with self.transaction() as conn:
            if ids is None:
                conn.execute("DELETE FROM session_corrections WHERE session = ?", (session_id,))
            else:
                conn.executemany(
                    "DELETE FROM session_corrections WHERE session = ? AND correction = ?",
                    [(session_id, i) for i in ids],
                )
            _drop_unlinked(conn)

    def swap_corrections(self, session_id: str, remove: list[int], add: list[Correction]) -> list[int]:
        """In one transaction, unlink `remove` from the session and add `add`; → the new ids."""
        with self.transaction() as conn:
            ids = [_insert_correction(conn, session_id, c) for c in add]
            conn.executemany(
                "DELETE FROM session_corrections WHERE session = ? AND correction = ?",
                [(session_id, i) for i in remove],
            )
            _drop_unlinked(conn)
        return ids

    def replace_corrections(self, session_id: str, ids: list[int]) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM session_corrections WHERE session = ?", (session_id,))
            conn.executemany("INSERT INTO session_corrections VALUES (?, ?)", [(session_id, i) for i in ids])
            _drop_unlinked(conn)

    # --- checkpoints ---------------------------------------------------------------------------

    def add_checkpoint(
        self,
        *,
        name: str,
        session: str,
        parent: str | None,
        state: ModelState,
        corrections: list[Correction],
        metrics: dict[str, Any],
        strategy: str,
    ) -> str:
        """Write the model file durably, then commit the row: a listed checkpoint always loads."""
        checkpoint_id = db.new_id()
        db.atomic_write(self.checkpoint_dir / f"{checkpoint_id}.npz", state_bytes(state))
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO checkpoints (id, name, created, session, parent, classes, n_corrections, pixels,"
                " metrics, strategy) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    checkpoint_id,
                    name,
                    time.time(),
                    session,
                    parent,
                    json.dumps(state.classes),
                    len(corrections),
                    sum(c.count for c in corrections),
                    json.dumps(metrics),
                    strategy,
                ),
            )
            conn.executemany(
                "INSERT INTO checkpoint_corrections VALUES (?, ?)",
                [(checkpoint_id, c.id) for c in corrections],
            )
        return checkpoint_id

    def checkpoint_row(self, checkpoint_id: str, owner: str | None = None) -> sqlite3.Row:
        """The checkpoint's row; NotFoundError if there is none, or if `owner` is given and did not
        save it (the same answer: a checkpoint of someone else is not there for you)."""
        row: sqlite3.Row | None = (
            self.conn().execute("SELECT * FROM checkpoints WHERE id = ?", (str(checkpoint_id),)).fetchone()
        )
        if row is None or (owner is not None and row["session"] != owner):
            raise NotFoundError(
                f"unknown checkpoint {checkpoint_id!r}: it is not among the saved checkpoints"
            )
        return row

    def checkpoint_state(self, checkpoint_id: str) -> ModelState:
        """The checkpoint's model; GoneError if its file is missing or damaged (which is then set
        aside as <id>.npz.damaged, so that the checkpoint is no longer listed)."""
        row = self.checkpoint_row(checkpoint_id)
        path = self.checkpoint_dir / f"{_checked(row['id'])}.npz"
        try:
            return state_from_file(path)
        except Exception as exc:  # numpy/zipfile raise assorted errors for damaged files
            if path.is_file():
                path.replace(path.with_suffix(".npz.damaged"))
            log.error("checkpoint %s: its file %s is missing or damaged (%s)", row["id"], path.name, exc)
            raise GoneError(
                f"checkpoint {row['name']!r} can no longer be loaded: its saved model on the server is"
                " missing or damaged (it is no longer listed)"
            ) from None

    def checkpoint_correction_ids(self, checkpoint_id: str) -> list[int]:
        rows = self.conn().execute(
            "SELECT correction FROM checkpoint_corrections WHERE checkpoint = ? ORDER BY correction",
            (checkpoint_id,),
        )
        return [r[0] for r in rows]

    def list_checkpoints(self, owner: str) -> list[dict[str, Any]]:
        """The checkpoints `owner` saved whose file is in place, newest first."""
        rows = self.conn().execute(
            "SELECT * FROM checkpoints WHERE session = ? ORDER BY created DESC, id", (owner,)
        )
        return [describe_checkpoint(r) for r in rows if (self.checkpoint_dir / f"{r['id']}.npz").is_file()]

    def share_checkpoint(self, checkpoint_id: str, owner: str) -> str:
        """The checkpoint's share secret (made on first call); NotFoundError unless `owner` saved it."""
        self.checkpoint_row(checkpoint_id, owner)
        self.conn().execute(
            "UPDATE checkpoints SET share = coalesce(share, ?) WHERE id = ?", (db.new_id(), checkpoint_id)
        )
        share: str = self.checkpoint_row(checkpoint_id)["share"]  # set just above
        return share

    def unshare_checkpoint(self, checkpoint_id: str, owner: str) -> None:
        """Forget the share secret: links given out stop working."""
        self.checkpoint_row(checkpoint_id, owner)
        self.conn().execute("UPDATE checkpoints SET share = NULL WHERE id = ?", (checkpoint_id,))

    def shared_checkpoint_row(self, share: str) -> sqlite3.Row:
        """The checkpoint shared under `share`; NotFoundError for anything else."""
        row: sqlite3.Row | None = (
            self.conn().execute("SELECT * FROM checkpoints WHERE share = ?", (str(share),)).fetchone()
        )
        if row is None:
            raise NotFoundError("no checkpoint is shared under this link (it may have been unshared)")
        return row


def load_checkpoint_model(state_dir: str | Path, checkpoint_id: str, base_model: ServerModel) -> ServerModel:
    """The model saved as checkpoint `checkpoint_id` in `state_dir`, built on `base_model`.

    For tools outside the server (the batch CLI's `--checkpoint ID`): it only reads, so it is safe
    while a server uses the same `state_dir`. NotFoundError for an unknown id.
    """
    if not (Path(state_dir) / DB_NAME).is_file():
        raise NotFoundError(f"no checkpoints in {state_dir}: it holds no {DB_NAME} (wrong --state_dir?)")
    store = Store(state_dir, clean=False)
    return base_model.restore(store.checkpoint_state(checkpoint_id))


def describe_checkpoint(row: sqlite3.Row, owner: bool = True) -> dict[str, Any]:
    """A checkpoint as `GET /checkpoints` lists it to its owner (with its share secret, if shared), or
    as a share link shows it to anyone (no ids)."""
    created = iso_time(row["created"])
    about = {
        "name": row["name"],
        "created": created,
        "time": created,
        "classes": json.loads(row["classes"]),
        "corrections": row["n_corrections"],
        "pixels": row["pixels"],
        "metrics": json.loads(row["metrics"]),
        "strategy": row["strategy"],
    }
    if not owner:
        return about
    return {"id": row["id"], **about, "parent": row["parent"], "share": row["share"]}


def _checked(file_id: str) -> str:
    """`file_id` if it is one of our generated ids (so it is safe in a path), else NotFoundError."""
    if not ID_PATTERN.match(str(file_id)):
        raise NotFoundError(f"no such id: {file_id!r}")
    return file_id


def _insert_correction(conn: sqlite3.Connection, session_id: str, c: Correction) -> int:
    cur = conn.execute(
        "INSERT INTO corrections (created, dataset, crs, value, count, data) VALUES (?,?,?,?,?,?)",
        (time.time(), c.dataset, c.crs, c.value, c.count, correction_blob(c)),
    )
    row_id = cur.lastrowid
    assert row_id is not None  # the INSERT just run set it (it is None only before any INSERT)
    conn.execute("INSERT INTO session_corrections VALUES (?, ?)", (session_id, row_id))
    return row_id


def _drop_unlinked(conn: sqlite3.Connection) -> None:
    conn.execute(
        "DELETE FROM corrections WHERE id NOT IN (SELECT correction FROM session_corrections)"
        " AND id NOT IN (SELECT correction FROM checkpoint_corrections)"
    )
