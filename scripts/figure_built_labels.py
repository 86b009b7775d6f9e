"""Render docs/built-labels.png: roofs the development set's labels call forest, and the tool's map there.

    .venv/bin/python scripts/figure_built_labels.py      # → docs/built-labels.png (needs ../shared)

Runs one simulated user of bench/hitl_real.py (`--strategy wrong`, seed 0: clicks on wrongly
predicted pixels, labelled from the reference) through the HTTP API to 200 clicks on
`../shared/data/chesapeake-wv-dev/naip2014`, served with the seed's launch line, and draws a corner
of patch 0: the imagery, the reference labels and the tool's map. It also prints how many of the
pixels the tool maps Built there lie more than 6 px from any pixel the labels call Built.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import ServerProcess  # noqa: E402  (bench/ is no package)
from devset import DEV_DIR, available, load, score  # noqa: E402
from hitl_real import SEED_LINE  # noqa: E402
from simulated_user import Tool, User, learn  # noqa: E402

LOOK, PATCH, BUILT = "naip2014", 0, 3
#: rows and columns of patch 0 with the three roofs
ROWS, COLS = slice(150, 230), slice(140, 256)
COLOURS = {1: (34, 110, 34), 2: (150, 220, 100), 3: (200, 40, 40)}
SCALE = 4


def coloured(classes: np.ndarray) -> np.ndarray:
    out = np.zeros((*classes.shape, 3), np.uint8)
    for value, rgb in COLOURS.items():
        out[classes == value] = rgb
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "built-labels.png"), help="PNG to write")
    parser.add_argument("--clicks", type=int, default=200)
    args = parser.parse_args(argv)
    if not available(DEV_DIR):
        print(f"{DEV_DIR} is absent: nothing to draw.")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        dataset = f"{LOOK}={DEV_DIR / LOOK}"
        with ServerProcess(*SEED_LINE, "--dataset", dataset, "--state_dir", tmp) as server:
            names = Tool(server, LOOK).class_names
            patches = load(LOOK, names)
            user = User(Tool(server, LOOK), patches, "wrong", seed=0)
            user.predict()
            *_, last = learn(user, (25, 50, 100, args.clicks))
    result = score(patches, last.preds, len(names))
    print(f"{last.clicks} clicks: accuracy {result['accuracy']:.3f}, mean IoU {result['miou']:.3f}")
    truth, pred, image = patches[PATCH].truth, last.preds[PATCH], patches[PATCH].image
    far = cv2.distanceTransform((truth != BUILT).astype(np.uint8), cv2.DIST_L2, 3) > 6
    print(f"Built mapped more than 6 px from any labelled Built: {int((far & (pred == BUILT)).sum())} px")
    panels = [image[ROWS, COLS, :3], coloured(truth[ROWS, COLS]), coloured(pred[ROWS, COLS])]
    titles = ["NAIP, autumn 2014 (1 m)", "reference labels (lc/)"]
    titles.append(f"tool after {last.clicks} clicks (seed 0)")
    h, w, gap, top = panels[0].shape[0] * SCALE, panels[0].shape[1] * SCALE, 8, 26
    canvas = Image.new("RGB", (3 * w + 2 * gap, h + top + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (panel, title) in enumerate(zip(panels, titles, strict=True)):
        tile = Image.fromarray(np.ascontiguousarray(panel)).resize((w, h), Image.NEAREST)
        canvas.paste(tile, (k * (w + gap), top))
        draw.text((k * (w + gap) + 4, 6), title, fill="black")
    for k, (name, value) in enumerate((("Forest", 1), ("Field", 2), ("Built", 3))):
        x = 4 + 80 * k
        draw.rectangle([x, h + top + 6, x + 12, h + top + 18], fill=COLOURS[value])
        draw.text((x + 16, h + top + 6), name, fill="black")
    canvas.save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
