"""Saved state on disk: a SQLite database in WAL mode, and files written atomically.

Everything that must survive a restart or a `kill -9` goes through here: rows in SQLite
(each change one transaction), files via temp file + fsync + rename (never half-written).
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to the database at `path` (created if missing), WAL, foreign keys on.

    Connections are cheap: open one per thread or per operation rather than sharing one.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    return conn


class Connections:
    """Each thread's own connection to the database at `path` (`connections()` gives the calling
    thread's), made on its first call and kept open: its WAL and shared-memory files then stay in
    place, so that the database can still record a failure when the disk has filled up."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._local = threading.local()

    def __call__(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path)
        return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`with transaction(conn) as conn:` BEGIN IMMEDIATE … COMMIT; ROLLBACK if anything is raised."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def new_id(nbytes: int = 16) -> str:
    """A fresh id for a row and the files named after it: `nbytes` random bytes as hex. At 16 (128
    bits) it is a secret nobody can guess: whoever knows a session's id owns the session."""
    return secrets.token_hex(nbytes)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None] | bytes) -> Path:
    """Write `path` so that it either holds the complete new content or does not change.

    `write` is the bytes to write, or a function that writes a file at the temp path it is
    given (e.g. `model.save`). The temp file sits in the same folder (same file system).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    try:
        if isinstance(write, bytes | bytearray):
            with os.fdopen(fd, "wb") as f:
                f.write(write)
        else:
            os.close(fd)
            write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def migrate(conn: sqlite3.Connection, columns: list[tuple[str, str, str]]) -> None:
    """Add each (table, column, declaration) that a database made by an earlier version lacks."""
    for table, column, declaration in columns:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
