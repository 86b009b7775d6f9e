"""Does the server hold up under several users at once? A bounded load test on loopback.

It starts the real server (a subprocess: the demo model, `--fine_tune last_layer`, state in a
temporary folder) and runs N concurrent clients, one thread each, each with its own session
(POST /sessions). A client loops: POST /predPatch of a 256–512 px square at a random place inside
the dataset's bounds, POST /recordCorrection of a small box (2–8 px) at a random place inside that
square with a random class, and POST /retrainModel after every 5th correction. Squares may fall on
the gap between the demo's two areas: those answer 404, counted as 4xx (not a failure).

Each client first runs a few untimed warm-up rounds (5); once all have, the timed run of a fixed
length starts. It prints, as Markdown, each endpoint's requests, p50, p95 and max latency (timed
run only) and 4xx, 5xx and connection errors (whole run), and the server's RSS before the load
(just after start-up), after the warm-up and at the end. It exits non-zero when any request got a
5xx or a connection error, or the RSS grew 10 % or more after the warm-up.

    .venv/bin/python bench/load.py [--clients 8] [--seconds 60] [--url http://host:port [--pid PID]]

With --url it loads a server that is already running (its RSS only with --pid). Before the load,
one client alone (`--baseline_seconds`, 20 s) measures the latencies that each endpoint's
"vs 1 client" ratio compares with, on the same server in the same run.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from common import REPO, ServerProcess, markdown_table

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model.keras"
ENDPOINTS = ("/sessions", "/predPatch", "/recordCorrection", "/retrainModel")
MAX_GROWTH = 0.10  # RSS growth after the warm-up that fails the run
LIGHT_AIM = 3.0  # most /recordCorrection p50 under load, as a multiple of its one-client p50
TIMEOUT = 300  # s per request: a retrain waits for the others on 2 cores


class Client:
    """One simulated user with its own session and HTTP connection, recording every request."""

    def __init__(
        self, url: str, dataset: dict, seed: int, patch_px: tuple[int, int], retrain_every: int, log: list
    ):
        self.url, self.dataset, self.patch_px, self.log = url, dataset, patch_px, log
        self.retrain_every = retrain_every
        self.timed = False  # False during the warm-up
        self.rng = random.Random(seed)
        self.http = requests.Session()
        self.session: str | None = None
        self.corrections = 0
        lat = math.radians((dataset["bounds_4326"][1] + dataset["bounds_4326"][3]) / 2)
        self.px = dataset["resolution"] / math.cos(lat)  # EPSG:3857 units of one native pixel

    def post(self, path: str, body: dict) -> dict | None:
        """POST and log (endpoint, timed, seconds, status or None on a connection error, detail)."""
        t0 = time.perf_counter()
        try:
            resp = self.http.post(self.url + path, json=body, timeout=TIMEOUT)
            answer = resp.json() if resp.ok else None
        except requests.RequestException as exc:  # no answer, or a 2xx that is not JSON
            self.log.append(
                (path, self.timed, time.perf_counter() - t0, None, f"{type(exc).__name__}: {exc}")
            )
            return None
        detail = "" if resp.ok else f"{resp.text[:300]} <- {str(body)[:300]}"
        self.log.append((path, self.timed, time.perf_counter() - t0, resp.status_code, detail))
        return answer

    def box(self, center: tuple[float, float], px: float) -> dict:
        half = px * self.px / 2
        x, y = center
        return {
            "xmin": x - half,
            "ymin": y - half,
            "xmax": x + half,
            "ymax": y + half,
            "spatialReference": {"latestWkid": 3857},
        }

    def random_point(self, bounds, margin: float) -> tuple[float, float]:
        """A point at least `margin` inside `bounds` (the centre where they are too small)."""
        xmin, ymin, xmax, ymax = bounds
        return self.pick(xmin, xmax, margin), self.pick(ymin, ymax, margin)

    def pick(self, lo: float, hi: float, margin: float) -> float:
        return self.rng.uniform(lo + margin, hi - margin) if hi - lo > 2 * margin else (lo + hi) / 2

    def step(self) -> None:
        """A prediction, a correction inside it and, after every `retrain_every`-th, a retrain."""
        if self.session is None:
            self.session = (self.post("/sessions", {}) or {}).get("session")
            if self.session is None:
                return
        size = self.rng.randint(*self.patch_px)
        patch = self.box(self.random_point(self.dataset["bounds_3857"], size * self.px / 2), size)
        self.post("/predPatch", {"extent": patch, "session": self.session, "dataset": self.dataset["name"]})
        bounds = (patch["xmin"], patch["ymin"], patch["xmax"], patch["ymax"])
        box = self.box(self.random_point(bounds, 4 * self.px), self.rng.randint(2, 8))
        value = self.rng.randrange(len(self.dataset["classes"]))
        body = {
            "extent": box,
            "crs": 3857,
            "value": value,
            "session": self.session,
            "dataset": self.dataset["name"],
        }
        if self.post("/recordCorrection", body) is not None:
            self.corrections += 1
            if self.corrections % self.retrain_every == 0:
                self.post("/retrainModel", {"session": self.session})


def rss(pid: int | None) -> int | None:
    """Resident memory of process `pid` in bytes (None without a pid, or once it is gone)."""
    try:
        return psutil.Process(pid).memory_info().rss if pid else None
    except psutil.Error:
        return None


def run_load(
    url: str,
    clients: int = 8,
    seconds: float = 60,
    warmup: int = 5,
    pid: int | None = None,
    dataset: str | None = None,
    patch_px: tuple[int, int] = (256, 512),
    retrain_every: int = 5,
    seed: int = 0,
) -> dict:
    """Load `url` with `clients` users: `warmup` untimed rounds each, then `seconds` timed.

    → {"endpoints": {path: {"requests", "latencies" (s, timed only), "4xx", "5xx", "errors"}},
       "failures": [5xx and connection errors], "sessions": [GET /sessions/<id> of each client],
       "rss": {"start", "warm", "end"} (bytes; None without `pid`), "rss_series", "seconds"}
    """
    datasets = requests.get(url + "/datasets", timeout=30).json()
    chosen = next(d for d in datasets if d["name"] == dataset or (dataset is None and d.get("default")))
    log: list[tuple] = []
    users = [Client(url, chosen, seed + i, patch_px, retrain_every, log) for i in range(clients)]
    warm, stop = threading.Barrier(clients + 1), threading.Event()

    def loop(user: Client) -> None:
        try:
            for _ in range(warmup):
                user.step()
        finally:  # never leave the others waiting
            user.timed = True
            warm.wait()
        while not stop.is_set():
            user.step()

    series: list[tuple[float, int]] = []  # (s since the start, RSS) every second

    def sample() -> None:
        while not stop.wait(1.0):
            series.append((time.perf_counter() - t0, rss(pid)))

    rss_start, t0 = rss(pid), time.perf_counter()
    if pid:
        threading.Thread(target=sample, daemon=True).start()
    threads = [threading.Thread(target=loop, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    warm.wait()
    rss_warm, start = rss(pid), time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    rss_end = rss(pid)

    stats = {path: {"requests": 0, "latencies": [], "4xx": 0, "5xx": 0, "errors": 0} for path in ENDPOINTS}
    failures = []
    for path, timed, took, status, detail in log:
        s = stats[path]
        s["requests"] += 1
        if status is None or status >= 500:
            s["errors" if status is None else "5xx"] += 1
            failures.append(f"{path} -> {status or 'connection error'}: {detail}")
        elif status >= 400:
            s["4xx"] += 1
        if timed:
            s["latencies"].append(took)
    sessions = []
    for user in (u for u in users if u.session):
        try:
            sessions.append(user.http.get(f"{url}/sessions/{user.session}", timeout=30).json())
        except requests.RequestException as exc:
            failures.append(f"GET /sessions/{user.session} -> {type(exc).__name__}: {exc}")
    return {
        "endpoints": stats,
        "failures": failures,
        "sessions": sessions,
        "seconds": elapsed,
        "rss": {"start": rss_start, "warm": rss_warm, "end": rss_end},
        "rss_series": series,
    }


def growth(result: dict) -> float | None:
    r = result["rss"]
    return r["end"] / r["warm"] - 1 if r["warm"] and r["end"] else None


def median_ms(result: dict | None, path: str) -> float | None:
    latencies = result["endpoints"][path]["latencies"] if result else []
    return float(np.median(latencies)) * 1000 if latencies else None


def report(result: dict, clients: int, baseline: dict | None = None) -> str:
    header = [
        "endpoint",
        "requests",
        "timed",
        "p50 ms",
        "p95 ms",
        "max ms",
        "1 client p50 ms",
        f"p50 {clients} vs 1 client",
        "4xx",
        "5xx",
        "conn. errors",
    ]
    rows = []
    for path, s in result["endpoints"].items():
        ms = np.percentile(s["latencies"], [50, 95, 100]) * 1000 if s["latencies"] else []
        ms = [f"{v:.0f}" for v in ms] or ["–"] * 3
        alone, loaded = median_ms(baseline, path), median_ms(result, path)
        ratio = [f"{alone:.0f}", f"{loaded / alone:.2f}x"] if alone and loaded else ["–", "–"]
        rows.append([path, s["requests"], len(s["latencies"]), *ms, *ratio, s["4xx"], s["5xx"], s["errors"]])
    mb = {k: (f"{v / 2**20:.0f}" if v else "n/a") for k, v in result["rss"].items()}
    g = growth(result)
    memory = markdown_table(
        ["server RSS MB: before the load", "after warm-up", "at the end", "growth after warm-up"],
        [[mb["start"], mb["warm"], mb["end"], "n/a" if g is None else f"{g:+.1%}"]],
    )
    note = (
        (
            f"Baseline: 1 client alone for {baseline['seconds']:.0f} s on the same server, just before. "
            if baseline
            else ""
        )
        + f"{clients} clients, {result['seconds']:.0f} s timed after the warm-up, {psutil.cpu_count()} CPU"
        " cores; requests and 4xx/5xx/connection errors over the whole run, warm-up included;"
        f" {sum(s.get('corrections', 0) for s in result['sessions'])} corrections recorded in"
        f" {len(result['sessions'])} sessions."
    )
    return markdown_table(header, rows) + "\n\n" + memory + "\n\n" + note


def verdict(result: dict) -> list[str]:
    """Why the run failed (empty when it passed)."""
    problems = []
    if result["failures"]:
        problems.append(f"{len(result['failures'])} requests got a 5xx or a connection error")
    g = growth(result)
    if g is not None and g >= MAX_GROWTH:
        problems.append(f"server RSS grew {g:.1%} after the warm-up (limit {MAX_GROWTH:.0%})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python bench/load.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent users, one session each")
    parser.add_argument("--seconds", type=float, default=60, help="length of the timed run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds per client before it")
    parser.add_argument(
        "--baseline_seconds",
        type=float,
        default=20,
        help="first, one client alone this long: the latencies the ratios compare with (0: none)",
    )
    parser.add_argument("--url", help="load this running server instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, to measure its RSS")
    parser.add_argument("--dataset", help="dataset name (None: the server's default dataset)")
    parser.add_argument("--model_fn", type=Path, default=DEMO_MODEL, help="model of the started server")
    parser.add_argument("--patch_px", type=int, nargs=2, default=[256, 512], help="smallest, largest patch")
    parser.add_argument("--retrain_every", type=int, default=5, help="corrections between two retrains")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' random choices")
    parser.add_argument("--verbose", action="store_true", help="start the server with --verbose")
    args = parser.parse_args(argv)
    run = dict(
        clients=args.clients,
        seconds=args.seconds,
        warmup=args.warmup,
        dataset=args.dataset,
        patch_px=tuple(args.patch_px),
        retrain_every=args.retrain_every,
        seed=args.seed,
    )
    server_log: list[str] = []
    baseline: dict | None = None

    def measure(url: str, pid: int | None) -> dict:
        nonlocal baseline
        if args.baseline_seconds > 0:
            alone = {
                **run,
                "clients": 1,
                "seconds": args.baseline_seconds,
                "warmup": 2,
                "seed": args.seed + 999,
            }
            baseline = run_load(url, **alone)
        return run_load(url, pid=pid, **run)

    if args.url:
        result = measure(args.url.rstrip("/"), args.pid)
    else:
        if not args.model_fn.is_file() or not (REPO / "web_tool" / "data" / "demo" / "scene.json").is_file():
            raise SystemExit("the demo dataset or model is missing: run `make demo` first")
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            cmd = [
                "--model_fn",
                str(args.model_fn),
                "--fine_tune",
                "last_layer",
                "--state_dir",
                tmp,
                *(["--verbose"] if args.verbose else []),
            ]
            with ServerProcess(*cmd) as server:
                result = measure(server.url, server.proc.pid)
                if server.proc.poll() is not None:
                    result["failures"].append(f"the server exited with status {server.proc.returncode}")
                server_log = list(server.log)
    if baseline:
        result["failures"] += baseline["failures"]
    print(report(result, args.clients, baseline))
    alone, loaded = median_ms(baseline, "/recordCorrection"), median_ms(result, "/recordCorrection")
    if alone and loaded:
        ratio = loaded / alone
        print(
            f"/recordCorrection p50 with {args.clients} clients is {ratio:.2f}x its one-client p50"
            f" (issue 15 aims at {LIGHT_AIM:g}x at most: {'met' if ratio <= LIGHT_AIM else 'not met'})"
        )
    problems = verdict(result)
    for line in result["failures"][:10]:
        print("  " + line, file=sys.stderr)
    if problems and server_log:
        print("server stderr (last 60 lines):\n" + "".join(server_log[-60:]), file=sys.stderr)
    print("FAILED: " + "; ".join(problems) if problems else "passed: no 5xx, no connection error, RSS steady")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
