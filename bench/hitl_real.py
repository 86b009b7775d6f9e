"""Do corrections fix the map on real imagery? The tool against two forests, on the same clicks.

Serves the real development patches (../shared/data/chesapeake-wv-dev: 8 tiles of real NAIP, 1 m,
with Chesapeake land-cover labels) with the seed's launch line plus `--dataset`. A simulated user
(bench/simulated_user.py), in its own session and through the HTTP API only, first confirms 3
interior pixels of each class present, then clicks in rounds up to a cumulative 25, 50, 100, 200
and 400 clicks (`--strategy wrong`: wrongly predicted pixels, classes in turn; `right`: rightly
predicted ones, without the confirming clicks; `random`; `suggested`: the tool's suggestions),
retraining after each round; then `/predPatch` over every patch is scored against the labels on the
patches' own pixel grid (pixel accuracy; IoU of each class present and their mean). On the very same clicks,
round by round, two tools that need no pretrained model are trained and scored on the same pixels:
a random forest on bands + NDVI and one on ilastik's filter bank (bench/forests.py).

    python bench/hitl_real.py [--look naip2014 naip2011] [--strategy wrong right random suggested]
        [--rounds 25 50 100 200 400] [--seeds 3] [--seed 0] [--quick] [--model features]
        [--server_args "--fine_tune last_k_layers"]

Prints Markdown tables of medians over the seeds. The `/retrainModel` time is the wall-clock time
of the HTTP call at the 200-click round, measured `--repeat` more times per seed by undoing that
retrain (`/doUndo`) and retraining from the same model and clicks. `--quick`: one seed, rounds
25 and 100. Exits with a message (status 0) when ../shared is absent.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import devset
from common import ServerProcess, markdown_table
from forests import FEATURES, PixelForest
from simulated_user import STRATEGIES, Tool, User, learn

SEED_LINE = ("--model", "nips_hr", "--model_fn", "web_tool/data/demo_model", "--fine_tune", "last_layer")
ROUNDS = (25, 50, 100, 200, 400)
TIMED_ROUND = 200
FOREST_AIM = "RF filter bank"  # the aim: at least this forest's scores at 100 and 200 clicks


def server_args(args, state_dir: Path) -> list[str]:
    """The seed's launch line (or `--model features` alone), one `--dataset` per look, extras."""
    model = ["--model", "features"] if args.model == "features" else list(SEED_LINE)
    datasets = [a for look in args.look for a in ("--dataset", f"{look}={args.data / look}")]
    return [*model, *datasets, "--state_dir", str(state_dir), *shlex.split(args.server_args)]


def run_seed(server, look: str, patches, features: dict, strategy: str, seed: int, args) -> list[dict]:
    """One session: a row of scores per round (tool and forests), the first row the base model's."""
    user = User(Tool(server, look), patches, strategy, seed)
    n = len(user.tool.classes)
    rows = [{"clicks": 0, "labelled": 0, "tool": devset.score(patches, user.predict(), n)}]
    for target, r in zip(args.rounds, learn(user, args.rounds), strict=True):
        row = {
            "clicks": r.clicks,
            "labelled": r.labelled,
            "tool": devset.score(patches, r.preds, n),
            "retrain_s": [r.retrain_s],
            "fit_s": [r.retrain.get("seconds")],
        }
        for _ in range(args.repeat if target == args.timed_round else 0):
            user.tool.undo()  # the same retrain again, from the same model and clicks
            seconds, response = user.tool.retrain()
            row["retrain_s"].append(seconds)
            row["fit_s"].append(response.get("seconds"))
        for name, stack in features.items():
            row[name] = devset.score(patches, PixelForest(stack, seed).fit(user.clicks).predict(), n)
        rows.append(row)
        accuracies = ", ".join(f"{k} {row[k]['accuracy']:.3f}" for k in ("tool", *features))
        miou = row["tool"]["miou"]
        retrain = f"retrain {r.retrain_s:.2f} s"
        print(f"    {r.clicks} (+{user.confirming}) clicks: {accuracies}; tool mIoU {miou:.3f}; {retrain}")
    return rows


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def count(values) -> str:
    """The median of counts (clicks, pixels), as a count: "25", "34.5" (two seeds' middle)."""
    return f"{median(values):g}"


