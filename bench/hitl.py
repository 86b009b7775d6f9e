"""Does learning from clicks help, and how fast is it? A simulated careful user on demo area b.

Area b of the demo is the same kind of ground as area a (where the model was trained) seen in
another season by another sensor, so the base model makes clearly more mistakes there. For each
fine-tune strategy a real server subprocess is started; a simulated user, through the HTTP API
only, looks at the prediction of the *training* half of area b (top), clicks pixels it gets wrong
(a seeded random draw among wrongly predicted pixels away from class edges, classes in turn, clicks
at least SPACING px apart) with their true class, and retrains after 10, 50 and 200 clicks. After
each retrain the mean IoU on the *held-out* half of area b (bottom) is measured against the label
rasters (prediction via /predPatch, labels read into the same grid). Then the retrain with 200
clicks is repeated (retrain, undo) to get its median latency. Which pixels a user happens to click
moves the 200-click mean IoU by up to 0.1, so each strategy is run for several users (seeds, a
new session each) and the tables show medians.

    python bench/hitl.py [--quick] [--seeds N] [--strategies last_layer last_k_layers]
                         [--data DIR] [--model_fn M]

Prints Markdown tables. `--quick` (a smoke run): 10 and 50 clicks on 512 px parts of area b.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from common import REPO, ServerProcess, markdown_table

from web_tool.DataLoader import DataLoader
from web_tool.geometry import WEB_MERCATOR, Extent, parse_crs
from web_tool.imagery.datasets import DatasetConfig, expand_paths

DEMO_DIR = REPO / "web_tool" / "data" / "demo"
DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model"
CLASSES = [
    {"name": "Water", "color": "#0000FF"},
    {"name": "Forest", "color": "#008000"},
    {"name": "Field", "color": "#80FF80"},
    {"name": "Built", "color": "#806060"},
]
SPACING = 12  # px between any two clicks
MARGIN = 16  # m kept clear of each part's edges (the parts are UTM boxes, the patches web mercator)


def wait_for_demo(data: Path, model_fn: Path, timeout: float) -> None:
    """The demo scene and model are made by `make demo`; wait for them if they are being made."""
    needed = [data / "scene.json", model_fn.with_name(model_fn.name + ".keras")]
    deadline = time.time() + timeout
    while not all(p.is_file() for p in needed):
        if time.time() > deadline:
            raise SystemExit(f"missing {[str(p) for p in needed if not p.is_file()]}: run `make demo` first")
        time.sleep(10)


def parts(data: Path, quick: bool) -> tuple[Extent, Extent]:
    """(training part, held-out part) of area b as EPSG:3857 extents."""
    scene = json.loads((data / "scene.json").read_text())
    area = next(a for a in scene["areas"] if a["name"] == "b")
    xmin, ymin, xmax, ymax = area["bounds"]
    ymid = (ymin + ymax) / 2
    if quick:  # 512 m squares in the middle of each half
        xc = (xmin + xmax) / 2
        train, held = (xc - 256, ymid + 16, xc + 256, ymid + 528), (xc - 256, ymid - 528, xc + 256, ymid - 16)
    else:
        train, held = (xmin, ymid, xmax, ymax), (xmin, ymin, xmax, ymid)
    crs = parse_crs(area["crs"])

    def inner(b):
        box = Extent(b[0] + MARGIN, b[1] + MARGIN, b[2] - MARGIN, b[3] - MARGIN, crs=crs)
        return box.to_crs(WEB_MERCATOR)

    return inner(train), inner(held)


class User:
    """The simulated user: sees predictions through the API and clicks where they are wrong."""

    def __init__(self, server: ServerProcess, labels: DataLoader, session: str, seed: int = 0):
        self.server, self.labels, self.session = server, labels, session
        self.rng = np.random.default_rng(seed)
        self.clicks: list[tuple[float, float]] = []

    def predict(self, extent: Extent) -> tuple[np.ndarray, np.ndarray, object]:
        """(predicted class per pixel (-1 = none), true class per pixel (255 = none), grid)."""
        body = {"extent": extent_body(extent), "session": self.session, "dataset": "demo"}
        hard = decode_png(self.server.post("/predPatch", body)["output_hard"])
        pred = np.full(hard.shape[:2], -1)
        for i, c in enumerate(CLASSES):
            rgb = [int(c["color"][k : k + 2], 16) for k in (1, 3, 5)]
            pred[(hard[..., :3] == rgb).all(-1) & (hard[..., 3] > 0)] = i
        grid = self.labels.grid_for(extent)
        patch = self.labels.read(grid, labels=True)
        truth = np.where(patch.valid, patch.data[..., 0], 255)
        assert truth.shape == pred.shape, (truth.shape, pred.shape)
        return pred, truth, grid

    def click_until(self, extent: Extent, total: int) -> None:
        """Click wrongly predicted pixels (classes in turn) until `total` clicks were made."""
        pred, truth, grid = self.predict(extent)
        wrong = (pred >= 0) & (truth < len(CLASSES)) & (pred != truth) & interior(truth)
        rows, cols = np.nonzero(wrong)
        order = self.rng.permutation(rows.size)
        by_class = {k: [i for i in order if truth[rows[i], cols[i]] == k] for k in range(len(CLASSES))}
        res = grid.res[0]
        while len(self.clicks) < total and any(by_class.values()):
            for k in self.rng.permutation(len(CLASSES)):
                while by_class[k] and len(self.clicks) < total:
                    i = by_class[k].pop()
                    x, y = grid.transform @ (cols[i] + 0.5, rows[i] + 0.5)
                    if all((x - a) ** 2 + (y - b) ** 2 >= (SPACING * res) ** 2 for a, b in self.clicks):
                        self.click(x, y, res, int(truth[rows[i], cols[i]]))
                        break

    def click(self, x: float, y: float, res: float, value: int) -> None:
        half = res / 4  # a box smaller than a pixel: the server labels the pixel under its centre
        extent = {"xmin": x - half, "xmax": x + half, "ymin": y - half, "ymax": y + half}
        self.server.post(
            "/recordCorrection",
            {"extent": extent, "value": value, "session": self.session, "dataset": "demo"},
        )
        self.clicks.append((x, y))

    def score(self, extent: Extent) -> tuple[float, float]:
        """(mean IoU, pixel accuracy) of the current prediction of `extent`."""
        pred, truth, _ = self.predict(extent)
        valid = (pred >= 0) & (truth < len(CLASSES))
        n = len(CLASSES)
        cm = np.bincount(truth[valid] * n + pred[valid], minlength=n * n).reshape(n, n)
        tp = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - tp
        return float(np.mean(tp[union > 0] / union[union > 0])), float(tp.sum() / cm.sum())


def interior(truth: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood has one class: a careful user does not click on edges."""
    same = np.ones(truth.shape, bool)
    for k in np.unique(truth):
        mask = (truth == k).astype(np.uint8)
        same &= (cv2.erode(mask, np.ones((5, 5), np.uint8)) == mask) | (mask == 0)
    return same


