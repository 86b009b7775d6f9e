"""What learning from corrections trains on, and how much each sample weighs.

Three kinds of samples, all as per-pixel values (a model's features, or what a network's frozen
part gives for `last_k_layers`):

- **corrections**: the pixels the user labelled (a fixed sample of at most `per_correction` of
  each correction). A correction weighs sqrt(its pixel count): a click 1, a 100-pixel stroke 10.
- **anchors**: pixels around a correction with the class the map the user saw showed there: what
  the user left alone counts as accepted. Around a correction made on a map the session learnt
  (the user's own work), as far as the user is hunting that map's errors (`error_hunting`): this
  keeps a later round from undoing an earlier one. A user who labels points the map already had
  right (random points, the tool's suggestions) has not judged what lies around them: anchors
  there would teach the forest its own map back, errors and all. Around one
  made on the base model's map, only where it confirms that map (the user labelled the class it
  already showed) and as far as that map is trusted (`Trust.map`): so clicks on a map that is
  already right never make it worse, while a click that corrects the base model lies in a patch
  of its errors more often than not, and a chance hit of a base model that is mostly wrong
  (the synthetic demo model on real NAIP) is no evidence for the map around it.
- **replay**: a sample of the base model's own training data (`<model>.replay.npz`: `images`
  (N, S, S, B) uint8, `labels` (N, S, S)), so classes nobody corrected are not forgotten.
- **handed back** (a network's head only): the anchor pixels again, with the label "the network
  knows" (`DeferringHead`): where the forest learns that label, the map is the network's own. They
  weigh as far as the network has kept its word where it says their class (`network_say`), and
  the anchors' own labels give way as far (`displace_anchors`).

Why handed back as well as anchors: a forest learnt from clicks on a map's errors alone maps
everything like those errors. A network that is right on most of the imagery (the user's own model,
on imagery like its training data) lost its map to the retrains that way for good
(`bench/hitl_real.py`, a network 88 % right on real NAIP: 0.16 after 25 clicks on its errors, 0.36
after 200). The forest cannot copy the network back from a few pixels; it can learn where to leave
the map to it. The first retrain still cannot tell (every correction so far was of the network's own
map, which says nothing either way); the next ones can, where the user sides with the network
against the learnt map (the same network: 0.87 from the second round on).

How much the replay sample counts follows the evidence, per class: how well the base model agrees
with the user's corrections of that class, none of which it was trained on, starting from PRIOR
agreeing corrections' worth of benefit of the doubt. Corrections are chosen where the map is
wrong, so they always find the base model wrong; the prior keeps its say over the first few dozen
clicks, on imagery it knows, and lets the corrections decide once they pile up.

Values that do not depend on the session (the base extractor's features) are cached per
correction and for the replay sample, so retraining with hundreds of corrections stays fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cachetools
import numpy as np

from web_tool.learning.corrections import NO_CLASS, Correction, anchor_pixels, sample_pixels
from web_tool.ServerModels.base import ServerModel
from web_tool.ServerModels.heads import LinearHead

log = logging.getLogger(__name__)

#: memory the values of corrections' pixels (and of the replay sample) may take between retrains,
#: all sessions together; the least recently used go first (a retrain computes them again)
CACHE_MB = 512
#: corrected pixels of one correction that learning uses at most
PER_CORRECTION = 200
#: anchor pixels around one correction
ANCHORS = 20
#: replay pixels per class
REPLAY_PER_CLASS = 300
#: the replay sample's weight, as a fraction of all corrections' weight, when the base model is
#: fully trusted (scaled down by the base model's agreement with the corrections)
REPLAY_WEIGHT = 0.5
#: what the pixels a correction hands back to the network weigh together, in clicks, where the
#: network's class there is fully trusted (`network_say` 1)
HANDED_BACK_WEIGHT = 2.0
#: the network's word counts for nothing up to this `network_say`, fully at 1 (overall and for a
#: class: both must hold)
SAY_FLOOR = 0.5
#: each class's `network_say` before any evidence, and how many corrections' worth that guess weighs
SAY_PRIOR, SAY_PRIOR_WEIGHT = 0.5, 6.0
#: `error_hunting` before any evidence is 1 (the user corrects errors), worth this many corrections
HUNT_PRIOR_WEIGHT = 4.0


@dataclass
class Replay:
    """Image tiles (N, S, S, B) uint8 and their labels (N, S, S) uint8."""

    images: np.ndarray
    labels: np.ndarray


def replay_path(model_fn: str | Path) -> Path:
    """`<model_fn without extension>.replay.npz`."""
    path = Path(model_fn)
    if path.suffix in (".keras", ".h5", ".json"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".replay.npz")


def load_replay(path: str | Path | None) -> Replay | None:
    """The replay sample at `path`, or None (logged) when there is none or it cannot be read."""
    if path is None or not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels = f["images"], f["labels"]
    except Exception as exc:
        log.warning("ignoring replay file %s: %s", path, exc)
        return None
    if images.ndim != 4 or labels.shape != images.shape[:3]:
        log.warning(
            "ignoring replay file %s: images %s and labels %s do not match", path, images.shape, labels.shape
        )
        return None
    return Replay(images.astype(np.uint8), labels.astype(np.uint8))


def class_weights(y: np.ndarray, total: float) -> np.ndarray:
    """Per-sample weights, equal in sum for every class present, summing to `total`."""
    if y.size == 0:
        return np.zeros(0, np.float32)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (total / len(classes) / counts)[inverse].astype(np.float32)


def correction_weight(c: Correction) -> float:
    return float(np.sqrt(c.count))


#: what a sample is made from: HxWxB uint8 imagery -> HxWxC per-pixel values (features, activations)
Extractor = Callable[[np.ndarray], np.ndarray]


def pixel_values(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, radius: int | None) -> np.ndarray:
    """(n, C) values at the pixels, or (n, 2r+1, 2r+1, C) patches around them (zeros outside)."""
    if radius is None:
        at: np.ndarray = values[rows, cols]  # numpy types indexing by arrays as Any
        return at
    padded = np.pad(values, ((radius, radius), (radius, radius), (0, 0)))
    offsets = np.arange(2 * radius + 1)
    return padded[(rows[:, None] + offsets)[:, :, None], (cols[:, None] + offsets)[:, None, :]]


@dataclass
class Samples:
    """Training samples: values `x`, classes `y`, weights `w`, and for each sample the index of
    the correction it comes from (`group`; -1 for replay) and whether it is a labelled pixel."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    group: np.ndarray
    labelled: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, keep: np.ndarray) -> Samples:
        return Samples(self.x[keep], self.y[keep], self.w[keep], self.group[keep], self.labelled[keep])

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        return Samples(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "w", "group", "labelled"))
        )