def med(runs: list[list[dict]], i: int, who: str, what: str) -> float:
    """Median over seeds of row i's `what` ("accuracy", "miou") for learner `who`."""
    return median(run[i][who][what] for run in runs if who in run[i])


def curve_table(runs: list[list[dict]], learners: list[str]) -> str:
    header = ["clicks", "labelled px"] + [f"{who} {what}" for who in learners for what in ("acc.", "mIoU")]
    rows = []
    for i in range(len(runs[0])):
        cells = [count(run[i]["clicks"] for run in runs), count(run[i]["labelled"] for run in runs)]
        for who, what in ((who, what) for who in learners for what in ("accuracy", "miou")):
            cells.append(f"{med(runs, i, who, what):.3f}" if who in runs[0][i] else "")
        rows.append(cells)
    return markdown_table(header, rows)


def class_table(runs: list[list[dict]], i: int, learners: list[str], names: list[str]) -> str:
    present = sorted(runs[0][i]["tool"]["iou"])
    rows = [
        [
            who,
            *(f"{median(run[i][who]['iou'][k] for run in runs):.3f}" for k in present),
            f"{med(runs, i, who, 'miou'):.3f}",
        ]
        for who in learners
    ]
    return markdown_table(["learner", *(names[k] for k in present), "mean"], rows)


def retrain_line(runs: list[list[dict]], i: int) -> str:
    times = [t for run in runs for t in run[i]["retrain_s"]]
    fits = [t for run in runs for t in run[i]["fit_s"] if t is not None]
    own = f"; the server's own count of the retrain: median {median(fits):.2f} s" if fits else ""
    return (
        f"`/retrainModel` at {runs[0][i]['clicks']} clicks: median {median(times):.2f} s of"
        f" {len(times)} calls (wall-clock HTTP: each seed's round and {len(times) // len(runs) - 1}"
        f" more after `/doUndo`; range {min(times):.2f}-{max(times):.2f} s){own}."
    )


def aim_table(runs: list[list[dict]], rounds: list[int]) -> str:
    """Issue 10's aim for the default user on naip2014, against this run's medians."""
    rows = []

    def check(what: str, tool: float, target: float, unit: str = "", lower_is_better: bool = False) -> None:
        met = "yes" if (tool <= target if lower_is_better else tool >= target) else "no"
        rows.append([what, f"{tool:.3f}{unit}", f"{target:.3f}{unit}", f"{tool / target:.2f}x", met])

    for clicks in (c for c in (100, 200) if c in rounds):
        i = 1 + rounds.index(clicks)
        for what, label in (("accuracy", "accuracy"), ("miou", "mean IoU")):
            tool, forest = med(runs, i, "tool", what), med(runs, i, FOREST_AIM, what)
            check(f"{label} at {clicks} clicks ≥ {FOREST_AIM}", tool, forest)
    if 200 in rounds:
        i = 1 + rounds.index(200)
        check("accuracy at 200 clicks ≥ 0.90", med(runs, i, "tool", "accuracy"), 0.90)
        check("mean IoU at 200 clicks ≥ 0.70", med(runs, i, "tool", "miou"), 0.70)
        seconds = median(t for run in runs for t in run[i]["retrain_s"])
        check("median `/retrainModel` at 200 clicks ≤ 1 s", seconds, 1.0, " s", lower_is_better=True)
    return markdown_table(["aim", "tool", "target", "tool / target", "met"], rows) if rows else ""


def strategy_table(look: str, results: dict) -> str:
    """The tool's accuracy / mean IoU per user strategy, side by side ("" for a single one)."""
    runs = {s: r for (lk, s), r in results.items() if lk == look}
    if len(runs) < 2:
        return ""
    first = next(iter(runs.values()))  # its seeds' runs
    rows = []
    for i in range(len(first[0])):
        pairs = [(med(r, i, "tool", "accuracy"), med(r, i, "tool", "miou")) for r in runs.values()]
        rows.append([count(run[i]["clicks"] for run in first), *(f"{a:.3f} / {m:.3f}" for a, m in pairs)])
    return markdown_table(["clicks", *runs], rows)