def extent_body(extent: Extent) -> dict:
    return {
        "xmin": extent.xmin,
        "ymin": extent.ymin,
        "xmax": extent.xmax,
        "ymax": extent.ymax,
        "spatialReference": {"latestWkid": 3857},
    }


def decode_png(b64: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)


def run_strategy(strategy: str, args, datasets_json: Path, state: Path, labels: DataLoader) -> dict:
    train, held = parts(args.data, args.quick)
    stages = (10, 50) if args.quick else (10, 50, 200)
    out: dict = {"runs": [], "latency": None}
    cmd = [
        "--datasets_json",
        str(datasets_json),
        "--model_fn",
        str(args.model_fn),
        "--fine_tune",
        strategy,
        "--state_dir",
        str(state / strategy),
        "--fine_tune_layers",
        str(args.k),
    ]
    with ServerProcess(*cmd) as server:
        for seed in range(args.seed, args.seed + args.seeds):  # a new session (a new model) per seed
            user = User(server, labels, server.post("/sessions", {})["session"], seed=seed)
            out["base"] = user.score(held)
            runs = []
            for clicks in stages:
                user.click_until(train, clicks)
                t0 = time.perf_counter()
                result = server.post("/retrainModel", {"session": user.session})
                seconds = time.perf_counter() - t0
                miou, acc = user.score(held)
                runs.append((len(user.clicks), miou, acc, seconds, result["metrics"]))
                print(
                    f"  seed {seed}, {len(user.clicks)} clicks: mIoU {miou:.3f}, retrain {seconds:.2f} s",
                    flush=True,
                )
            out["runs"].append(runs)
        times = []
        for _ in range(args.repeat):  # the last seed's retrain with all clicks again, from the same model
            server.post("/doUndo", {"session": user.session})
            t0 = time.perf_counter()
            server.post("/retrainModel", {"session": user.session})
            times.append(time.perf_counter() - t0)
        out["latency"] = (len(user.clicks), statistics.median(times), times)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/hitl.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 and 50 clicks on 512 px parts")
    parser.add_argument("--strategies", nargs="+", default=["last_layer", "last_k_layers"])
    parser.add_argument("--data", type=Path, default=DEMO_DIR, help="demo scene folder")
    parser.add_argument("--model_fn", type=Path, default=DEMO_MODEL, help="demo model (without .keras)")
    parser.add_argument("--k", type=int, default=2, help="layers tuned by last_k_layers (head included)")
    parser.add_argument("--repeat", type=int, default=5, help="timed retrains with all clicks (median)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed of the simulated user's clicks")
    parser.add_argument(
        "--seeds", type=int, default=3, help="users (seeds) per strategy; the tables show their medians"
    )
    parser.add_argument("--wait", type=float, default=1800, help="seconds to wait for the demo files")
    args = parser.parse_args(argv)
    args.model_fn = args.model_fn.with_suffix("") if args.model_fn.suffix == ".keras" else args.model_fn
    if args.quick:
        args.repeat = min(args.repeat, 3)
    wait_for_demo(args.data, args.model_fn, args.wait)
    imagery, label_files = str(args.data / "imagery" / "*.tif"), str(args.data / "labels" / "*.tif")
    config = {"demo": {"paths": [imagery], "classes": CLASSES, "default": True}}
    labels = DataLoader(DatasetConfig("demo", expand_paths(imagery), label_paths=expand_paths(label_files)))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-hitl-") as tmp:
        datasets_json = Path(tmp) / "datasets.json"
        datasets_json.write_text(json.dumps(config))
        for strategy in args.strategies:
            print(f"running {strategy} ...", flush=True)
            results[strategy] = run_strategy(strategy, args, datasets_json, Path(tmp), labels)
    print_tables(results, args)
    return 0


