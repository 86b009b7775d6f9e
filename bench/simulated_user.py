"""A simulated user of the tool on the real development patches, through the HTTP API only.

`Tool` is the user's own session on a running server: `/predPatch` over a patch (the answer
sampled onto the patch's native grid, see devset.Patch.to_native), a click (`/recordCorrection`
with a box a quarter of a pixel wide at a native pixel's centre: the server labels exactly that
pixel), `/retrainModel` and `/doUndo`. `User` decides where to click:

- first `confirm()` (but for `right`): 3 clicks per class present in the labels, at random interior
  pixels of it;
- then `click_until(total)` with its strategy, until `total` strategy clicks were made:
  - `wrong`: classes in turn (a seeded random order each cycle), a seeded random wrongly predicted
    interior pixel of that class;
  - `right`: classes in turn, a seeded random rightly predicted interior pixel of that class (a user
    confirming what the map has right: it must never make the map worse);
  - `random`: seeded random interior pixels, whatever the prediction;
  - `suggested`: the points `/predPatch` returns in `suggestions`, the patches in turn, each
    patch's most uncertain first, labelled with their true class (points on no label are
    skipped); when the patches' own suggestions run out, the user asks `/predPatch` for their
    quarters, then sixteenths, for more.

*Interior*: the pixel's 3x3 neighbourhood holds one label (a careful user does not click on
edges). Every click is at least SPACING px from any earlier click in the same patch.
`learn()` runs the rounds: clicks, a retrain, a new prediction of every patch.
"""

from __future__ import annotations

import base64
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from devset import IGNORE, WEB_MERCATOR, Patch, interior, present_classes

STRATEGIES = ("wrong", "right", "random", "suggested")
SPACING = 12  # px between two clicks in one patch
CONFIRM_PER_CLASS = 3
SUGGESTION_SPLITS = (1, 2, 4)  # the user asks for suggestions on the patches, then their quarters, ...


@dataclass(frozen=True)
class Click:
    patch: int
    row: int
    col: int
    value: int


class Tool:
    """One session of a running server (bench/common.ServerProcess) on one dataset."""

    def __init__(self, server, dataset: str):
        self.server, self.dataset = server, dataset
        self.session = server.post("/sessions", {})["session"]
        self.classes = server.get(f"/sessions/{self.session}")["classes"]
        self.colors = [tuple(int(c["color"][k : k + 2], 16) for k in (1, 3, 5)) for c in self.classes]

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.classes]

    def pred_patch(self, bounds_3857) -> dict:
        extent = dict(zip(("xmin", "ymin", "xmax", "ymax"), bounds_3857, strict=True))
        extent["spatialReference"] = {"latestWkid": 3857}
        body = {"extent": extent, "session": self.session, "dataset": self.dataset}
        return self.server.post("/predPatch", body)

    def predict(self, patch: Patch) -> tuple[np.ndarray, list[dict]]:
        """(class per native pixel, IGNORE where nothing is predicted; the response's suggestions).
        A model that has learnt nothing yet (`--model features` before two classes) answers 409:
        nothing is predicted."""
        try:
            response = self.pred_patch(patch.bounds_3857)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise
            return np.full(patch.truth.shape, IGNORE, np.int16), []
        return patch.to_native(self.decode(response["output_hard"])), response.get("suggestions") or []

    def decode(self, png_b64: str) -> np.ndarray:
        """Class index per pixel of an `output_hard` PNG (IGNORE: transparent or no class colour)."""
        bgra = cv2.imdecode(np.frombuffer(base64.b64decode(png_b64), np.uint8), cv2.IMREAD_UNCHANGED)
        rgb, alpha = bgra[..., 2::-1], bgra[..., 3] if bgra.shape[2] == 4 else None
        out = np.full(bgra.shape[:2], IGNORE, np.int16)
        for i, color in enumerate(self.colors):
            out[(rgb == color).all(-1)] = i
        if alpha is not None:
            out[alpha == 0] = IGNORE
        return out

    def click(self, patch: Patch, row: int, col: int, value: int) -> None:
        x, y = patch.centre(row, col)
        q = abs(patch.transform.a) / 4  # a box smaller than a pixel: the pixel under its centre
        extent = {
            "xmin": x - q,
            "xmax": x + q,
            "ymin": y - q,
            "ymax": y + q,
            "spatialReference": {"latestWkid": patch.crs.to_epsg()},
        }
        body = {"extent": extent, "value": value, "session": self.session, "dataset": self.dataset}
        self.server.post("/recordCorrection", body)

    def retrain(self) -> tuple[float, dict]:
        """(wall-clock seconds of the HTTP call, its response)."""
        t0 = time.perf_counter()
        response = self.server.post("/retrainModel", {"session": self.session})
        return time.perf_counter() - t0, response

    def undo(self) -> dict:
        return self.server.post("/doUndo", {"session": self.session})