def report(results: dict, args, names: list[str], learners: list[str]) -> None:
    launch = "--model features" if args.model == "features" else " ".join(SEED_LINE)
    print(
        f"\n## Learning from clicks on real NAIP (chesapeake-wv-dev, 8 x 256 px, 1 m)\n\n"
        f"Server: `{' '.join([launch, args.server_args]).strip()}`. *clicks*: the strategy's clicks;"
        f" each session first made 3 confirming clicks per class present (*labelled px* counts them"
        f" all). Scored on every labelled pixel of the patches' own grid; medians of {args.seeds}"
        f" seed(s) from {args.seed}."
    )
    timed = 1 + args.rounds.index(args.timed_round)
    for (look, strategy), runs in results.items():
        print(f"\n### {look}, `--strategy {strategy}`\n\n{curve_table(runs, learners)}")
        print(f"\nIoU per class at {runs[0][timed]['clicks']} clicks:\n")
        print(class_table(runs, timed, learners, names))
        print(f"\n{retrain_line(runs, timed)}")
        if (look, strategy) == ("naip2014", "wrong") and aim_table(runs, args.rounds):
            print(f"\nIssue 10's aim:\n\n{aim_table(runs, args.rounds)}")
    for look in args.look:
        if table := strategy_table(look, results):
            print(f"\n### {look}: the tool's accuracy / mean IoU by where the user clicks\n\n{table}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python bench/hitl_real.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--look", nargs="+", help="imagery folders beside lc/ in --data (default: the first, naip2014 here)"
    )
    parser.add_argument("--strategy", nargs="+", choices=STRATEGIES, default=["wrong"])
    parser.add_argument("--rounds", nargs="+", type=int, default=list(ROUNDS), help="cumulative clicks")
    parser.add_argument("--seeds", type=int, default=3, help="simulated users, each in a new session")
    parser.add_argument("--seed", type=int, default=0, help="the first user's seed (then +1, +2, ...)")
    parser.add_argument("--repeat", type=int, default=3, help="extra timed retrains at 200 clicks, per seed")
    parser.add_argument("--quick", action="store_true", help="one seed, rounds 25 and 100")
    parser.add_argument(
        "--model",
        default="nips_hr",
        choices=["nips_hr", "features"],
        help="nips_hr: the seed launch line; features: needs no weights",
    )
    parser.add_argument("--server_args", default="", help="more server flags: '--fine_tune last_k_layers'")
    parser.add_argument("--data", type=Path, default=devset.DEV_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.repeat = 1, [25, 100], min(args.repeat, 1)
    found = devset.looks(args.data)
    args.look = args.look or found[:1]
    unknown = [look for look in args.look if look not in found]
    if unknown and found:
        parser.error(f"no look {', '.join(unknown)} in {args.data}: it has {', '.join(found)}")
    args.rounds = sorted(set(args.rounds))
    args.timed_round = TIMED_ROUND if TIMED_ROUND in args.rounds else args.rounds[-1]
    return args


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress lines show at once, also through a pipe
    args = parse_args(argv)
    if not devset.available(args.data):
        print(f"{args.data} is absent: no real imagery to measure on, nothing to do.")
        return 0
    started = time.perf_counter()
    learners = ["tool", *FEATURES]
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-hitl-real-") as tmp:
        with ServerProcess(*server_args(args, Path(tmp))) as server:
            log = server.keep_log()
            try:
                names = Tool(server, args.look[0]).class_names
                for look in args.look:
                    patches = devset.load(look, names, args.data)
                    t0 = time.perf_counter()
                    features = {name: [make(p.image) for p in patches] for name, make in FEATURES.items()}
                    print(f"{look}: {len(patches)} patches, features {time.perf_counter() - t0:.0f} s")
                    for strategy in args.strategy:
                        for seed in range(args.seed, args.seed + args.seeds):
                            print(f"  {look}, {strategy}, seed {seed}:")
                            run = run_seed(server, look, patches, features, strategy, seed, args)
                            results.setdefault((look, strategy), []).append(run)
            except Exception:
                print("the server's last words:\n" + "".join(log), file=sys.stderr)
                raise
    report(results, args, names, learners)
    print(f"\n(whole run: {(time.perf_counter() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
