"""Sessions: each user's corrections, fine-tuned model and undo history, isolated from the others.

`SessionManager.model(id)` is what `/predPatch` serves a session with. A session starts as a copy
of the base model (sharing its body); corrections, retraining, new classes, undo and checkpoints
replace its model with a new object, so a prediction in flight never sees a half-changed one.
Every change holds the session's own lock; different sessions never wait for each other.

State lives in a `store.Store` (SQLite + files in `state_dir`): corrections as they are recorded,
the session's current model after each change, checkpoints on request. Memory holds at most
`max_sessions` sessions: ones idle for `idle_s` are let go, and the least recently used idle ones
when there are too many; when none can go, a session that is not in memory waits (503). A session
evicted (or lost to a restart) comes back from the store with its corrections, classes and latest
model; its undo history then holds its corrections only.

A session id is a secret (128 random bits) that only its creator learns: knowing it is owning the
session. Checkpoints belong to the session that saved it; one can be shared on purpose, under a
secret of its own. Logs name sessions by a short digest, never by their id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from rasterio.crs import CRS
from shapely.geometry.base import BaseGeometry

from web_tool import db
from web_tool.DataLoader import DataLoader
from web_tool.errors import BusyError, ClassIndexError, NotFoundError, RequestError, TooLargeError
from web_tool.learning import crossval, finetune
from web_tool.learning.corrections import NO_CLASS, Correction, pixels_inside, record, without
from web_tool.learning.store import Store, describe_checkpoint
from web_tool.learning.training_data import FeatureSource, load_replay
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.state import ModelState

log = logging.getLogger(__name__)

DEFAULT_SESSION = "default"
#: retrains a session can undo (older models are let go)
MAX_UNDO_RETRAINS = 5
#: sessions kept in memory (a session with a tuned body holds a copy of the network's weights)
MAX_SESSIONS = 32
#: seconds without a request after which a session is let go from memory (its state is on disk)
IDLE_S = 30 * 60
#: a session is never evicted within this many seconds of its last use (a request may still hold it)
GRACE_S = 5.0
#: model versions, unique in this process (across sessions and reloads): caches key on them
MODEL_VERSIONS = itertools.count(1)
#: most classes a session may have: exports write class indices as uint8, with 255 for nodata
MAX_CLASSES = 254
#: memory one session's corrections may hold (their pixels and the imagery around them, which
#: retrains learn from): with a 4-band network's 48 px of context, a click holds 47 KB (about
#: 5,700 fit) and the largest area one correction may label (512 x 512 px) 3.9 MB (about 69).
#: It bounds what a retrain reads too: at most 21 samples a click, 220 an area
MAX_SESSION_MB = 256

#: a retrain of the base model on at least this many corrections, none of them where it was
#: right, says how to keep the base model's map where it was right: the retrain cannot tell a
#: mostly right network from a mostly wrong one by its errors alone (README, Known limitations)
ERRORS_ONLY_HINT = 5


def label(session_id: str) -> str:
    """How logs name a session: "default", or a digest of its id (the id itself is a secret)."""
    if session_id == DEFAULT_SESSION:
        return session_id
    return "#" + hashlib.sha256(session_id.encode()).hexdigest()[:8]


#: an undo step: ("correction", its id), ("retrain", (model, metrics, curve) before it), or ("erase",
#: (the corrections it removed, the ids of the parts it left of them, pixels erased))
Step = (
    tuple[Literal["correction"], int]
    | tuple[Literal["retrain"], tuple[ServerModel, dict[str, Any], list[dict[str, Any]]]]
    | tuple[Literal["erase"], tuple[list[Correction], list[int], int]]
)


class HeavyTurns(Protocol):
    """Turns for heavy work (http.admission.Gate, which this stage may not import)."""

    def turn(self, refusable: bool = True) -> AbstractContextManager[None]: ...


@dataclass
class Session:
    """One user's state. `history` holds its undo steps, oldest first."""

    id: str
    model: ServerModel
    corrections: list[Correction]
    parent: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: the learning curve: one point per retrain ({"corrections", "accuracy", "accuracy_se", ...})
    curve: list[dict[str, Any]] = field(default_factory=list)
    history: list[Step] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: correction id → the model whose map the user saw there, until `seen` is computed (after the
    #: answer to /recordCorrection, in a heavy turn; models never change, so it is the same map)
    unseen: dict[int, ServerModel] = field(default_factory=dict)
    #: time.monotonic() of the last request that used this session
    used: float = 0.0
    #: changes whenever `model` is assigned (see __setattr__): what prediction caches key on
    version: int = field(default=0, init=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name == "model":  # after the model: a reader of `version`, then `model`, never pairs a
            object.__setattr__(self, "version", next(MODEL_VERSIONS))  # new version with an old model

    @property
    def classes(self) -> list[dict[str, Any]]:
        return self.model.classes

    def remember_retrain(self) -> None:
        """Keep the current model for undo (only the last MAX_UNDO_RETRAINS: tuned bodies are big)."""
        self.history.append(("retrain", (self.model, self.metrics, list(self.curve))))
        retrains = [i for i, (kind, _) in enumerate(self.history) if kind == "retrain"]
        for i in reversed(retrains[:-MAX_UNDO_RETRAINS]):
            del self.history[i]

    def describe(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "classes": self.classes,
            "corrections": len(self.corrections),
            "pixels": sum(c.count for c in self.corrections),
            "parent": self.parent,
            "trained": self.model.trained,
            "metrics": self.metrics,
            "curve": self.curve,
            "version": self.version,
            "undo_steps": len(self.history),
            "next_undo": self.history[-1][0] if self.history else None,
        }


class SessionManager:
    """All sessions of one server: created from `base`, trained with the `fine_tune` strategy."""

    def __init__(
        self,
        base: ServerModel,
        state_dir: str | Path,
        fine_tune: str = "last_layer",
        replay_file: str | Path | None = None,
        options: dict[str, Any] | None = None,
        max_sessions: int = MAX_SESSIONS,
        idle_s: float = IDLE_S,
        clock: Callable[[], float] = time.monotonic,
        gate: HeavyTurns | None = None,
    ):
        self.base = base
        #: heavy turns (admission.Gate) for the model work a correction leaves for later; None: none
        self.gate = gate
        self._later = threading.Lock()  # one correction's model work at a time
        self.store = Store(state_dir)
        self.fine_tune = fine_tune
        self.strategy = finetune.get_strategy(fine_tune)
        self.options = options or {}
        self.strategy.check(base, **self.options)
        self.replay_file = replay_file
        self.source = FeatureSource(base, load_replay(replay_file))
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.max_sessions, self.idle_s, self.clock = max(1, max_sessions), idle_s, clock
        self.store.add_session(DEFAULT_SESSION, base.classes)
        if legacy := self.store.legacy_sessions():
            log.warning(
                "%d session(s) in %s were made by an earlier version, whose session ids were not"
                " secret (GET /checkpoints listed them); they keep working, but start a new"
                " session for work that nobody else may touch",
                legacy,
                state_dir,
            )

    # --- finding sessions ----------------------------------------------------------------------

    def create(self) -> str:
        """A new session; its id is told to the caller alone."""
        session_id = db.new_id()
        self.store.add_session(session_id, self.base.classes)
        return session_id

    def get(self, session_id: str | None) -> Session:
        """The session (loaded from the store after a restart); NotFoundError if unknown, BusyError
        when `max_sessions` are in memory and none of them can be let go yet."""
        session_id = session_id or DEFAULT_SESSION
        with self._lock:
            session = self._sessions.get(session_id)
            self._evict(room_for=session is None)
            if session is None:
                session = self._load(session_id)
                if len(self._sessions) >= self.max_sessions:
                    raise BusyError(
                        f"the server already holds its {self.max_sessions} sessions in memory, all in use"
                        " right now: try again in a few seconds",
                        retry_after=GRACE_S,
                    )
                self._sessions[session_id] = session
            session.used = self.clock()
            return session

    def owner(self, session_id: str | None) -> str:
        """The id of an existing session (the default one for None), without loading it; NotFoundError
        for an unknown one. What things other than sessions (jobs) are owned by."""
        session_id = session_id or DEFAULT_SESSION
        if session_id not in self._sessions and self.store.session_row(session_id) is None:
            self._load(session_id)  # raises the one "unknown session" error
        return session_id

    @contextmanager
    def unchanged_on_failure(self, session_id: str | None) -> Iterator[Session]:
        """Hold the session's lock for the `with` block; if it fails, put the session in memory back
        as it was (whatever the failure: a full disk after the model was swapped, say)."""
        session = self.get(session_id)
        with session.lock:
            before = {k: list(v) if isinstance(v, list) else v for k, v in vars(session).items()}
            try:
                yield session
            except BaseException:
                vars(session).update(before)
                raise

    def in_memory(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def _evict(self, room_for: int) -> None:
        """Let go of idle sessions, then of the least recently used ones while there are too many.

        Everything a session has is already in the store, so letting go loses only the undo
        history of its retrains. A session busy or used within GRACE_S is kept, even over the cap.
        Called with `self._lock` held.
        """
        now = self.clock()
        by_age = sorted(self._sessions.values(), key=lambda s: s.used)
        excess = len(by_age) + room_for - self.max_sessions
        for session in by_age:
            idle = now - session.used
            if idle < GRACE_S or not (idle >= self.idle_s or excess > 0):
                continue
            if not session.lock.acquire(blocking=False):  # a retrain or correction is running
                continue
            try:
                del self._sessions[session.id]
                excess -= 1
                log.info("session %s let go from memory after %.0f s idle", label(session.id), idle)
            finally:
                session.lock.release()

    def _load(self, session_id: str) -> Session:
        row = self.store.session_row(session_id) if isinstance(session_id, str) else None
        if row is None:
            raise NotFoundError(
                f"unknown session {session_id!r}: create one with POST /sessions, or leave `session`"
                " out to use the shared default session"
            )
        state = self.store.session_model(session_id)
        model = self.base.restore(state) if state is not None else self.base
        corrections = self.store.session_corrections(session_id)
        history = correction_steps(corrections)
        meta = state.meta if state is not None else {}
        session = Session(
            session_id,
            model,
            corrections,
            parent=row["parent"],
            history=history,
            metrics=meta.get("metrics", {}),
            curve=meta.get("curve", []),
        )
        if state is None:
            session.version = 0  # the base model's own version: prediction caches share it
        return session

    def model(self, session_id: str | None) -> ServerModel:
        return self.get(session_id).model

    def describe(self, session_id: str | None) -> dict[str, Any]:
        return self.get(session_id).describe()

    # --- corrections ---------------------------------------------------------------------------

    def record(
        self, session_id: str | None, loader: DataLoader, geom: BaseGeometry, crs: CRS, value: int
    ) -> int:
        """Label the native pixels of `loader` inside `geom` (in `crs`) as `value`; → pixel count.

        No model work here (it would wait behind other users' predictions in TensorFlow's one
        thread pool): the map the user saw, and what the next retrain needs, are computed after the
        answer, in a heavy turn, or by the retrain if it comes first. Without heavy turns (`gate`
        None: no server) they are computed here."""
        session = self.get(session_id)
        check_class(value, session.classes, session.id)
        # twice the model's context: the map the user saw, and the features, are then right over the
        # whole area around the correction that anchors are drawn from (training_data.py)
        correction = record(loader, geom, crs, value, context=2 * self.base.padding)
        with session.lock:
            check_class(value, session.classes, session.id)
            check_room(session, correction)
            correction.id = self.store.add_correction(session.id, correction)
            session.corrections.append(correction)
            session.history.append(("correction", correction.id))
            session.unseen[correction.id] = session.model
            if self.gate is None:  # no heavy turns to leave it to (no server): now
                self._see(session, [correction])
        if self.gate is not None:  # a thread of its own, which ends (and lets go of what it held) after
            threading.Thread(
                target=self._see_later,
                args=(self.gate, session, correction.id),
                daemon=True,
                name=f"correction-{correction.id}",
            ).start()
        return correction.count

    def _see_later(self, gate: HeavyTurns, session: Session, correction_id: int) -> None:
        """`_see` for one correction, in a heavy turn of `gate`; the model runs outside the session's
        lock (the user's next correction does not wait for it)."""
        if correction_id not in session.unseen:  # a retrain saw to it
            return
        try:
            with self._later, gate.turn(refusable=False):
                with session.lock:
                    model = session.unseen.get(correction_id)
                    found = [c for c in session.corrections if c.id == correction_id]
                if model is None or not found:  # seen by a retrain already, or undone
                    session.unseen.pop(correction_id, None)
                    return
                (seen,) = self._seen_maps(model, found)
                with session.lock:
                    if session.unseen.pop(correction_id, None) is not None:
                        self._store_seen(found[0], seen)
                self._prepare(model, found[0])
        except Exception:  # the retrain will compute it (or report what is wrong)
            log.exception("could not ready correction %s for retraining", correction_id)

    def _see(self, session: Session, corrections: list[Correction]) -> None:
        """Give those of `corrections` still without it the map the user saw (stored with them), and
        ready what the next retrain needs. Called with the session's lock held."""
        unseen = [(c, m) for c in corrections if c.id is not None and (m := session.unseen.pop(c.id, None))]
        for model in {id(m): m for _, m in unseen}.values():  # the maps of each model at once
            mine = [c for c, m in unseen if m is model]
            for c, seen in zip(mine, self._seen_maps(model, mine), strict=True):
                self._store_seen(c, seen)
                self._prepare(model, c)

    def _seen_maps(
        self, model: ServerModel, corrections: list[Correction]
    ) -> list[tuple[np.ndarray | None, float | None]]:
        """`seen_map` of each correction, but where learning reads it only when the model's head
        reads the features the base model's extractor gives (and caches for learning): the same
        classes there, at a fraction of the cost (a learnt forest over a whole window takes longer
        than its features)."""
        if not model.trained or model.extractor_id != self.base.extractor_id:
            return [seen_map(model, c.image) for c in corrections]
        return [(seen, seen_trust(model)) for seen in self.source.seen_maps(model, corrections)]

    def _store_seen(self, c: Correction, seen: tuple[np.ndarray | None, float | None]) -> None:
        c.seen, c.seen_trust = seen
        self.store.update_correction(c)

    def _prepare(self, model: ServerModel, c: Correction) -> None:
        try:  # ready what the next retrain needs while the user goes on clicking
            self.strategy.prepare(model, self.base, c, self.source, **self.options)
        except Exception:  # the retrain will compute it (or report what is wrong)
            log.exception("could not prepare correction %s for retraining", c.id)

    def erase(self, session_id: str | None, dataset: str, geom: BaseGeometry, crs: CRS) -> dict[str, Any]:
        """Un-label the session's corrected pixels of `dataset` inside `geom` (in `crs`); undoable."""
        session = self.get(session_id)
        with session.lock:
            self._see(session, session.corrections)  # the parts kept keep their seen maps
            gone, parts, count = [], [], 0
            for c in session.corrections:
                inside = pixels_inside(c, geom, crs) if c.dataset == dataset else None
                if inside is not None and inside.any():
                    gone.append(c)
                    count += int(inside.sum())
                    parts += [without(c, inside)] if not inside.all() else []
            if gone:
                gone_ids = stored_ids(gone)
                new_ids = self.store.swap_corrections(session.id, gone_ids, parts)
                for part, new in zip(parts, new_ids, strict=True):
                    part.id = new
                session.corrections = [c for c in session.corrections if c.id not in gone_ids] + parts
                session.history.append(("erase", (gone, new_ids, count)))
            message = f"erased {count} corrected pixel(s)" if count else "no corrected pixels there"
            return {"count": count, "corrections": len(session.corrections), "message": message}

    def _unerase(self, session: Session, erased: tuple[list[Correction], list[int], int]) -> int:
        """Undo an erase: its corrections come back (under new ids), the parts it left go."""
        gone, part_ids, count = erased
        new_ids = self.store.swap_corrections(session.id, part_ids, gone)
        renamed: dict[int | None, int] = {}
        for c, new in zip(gone, new_ids, strict=True):
            renamed[c.id], c.id = new, new
        session.corrections = [c for c in session.corrections if c.id not in set(part_ids)] + gone
        session.history = [renamed_step(step, renamed) for step in session.history]
        return count

    def add_class(self, session_id: str | None, name: str, color: str) -> list[dict[str, Any]]:
        session = self.get(session_id)
        with session.lock:
            if any(c["name"].lower() == name.lower() for c in session.classes):
                raise ClassIndexError(f"session {session.id!r} already has a class named {name!r}")
            model = session.model
            head = None if model.head is None else model.head.grown()
            session.model = model.with_head(head, [*model.classes, {"name": name, "color": color}])
            self._save(session)
            return session.classes

    # --- learning ------------------------------------------------------------------------------

    def retrain(self, session_id: str | None) -> dict[str, Any]:
        """Fine-tune the session's model on all its corrections → {"message", "metrics", "curve"}."""
        session = self.get(session_id)
        with session.lock:
            corrections = list(session.corrections)
            if not corrections:
                raise RequestError("nothing to learn from yet: correct some pixels first, then retrain")
            self._see(session, corrections)
            from_base = not session.model.learnt  # the map the user saw was the base model's
            start = time.perf_counter()
            model, info = self.strategy.fit(
                session.model, self.base, corrections, self.source, **self.options
            )
            seconds = time.perf_counter() - start
            metrics = self.strategy.crossval(model, self.base, corrections, self.source, **self.options)
            metrics = crossval.compare(metrics, session.curve)
            session.remember_retrain()
            session.model, session.metrics = model, metrics
            session.curve = [*session.curve, curve_point(metrics)]
            self._save(session)
        return {
            "message": self._message(info, corrections, metrics, seconds, from_base),
            "metrics": metrics,
            "curve": session.curve,
            "seconds": round(seconds, 3),
            "strategy": self.fine_tune,
        }

    def _message(
        self,
        info: dict[str, Any],
        corrections: list[Correction],
        metrics: dict[str, Any],
        seconds: float,
        from_base: bool,
    ) -> str:
        if info.get("replay_pixels"):
            replay = f" + {info['replay_pixels']} replay pixels"
        elif self.source.replay is None and self.base.trained:
            replay = f"; no replay data ({self.replay_file} not found): classes nobody corrected may drift"
        else:
            replay = ""
        hint = ""
        if (
            from_base
            and self.base.trained
            and len(corrections) >= ERRORS_ONLY_HINT
            and info.get("base_agreeing") == 0
        ):
            hint = (
                f". All {len(corrections)} corrections were on the model's own errors: if its map was"
                " mostly right elsewhere, label a few places it has right too (or undo this retrain),"
                " so that the next retrain keeps them"
            )
        return (
            f"retrained ({self.fine_tune}) on {len(corrections)} corrections ({info['pixels']} px)"
            f" + {info['anchor_pixels']} pixels you left alone around them{replay} in {seconds:.2f} s;"
            f" {crossval.summary(metrics)}{hint}"
        )

    # --- undo, reset ---------------------------------------------------------------------------

    def undo(self, session_id: str | None) -> dict[str, Any]:
        """Step back one correction or one retrain → {"count": pixels un-labelled, "undone", ...}."""
        session = self.get(session_id)
        with session.lock:
            if not session.history:
                return {
                    "count": 0,
                    "undone": None,
                    "message": "nothing to undo",
                    "corrections": len(session.corrections),
                }
            step = session.history.pop()
            count = 0
            if step[0] == "correction":
                item = step[1]
                gone = [c for c in session.corrections if c.id == item]
                session.corrections = [c for c in session.corrections if c.id != item]
                self.store.remove_corrections(session.id, [item])
                count = sum(c.count for c in gone)
                message = f"removed the last correction ({count} px)"
            elif step[0] == "erase":
                count = self._unerase(session, step[1])
                message = f"put back {count} erased pixel(s)"
            else:
                session.model, session.metrics, session.curve = step[1]
                self._save(session)
                message = "went back to the model before the last retrain"
            return {
                "count": count,
                "undone": step[0],
                "message": message,
                "corrections": len(session.corrections),
            }

    def reset(self, session_id: str | None) -> dict[str, Any]:
        session = self.get(session_id)
        with session.lock:
            n = len(session.corrections)
            self.store.remove_corrections(session.id)
            session.model, session.corrections, session.history = self.base, [], []
            session.metrics, session.curve, session.parent = {}, [], None
            self._save(session)
        return {"message": f"back to the base model; {n} corrections cleared", "count": n}

    def _save(self, session: Session) -> None:
        """Persist the session's model (None when it is the base model) and its classes/lineage."""
        model = session.model
        untouched = (
            model.head is self.base.head
            and model.classes == self.base.classes
            and (model.extractor_state() is None)
        )
        self.store.save_session_model(session.id, None if untouched else self._state(session))
        self.store.set_session(session.id, session.classes, session.parent)

    def _state(self, session: Session) -> ModelState:
        state = session.model.state()
        state.meta.update(metrics=session.metrics, curve=session.curve)
        return state

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, session_id: str | None, name: str | None = None) -> str:
        session = self.get(session_id)
        with session.lock:
            checkpoint_id = self.store.add_checkpoint(
                name=name or f"after {len(session.corrections)} corrections",
                session=session.id,
                parent=session.parent,
                state=self._state(session),
                corrections=list(session.corrections),
                metrics=session.metrics,
                strategy=self.fine_tune,
            )
            session.parent = checkpoint_id
            self.store.set_session(session.id, session.classes, session.parent)
        return checkpoint_id

    def list_checkpoints(self, session_id: str | None) -> list[dict[str, Any]]:
        """The checkpoints the session saved."""
        return self.store.list_checkpoints(self.owner(session_id))

    def share_checkpoint(self, checkpoint_id: str, session_id: str | None) -> str:
        """The secret under which anyone may load the session's checkpoint (the same each time)."""
        return self.store.share_checkpoint(checkpoint_id, self.owner(session_id))

    def unshare_checkpoint(self, checkpoint_id: str, session_id: str | None) -> None:
        self.store.unshare_checkpoint(checkpoint_id, self.owner(session_id))

    def describe_shared(self, share: str) -> dict[str, Any]:
        """What a share link shows: the checkpoint's name, classes, counts and metrics (no ids)."""
        return describe_checkpoint(self.store.shared_checkpoint_row(share), owner=False)

    def load_checkpoint(
        self, checkpoint_id: str | None, session_id: str | None, share: str | None = None
    ) -> dict[str, Any]:
        """Replace the session's model and corrections with a checkpoint's: one it saved, or one
        shared with it (`share`, the secret of a share link)."""
        session = self.get(session_id)
        if share is not None:
            row = self.store.shared_checkpoint_row(share)
        elif checkpoint_id is not None:
            row = self.store.checkpoint_row(checkpoint_id, owner=session.id)
        else:
            raise RequestError("send `checkpoint` (an id from GET /checkpoints) or `share` (a share link's)")
        state = self.store.checkpoint_state(row["id"])
        model = self.base.restore(state)
        with session.lock:
            self.store.replace_corrections(session.id, self.store.checkpoint_correction_ids(row["id"]))
            session.corrections = self.store.session_corrections(session.id)
            session.history = correction_steps(session.corrections)
            session.model, session.parent = model, row["id"]
            session.metrics = json.loads(row["metrics"])
            session.curve = state.meta.get("curve", [])
            self._save(session)
        return {
            "message": f"loaded checkpoint {row['name']!r} ({len(session.corrections)} corrections)",
            "session": session.id,
            "checkpoint": row["id"],
            "classes": session.classes,
        }


def seen_map(model: ServerModel, image: np.ndarray) -> tuple[np.ndarray | None, float | None]:
    """(the classes `model` maps over a correction's window, pixel by pixel (before a learnt head's
    probabilities are smoothed, as FeatureSource.seen_maps computes them where learning reads them),
    and how far that map is trusted), or
    (None, None) when it maps nothing yet. A map the session learnt is the user's own: fully
    trusted; the base model's (None) is judged by the evidence when learning (training_data.Trust).
    Pixels without imagery (zero in every band) are NO_CLASS."""
    if not model.trained:
        return None, None
    seen = model.predict(image, smooth=False).argmax(axis=-1).astype(np.uint8)
    seen[~image.any(axis=-1)] = NO_CLASS
    return seen, seen_trust(model)


def seen_trust(model: ServerModel) -> float | None:
    """How far the map `model` shows is trusted: fully when the session learnt it, judged when
    learning when it is the base model's (None)."""
    return 1.0 if model.learnt else None


def stored_ids(corrections: list[Correction]) -> list[int]:
    """The store's ids of `corrections` (every correction a session holds is stored)."""
    return [c.id for c in corrections if c.id is not None]


def correction_steps(corrections: list[Correction]) -> list[Step]:
    """The undo history of corrections loaded from the store: one step each."""
    return [("correction", i) for i in stored_ids(corrections)]


def renamed_step(step: Step, renamed: dict[int | None, int]) -> Step:
    """`step` with the correction ids in `renamed` replaced by their new ones."""
    if step[0] == "correction":
        return ("correction", renamed.get(step[1], step[1]))
    if step[0] == "erase":
        gone, part_ids, count = step[1]
        return ("erase", (gone, [renamed.get(i, i) for i in part_ids], count))
    return step


def curve_point(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("corrections", "accuracy", "accuracy_se", "worse")
    return {k: metrics[k] for k in keys if k in metrics}


def check_room(session: Session, correction: Correction) -> None:
    """TooLargeError when `correction` would take `session`'s corrections past MAX_SESSION_MB."""
    limit = MAX_SESSION_MB * 2**20
    held = sum(c.nbytes for c in session.corrections)
    if held + correction.nbytes > limit:
        raise TooLargeError(
            f"session {session.id!r} holds {len(session.corrections)} corrections taking"
            f" {held / 2**20:.0f} MB, and this one ({correction.count} px) would take it past the"
            f" {limit / 2**20:.0f} MB one session may hold: erase corrections you no longer need,"
            " or save a checkpoint and map the rest in a new session"
        )


def check_class(value: int, classes: list[dict[str, Any]], session_id: str) -> None:
    if not 0 <= value < len(classes):
        names = ", ".join(f"{i} {c['name']}" for i, c in enumerate(classes))
        raise ClassIndexError(
            f"class index {value} is out of range: session {session_id!r} has {len(classes)} classes"
            f" ({names}); add the class first"
        )