class User:
    """Looks at the tool's predictions of every patch and clicks, with one strategy and seed."""

    def __init__(self, tool: Tool, patches: list[Patch], strategy: str = "wrong", seed: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        self.tool, self.patches, self.strategy = tool, patches, strategy
        self.rng = np.random.default_rng(seed)
        self.present = present_classes(patches)
        self.interior = [interior(p.truth) for p in patches]
        self.clicks: list[Click] = []
        self.confirming = 0
        self.preds: list[np.ndarray] = []
        self.suggestions: list[list[dict]] = []

    @property
    def strategy_clicks(self) -> int:
        return len(self.clicks) - self.confirming

    def predict(self) -> list[np.ndarray]:
        """The tool's prediction of every patch (kept: the next clicks look at it)."""
        answers = [self.tool.predict(p) for p in self.patches]
        self.preds = [pred for pred, _ in answers]
        self.suggestions = [points for _, points in answers]
        return self.preds

    def confirm(self, per_class: int = CONFIRM_PER_CLASS) -> None:
        for k in self.present:
            self._click_from([self._pixels(lambda i, p, k=k: self.interior[i] & (p.truth == k))], per_class)
        self.confirming = len(self.clicks)

    def click_until(self, total: int) -> None:
        """Click with the user's strategy until `total` strategy clicks were made (or none is left)."""
        wanted = total - self.strategy_clicks
        if wanted <= 0:
            return
        if self.strategy in ("wrong", "right"):
            right = self.strategy == "right"
            pools = [
                self._pixels(
                    lambda i, p, k=k: self.interior[i] & (p.truth == k) & ((self.preds[i] == k) == right)
                )
                for k in self.present
            ]
            self._click_from(pools, wanted, shuffle_each_cycle=True)
        elif self.strategy == "random":
            self._click_from([self._pixels(lambda i, p: self.interior[i])], wanted)
        else:
            self._click_suggestions(wanted)

    def _pixels(self, select) -> list[list[int]]:
        """(patch, row, col) of the pixels `select(i, patch)` marks, in a seeded random order."""
        found = [
            np.column_stack([np.full(r.size, i), r, c])
            for i, p in enumerate(self.patches)
            for r, c in [np.nonzero(select(i, p))]
        ]
        cells = np.concatenate(found)
        return cells[self.rng.permutation(len(cells))].tolist()

    def _click_from(self, pools: list[list], n: int, shuffle_each_cycle: bool = False) -> None:
        """Take pools in turn (in a new seeded order each cycle if asked), one click from each."""
        made = 0
        while made < n and any(pools):
            order = self.rng.permutation(len(pools)) if shuffle_each_cycle else range(len(pools))
            for k in order:
                while pools[k] and made < n:
                    i, r, c = pools[k].pop()
                    if self._far_enough(i, r, c):
                        self._click(i, r, c)
                        made += 1
                        break

    def _click_suggestions(self, n: int) -> None:
        made = 0
        for split in SUGGESTION_SPLITS:
            per_patch = [self._suggested_pixels(i, split) for i in range(len(self.patches))]
            while made < n and any(per_patch):
                for points in per_patch:
                    while points and made < n:
                        i, r, c = points.pop(0)
                        if self._far_enough(i, r, c):
                            self._click(i, r, c)
                            made += 1
                            break
            if made >= n:
                return

    def _suggested_pixels(self, i: int, split: int) -> list[tuple[int, int, int]]:
        """Patch i's suggested native pixels that carry a label, most uncertain first: from the last
        prediction (split 1) or from `/predPatch` over each of its split x split parts."""
        patch = self.patches[i]
        points = self.suggestions[i] if split == 1 else []
        xmin, ymin, xmax, ymax = patch.bounds_3857
        dx, dy = (xmax - xmin) / split, (ymax - ymin) / split
        for a, b in ((a, b) for a in range(split) for b in range(split) if split > 1):
            part = (xmin + a * dx, ymin + b * dy, xmin + (a + 1) * dx, ymin + (b + 1) * dy)
            points += self.tool.pred_patch(part).get("suggestions") or []
        pixels = []
        for pt in sorted(points, key=lambda pt: -pt.get("score", 0)):
            cell = patch.pixel_at(pt["x"], pt["y"], WEB_MERCATOR)
            if cell is not None and patch.truth[cell] != IGNORE:
                pixels.append((i, *cell))
        return pixels

    def _far_enough(self, i: int, r: int, c: int) -> bool:
        return all(k.patch != i or (k.row - r) ** 2 + (k.col - c) ** 2 >= SPACING**2 for k in self.clicks)

    def _click(self, i: int, r: int, c: int) -> None:
        value = int(self.patches[i].truth[r, c])
        self.tool.click(self.patches[i], r, c, value)
        self.clicks.append(Click(i, r, c, value))


@dataclass
class Round:
    clicks: int  # strategy clicks so far (confirming clicks not counted)
    labelled: int  # all clicks so far
    retrain_s: float
    retrain: dict
    preds: list[np.ndarray]


def learn(user: User, rounds: tuple[int, ...]) -> Iterator[Round]:
    """The session's life: confirming clicks, then per round clicks up to the round's total, a
    retrain and a prediction of every patch. Expects `user.predict()` to have run (the base map).
    A user of the `right` strategy only confirms what the map has right: no confirming clicks."""
    if user.strategy != "right":
        user.confirm()
    for total in rounds:
        user.click_until(total)
        seconds, response = user.tool.retrain()
        yield Round(user.strategy_clicks, len(user.clicks), seconds, response, user.predict())