class FeatureSource:
    """Training samples for one base model: values at corrected, anchor and replay pixels, cached.

    Callers say how values are made (an Extractor) and give a cache `key` naming it when it is the
    same for every session (the base model's extractor, or a network's frozen part); None = do not
    cache.
    """

    def __init__(
        self,
        base: ServerModel,
        replay: Replay | None,
        per_correction: int = PER_CORRECTION,
        anchors: int = ANCHORS,
        replay_per_class: int = REPLAY_PER_CLASS,
        seed: int = 0,
        cache_mb: float = CACHE_MB,
    ):
        self.base = base
        #: anchors lie this far inside a correction's window: the context its features need
        self.margin = base.padding
        self.replay = replay
        self.per_correction, self.anchors = per_correction, anchors
        self.replay_per_class = replay_per_class
        self.seed = seed
        #: (key, radius, correction id) or ("replay", key, radius, n_classes) → values (and classes)
        self._cache: cachetools.LRUCache[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = (
            cachetools.LRUCache(cache_mb * 2**20, getsizeof=lambda arrays: sum(a.nbytes for a in arrays))
        )
        self._cache_lock = threading.Lock()  # cachetools' caches are not thread-safe
        self._lock = threading.Lock()
        self._warming: set[tuple[object, int]] = set()

    # --- values at pixels, cached -------------------------------------------------------------

    def pixels(self, c: Correction) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, cols) of the correction's sampled pixels, then (rows, cols) of its anchor pixels:
        the pixels learning reads of it (its values, and the map the user saw there)."""
        idx = sample_pixels(c, self.per_correction)
        return (c.rows[idx], c.cols[idx], *anchor_pixels(c, self.anchors, self.margin))

    def values(
        self, extract: Extractor, key: object, c: Correction, radius: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(values at the correction's sampled pixels, values at its anchor pixels)."""
        cache_key = (key, radius, c.id)
        if key is not None and c.id is not None and (hit := self._cached(cache_key)) is not None:
            return hit
        rows, cols, anchor_rows, anchor_cols = self.pixels(c)
        values = extract(c.image)
        out = (
            pixel_values(values, rows, cols, radius),
            pixel_values(values, anchor_rows, anchor_cols, radius),
        )
        if key is not None and c.id is not None:
            self._keep(cache_key, out)
        return out

    def _cached(self, cache_key: tuple[object, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        with self._cache_lock:
            return self._cache.get(cache_key)

    def _keep(self, cache_key: tuple[object, ...], arrays: tuple[np.ndarray, np.ndarray]) -> None:
        """Cache `arrays` (not when they alone are over the budget)."""
        with self._cache_lock:
            if self._cache.getsizeof(arrays) <= self._cache.maxsize:
                self._cache[cache_key] = arrays

    def seen_maps(self, model: ServerModel, corrections: list[Correction]) -> list[np.ndarray]:
        """For each correction, the HxW classes `model` maps at the pixels learning reads of the map
        the user saw, its sampled and anchor pixels (NO_CLASS elsewhere, and where there is no
        imagery), from the values `values` caches: the head on a few hundred rows a correction (in
        one call for them all: a forest's call costs as much as hundreds of rows) instead of the
        whole model on every window. `model` has a head, and the base model's extractor. The
        anchors are the ones drawn before a correction has a seen map (corrections.anchor_pixels),
        and after."""
        assert model.head is not None and model.extractor_id == self.base.extractor_id
        pixels: list[tuple[np.ndarray, np.ndarray]] = []
        values: list[np.ndarray] = []
        for c in corrections:
            rows, cols, anchor_rows, anchor_cols = self.pixels(c)
            pixels.append((np.concatenate([rows, anchor_rows]), np.concatenate([cols, anchor_cols])))
            values += self.values(model.features, model.extractor_id, c)
        classes = model.head.predict(np.concatenate(values)).argmax(axis=-1) if values else []
        out, start = [], 0
        for c, (rows, cols) in zip(corrections, pixels, strict=True):
            seen = np.full(c.image.shape[:2], NO_CLASS, np.uint8)
            seen[rows, cols] = classes[start : start + len(rows)]
            seen[~c.image.any(axis=-1)] = NO_CLASS
            out.append(seen)
            start += len(rows)
        return out

    def warm_replay(self, extract: Extractor, key: object, n_classes: int) -> None:
        """Compute the replay values in the background, once per key: the first retrain would
        otherwise spend seconds on them (a retrain meanwhile waits for them, it does not redo them)."""
        if self.replay is None or key is None or (key, n_classes) in self._warming:
            return
        self._warming.add((key, n_classes))

        def warm() -> None:
            try:
                self.replay_values(extract, key, n_classes)
            except Exception:  # the retrain computes them again, and reports what is wrong
                log.exception("could not compute the replay sample's values")

        threading.Thread(target=warm, daemon=True, name="replay-values").start()

    def replay_values(
        self, extract: Extractor, key: object, n_classes: int, radius: int | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(values, classes) at up to `replay_per_class` replay pixels per class, or None."""
        replay = self.replay
        if replay is None:
            return None
        with self._lock:
            cache_key = ("replay", key, radius, n_classes)
            if key is not None and (hit := self._cached(cache_key)) is not None:
                return hit
            n, r, c = self._replay_pixels(replay, n_classes)
            xs = [pixel_values(extract(replay.images[i]), r[n == i], c[n == i], radius) for i in np.unique(n)]
            out = (np.concatenate(xs) if xs else np.zeros((0,)), replay.labels[n, r, c].astype(np.int64))
            if key is not None:
                self._keep(cache_key, out)
            return out

    def _anchors(
        self, c: Correction, i: int, values: np.ndarray, weight: float, base_trust: Trust, hunting: float
    ) -> Samples:
        """The anchor samples of correction `c` (the `i`-th), together weighing as much as it does:
        around a correction made on a learnt map (as many as the user is `hunting` its errors), or
        one that confirms the base model's map (as many as that map is trusted); none around one
        that corrects the base model (a patch of its errors more often than not)."""
        assert c.seen is not None
        _, _, rows, cols = self.pixels(c)
        seen = c.seen[rows, cols].astype(np.int64)
        if c.seen_trust is not None:  # a map the session learnt: the user's own work
            trust = c.seen_trust * hunting
        else:  # the base model's map: only around a click that confirms it, as far as it is trusted
            trust = base_trust.map if confirms(c) else 0.0
        keep = (seen < NO_CLASS) & thinned(np.full(len(seen), trust), c.seed)
        return Samples(
            values[keep],
            seen[keep],
            np.full(keep.sum(), weight / max(1, len(seen))),
            np.full(keep.sum(), i),
            np.zeros(keep.sum(), bool),
        )

    def handed_back(
        self,
        extract: Extractor,
        key: object,
        corrections: list[Correction],
        network: LinearHead,
        say: np.ndarray,
        label: int,
    ) -> Samples | None:
        """Each correction's anchor pixels labelled `label` ("the network knows"), each weighing as
        far as the network is trusted for its class there (`network_gate`), together at most
        HANDED_BACK_WEIGHT times the correction's weight; pixels of classes not trusted at all are
        left out."""
        gate = network_gate(say)
        parts = []
        for i, c in enumerate(corrections):
            anchors = self.values(extract, key, c)[1]
            if not len(anchors):
                continue
            trusted = gate[network.predict(anchors).argmax(axis=-1)]
            w = HANDED_BACK_WEIGHT * correction_weight(c) / len(anchors) * trusted
            keep = w > 0
            n = int(keep.sum())
            parts.append(Samples(anchors[keep], np.full(n, label), w[keep], np.full(n, i), np.zeros(n, bool)))
        return Samples.concat(parts) if parts else None

    def _replay_pixels(self, replay: Replay, n_classes: int) -> tuple[np.ndarray, ...]:
        labels = replay.labels
        rng = np.random.default_rng(self.seed)
        picks = []
        for value in range(n_classes):
            where = np.flatnonzero(labels.reshape(-1) == value)
            if where.size:
                picks.append(rng.choice(where, size=min(self.replay_per_class, where.size), replace=False))
        flat = np.sort(np.concatenate(picks)) if picks else np.zeros(0, np.int64)
        return np.unravel_index(flat, labels.shape)

    # --- the training set -----------------------------------------------------------------------

    def samples(
        self,
        extract: Extractor,
        key: object,
        corrections: list[Correction],
        n_classes: int,
        base_trust: Trust | None,
        radius: int | None = None,
    ) -> Samples:
        """Corrections, anchors and replay, weighted as the module says; `base_trust` is how far the
        base model is to be trusted (see `base_trust`), None: the corrections alone."""
        parts, hunting = [], error_hunting(corrections)
        for i, c in enumerate(corrections):
            labelled, anchors = self.values(extract, key, c, radius)
            weight = correction_weight(c)
            parts.append(
                Samples(
                    labelled,
                    np.full(len(labelled), c.value),
                    np.full(len(labelled), weight / max(1, len(labelled))),
                    np.full(len(labelled), i),
                    np.ones(len(labelled), bool),
                )
            )
            if len(anchors) and c.seen is not None and base_trust is not None:  # the user saw a map
                parts.append(self._anchors(c, i, anchors, weight, base_trust, hunting))
        out = Samples.concat(parts)
        out.y = out.y.astype(np.int64)
        out = out.subset((out.y < n_classes) & (out.w > 0))  # seen classes undone since; untrusted maps
        replay = self.replay_values(extract, key, n_classes, radius) if base_trust is not None else None
        if base_trust is not None and replay is not None and len(replay[1]):
            total = REPLAY_WEIGHT * sum(correction_weight(c) for c in corrections)
            keep = thinned(base_trust.replay[replay[1]], self.seed)
            replay, w = (replay[0][keep], replay[1][keep]), class_weights(replay[1], total)[keep]
            out = Samples.concat(
                [out, Samples(replay[0], replay[1], w, np.full(len(w), -1), np.zeros(len(w), bool))]
            )
        return out


def shown(c: Correction) -> np.ndarray:
    """The classes the map the user saw gave the correction's pixels, where it is known (its sampled
    pixels, see FeatureSource.seen_maps); none without a seen map."""
    if c.seen is None:
        return np.zeros(0, np.uint8)
    seen = c.seen[c.rows, c.cols]
    known: np.ndarray = seen[seen != NO_CLASS]
    return known


def confirms(c: Correction) -> bool:
    """Whether the map the user saw already gave most of the correction's pixels its class."""
    assert c.seen is not None
    seen = shown(c)
    return bool(seen.size and np.mean(seen == c.value) > 0.5)


def error_hunting(corrections: list[Correction]) -> float:
    """How far the user is correcting the learnt maps' errors, rather than labelling points they
    already had right: the share of the corrections made on a map the session learnt that gave
    most of their pixels another class, from HUNT_PRIOR_WEIGHT corrections' worth of 1.

    Only then has the user judged the map around a correction, and left it alone as right. On the
    real development imagery (bench/hitl_real.py, naip2014, 4 seeds, 200 clicks) a user labelling
    random pixels got 0.913 of them right with anchors at full weight and 0.923 with this, a user
    clicking errors 0.931 and 0.932."""
    learnt = [c for c in corrections if c.seen is not None and c.seen_trust is not None and shown(c).size]
    fixes = sum(not confirms(c) for c in learnt)
    return (fixes + HUNT_PRIOR_WEIGHT) / (len(learnt) + HUNT_PRIOR_WEIGHT)


def thinned(trust: np.ndarray, seed: int) -> np.ndarray:
    """Which samples to keep: each with probability `trust` (a fixed draw for a seed). Thinning, not
    down-weighting, is what makes an untrusted map lose its say in a forest: a leaf full of
    light samples still votes for their class wherever nothing else lands."""
    return np.random.default_rng([seed, 2]).random(len(trust)) < trust


@dataclass
class Trust:
    """How far the base model's word counts, per class: its replay sample's pixels of class k tell
    what k looks like as far as the base model's k is both found where the user says k (`recall`)
    and right where it says k (`precision`). `agreement` is the share of corrections it agrees
    with. All three start from PRIOR agreeing corrections; `agreeing` counts the corrections
    themselves that it agrees with."""

    precision: np.ndarray
    recall: np.ndarray
    agreement: float
    agreeing: int = 0

    @property
    def map(self) -> float:
        """The base model's map counts for nothing while it disagrees with half of what the user
        checked, and fully once it agrees with all of it."""
        return max(0.0, 2 * self.agreement - 1)

    @property
    def replay(self) -> np.ndarray:
        """Squared: a replay sample is hundreds of pixels a class, and in a forest a few contradicting
        clicks among them are split off as exceptions rather than followed."""
        squared: np.ndarray = np.minimum(self.precision, self.recall) ** 2  # numpy's ** is Any here
        return squared

    @classmethod
    def none(cls, n_classes: int) -> Trust:
        return cls(np.zeros(n_classes), np.zeros(n_classes), 0.0)


#: the base model's say before the user has shown anything, in corrections: its replay sample is
#: trusted as if this many corrections (shared among the classes) had agreed with it. A user
#: corrects where the map is wrong, so the corrections alone would find the base model wrong
#: even where it is mostly right (the synthetic demo's area b: 96 %); with this prior its replay
#: sample keeps a say over the first few dozen clicks and loses it as contradicting ones pile up.
PRIOR = 12.0


def base_trust(base: ServerModel, n_classes: int, labelled: Samples) -> Trust:
    """How far to trust the base model's replay sample, per class, from its agreement with the
    corrections (none of which trained it), each correction voting once (its pixels' majority),
    with PRIOR agreeing corrections' worth of benefit of the doubt.

    `labelled` are the corrected pixels' samples under a model whose features the base head reads.
    """
    if base.head is None:
        return Trust.none(n_classes)
    if not len(labelled):
        return Trust(np.ones(n_classes), np.ones(n_classes), 1.0)
    said = base.head.predict(labelled.x).argmax(axis=-1)
    groups = np.unique(labelled.group)
    votes = np.array([np.bincount(said[labelled.group == g], minlength=n_classes).argmax() for g in groups])
    truth = np.array([labelled.y[labelled.group == g][0] for g in groups])
    hits = np.bincount(truth[votes == truth], minlength=n_classes)[:n_classes]
    said_k = np.bincount(votes, minlength=n_classes)[:n_classes]
    true_k = np.bincount(truth, minlength=n_classes)[:n_classes]
    prior = PRIOR / n_classes
    agreement = (hits.sum() + PRIOR) / (len(groups) + PRIOR)
    return Trust(
        (hits + prior) / (said_k + prior),
        (hits + prior) / (true_k + prior),
        float(agreement),
        int(hits.sum()),
    )


def network_say(network: LinearHead, corrections: list[Correction], labelled: Samples) -> np.ndarray:
    """How far the network is right where it says class k, per class, and last over all classes:
    the share of the corrections where the map the user saw said something else than the network
    (the session had learnt otherwise) and the user sided with the network, from SAY_PRIOR_WEIGHT
    corrections' worth of SAY_PRIOR. Each correction votes once, by its pixels' majority.

    Only there did the user choose between the two. A correction of a map that showed the
    network's class says nothing either way: a user correcting errors picks it for being wrong,
    and one confirming the map picks it for being right.

    `labelled` are the corrected pixels' samples (group = index into `corrections`) over features
    the network's head reads."""
    k = network.n_classes
    hits, n = np.zeros(k), np.zeros(k)
    said = network.predict(labelled.x).argmax(axis=-1) if len(labelled) else np.zeros(0, np.int64)
    for i, c in enumerate(corrections):
        mine, seen = labelled.group == i, shown(c)
        if not mine.any() or not seen.size:
            continue
        vote = int(np.bincount(said[mine]).argmax())
        if int(np.bincount(seen).argmax()) != vote:
            hits[vote] += vote == c.value
            n[vote] += 1
    hits, n = np.append(hits, hits.sum()), np.append(n, n.sum())
    say: np.ndarray = (hits + SAY_PRIOR * SAY_PRIOR_WEIGHT) / (n + SAY_PRIOR_WEIGHT)
    return say


def network_gate(say: np.ndarray) -> np.ndarray:
    """Per class, how far the network's word counts (0 to 1), from `network_say`: as far as it is
    trusted both for the class and overall, above SAY_FLOOR."""
    trust = np.clip((say - SAY_FLOOR) / (1 - SAY_FLOOR), 0.0, 1.0)
    gate: np.ndarray = trust[:-1] * trust[-1]
    return gate


def displace_anchors(samples: Samples, network: LinearHead, gate: np.ndarray) -> Samples:
    """`samples` with each anchor (a pixel the user left alone on the map they saw) weighing less as
    far as the network's class there is trusted (`gate`): where the map the user saw was one the
    session learnt and the network is trusted, the pixels handed back to it speak instead."""
    anchors = ~samples.labelled & (samples.group >= 0)
    if anchors.any():
        said = network.predict(samples.x[anchors]).argmax(axis=-1)
        samples.w[anchors] *= 1 - gate[said]
    return samples