def print_tables(results: dict, args) -> None:
    part = "512 px squares" if args.quick else "halves (2048 x 1024 px each)"
    print(f"\nDemo area b, {part}: clicks from the top part, mean IoU on the held-out bottom part.")
    print(f"Medians over {args.seeds} simulated users (seeds {args.seed}..{args.seed + args.seeds - 1}).\n")
    rows = []
    for strategy, r in results.items():
        base_miou, base_acc = r["base"]
        rows.append([strategy, 0, f"{base_miou:.3f}", "", f"{base_acc:.3f}", "", "", ""])
        for stage in zip(*r["runs"], strict=True):  # the same round of every seed
            counts = sorted({run[0] for run in stage})  # fewer than asked where a part runs out of errors
            clicks = "–".join(str(c) for c in counts[:: max(1, len(counts) - 1)])
            mious = [run[1] for run in stage]
            miou, acc, seconds = (statistics.median(run[k] for run in stage) for k in (1, 2, 3))
            held = [run[4]["accuracy"] for run in stage if "accuracy" in run[4]]
            hold = f"{statistics.median(held):.2f}" if len(held) == len(stage) else "too few"
            rows.append(
                [
                    strategy,
                    clicks,
                    f"{miou:.3f}",
                    f"{miou - base_miou:+.3f}",
                    f"{acc:.3f}",
                    f"{seconds:.2f}",
                    hold,
                    " ".join(f"{m:.3f}" for m in mious),
                ]
            )
    header = [
        "strategy",
        "clicks",
        "mean IoU",
        "Δ vs base",
        "pixel acc.",
        "retrain s",
        "cross-val acc. of corrections",
        "mean IoU per seed",
    ]
    print(markdown_table(header, rows))
    print()
    latency = [
        [s, r["latency"][0], f"{r['latency'][1]:.2f}", " ".join(f"{t:.2f}" for t in r["latency"][2])]
        for s, r in results.items()
    ]
    print(markdown_table(["strategy", "clicks", "median retrain s", "runs (s)"], latency))


if __name__ == "__main__":
    raise SystemExit(main())
