"""What can one request cost at the server's limits? Peak memory and time of one request at each cap,
and how light requests fare while the heavy-request queue is full.

It starts the real server on the demo (a subprocess: the demo model, `--fine_tune last_layer`, state
in a temporary folder), warms it up with a 256 px prediction (the baseline), then sends one request
at a time, each at a limit:

  - /predPatch whose canvas (the extent with the model's 32 px of context) is at the pixel cap
    (`--max_patch_pixels`, 2048²): a 1984 px square;
  - /predPatch of the longest strips: 16384 x 1 px and 16384 x 64 px (the longest side a PNG takes);
  - the same 1984 px /predPatch in a session that has the class cap (254 classes);
  - /recordCorrection of a polygon at the vertex cap (`--max_vertices`: a circle), and of a star
    polygon whose edges cross each other nearly as often as a repair may take (`MAX_CROSSINGS`);
  - a body at the body cap (`--max_body_mb`): a polygon of 8 MiB, refused (too many vertices) once read;
  - /predTile over a 2 x 2 km square of the demo (a job: one window at a time, in its turns);

and prints, for each, the answer, the seconds it took, and the server's peak resident memory during
it above its resident memory just before (Linux: VmHWM of /proc/<pid>/status, reset through
/proc/<pid>/clear_refs). The aim is ≤ 1.5 GB above idle at the pixel cap.

Then it fills the heavy-request queue (`--max_heavy` running, `--max_waiting` waiting: 1024 px
predictions sent over and over by that many clients) and measures the median latency of light
requests (GET /health, a map tile, GET /sessions/<id>, POST /recordCorrection) against the same
requests on the idle server just before, and counts the 503s (with Retry-After) beyond the queue.

    .venv/bin/python bench/limits.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time
from pathlib import Path

import mercantile
import requests
from common import REPO, ServerProcess, markdown_table

from web_tool.DataLoader import MAX_PATCH_PIXELS, MAX_PATCH_SIDE
from web_tool.geometry import (
    MAX_CROSSINGS,
    MAX_VERTICES,
    WEB_MERCATOR,
    Extent,
    center_latitude,
    ground_resolution_in,
    parse_crs,
)
from web_tool.http.admission import HEAVY_SLOTS, MAX_WAITING
from web_tool.learning.sessions import MAX_CLASSES

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model.keras"
CENTER_UTM = (325_736.0, 4_305_464.0)  # the middle of area a of the demo (1 m, EPSG:32618)
UTM = parse_crs(32618)
CONTEXT = 32  # the demo model's padding
AIM_MB = 1536


def mb_of(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux ≥ 4.0)


def utm_box(width_m: float, height_m: float, center=CENTER_UTM) -> dict:
    """An EPSG:32618 extent of width x height metres (= demo pixels) around `center`."""
    x, y = center
    return {
        "xmin": x - width_m / 2,
        "xmax": x + width_m / 2,
        "ymin": y - height_m / 2,
        "ymax": y + height_m / 2,
        "spatialReference": {"latestWkid": 32618},
    }


def pixel_box(width_px: int, height_px: int, center=CENTER_UTM) -> dict:
    """An EPSG:3857 extent of width x height demo pixels around `center` (the server's own grid, so
    that a strip stays a strip: a UTM box turns into a wider one in web mercator)."""
    ext = Extent(*center, center[0] + 1, center[1] + 1, crs=UTM).to_crs(WEB_MERCATOR)
    res = ground_resolution_in(WEB_MERCATOR, 1.0, center_latitude(ext))
    x, y = ext.xmin, ext.ymin
    return {
        "xmin": x - width_px * res / 2,
        "xmax": x + width_px * res / 2,
        "ymin": y - height_px * res / 2,
        "ymax": y + height_px * res / 2,
        "spatialReference": {"latestWkid": 3857},
    }


def circle(n: int, radius_m: float, center=CENTER_UTM) -> dict:
    x, y = center
    ring = [
        [x + radius_m * math.cos(2 * math.pi * i / n), y + radius_m * math.sin(2 * math.pi * i / n)]
        for i in range(n)
    ]
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]}


def star(points: int, step: int, radius_m: float, center=CENTER_UTM) -> dict:
    """A {points/step} star polygon (points prime): every edge crosses 2 (step - 1) others."""
    x, y = center
    ring = [
        [
            x + radius_m * math.cos(2 * math.pi * i * step / points),
            y + radius_m * math.sin(2 * math.pi * i * step / points),
        ]
        for i in range(points)
    ]
    return {"type": "Polygon", "coordinates": [ring + ring[:1]]}


class Bench:
    def __init__(self, server: ServerProcess):
        self.server, self.pid, self.http = server, server.proc.pid, requests.Session()

    def post(self, path: str, body: dict | bytes) -> requests.Response:
        if isinstance(body, bytes):
            json_type = {"Content-Type": "application/json"}
            return self.http.post(self.server.url + path, data=body, headers=json_type, timeout=900)
        return self.http.post(self.server.url + path, json=body, timeout=900)

    def measure(self, what: str, send) -> list:
        """[what, answer, seconds, peak MB above the RSS before] of one request (`send()`)."""
        time.sleep(0.5)  # let the allocator settle
        before = mb_of(self.pid, "VmRSS")
        reset_peak(self.pid)
        start = time.perf_counter()
        answer = send()
        seconds = time.perf_counter() - start
        peak = mb_of(self.pid, "VmHWM") - before
        print(f"  {what}: {answer} in {seconds:.1f} s, peak +{peak:.0f} MB", flush=True)
        return [what, answer, f"{seconds:.1f}", f"{peak:.0f}"]

    def answer(self, r: requests.Response) -> str:
        if r.ok:
            return f"{r.status_code}"
        return f"{r.status_code} ({r.json().get('error', '')[:60]}…)"

    def job(self, body: dict) -> str:
        r = self.post("/predTile", body)
        if r.status_code != 202:
            return self.answer(r)
        job = r.json()["job"]
        while (state := self.http.get(f"{self.server.url}/jobs/{job}", timeout=30).json())["state"] in (
            "queued",
            "running",
        ):
            time.sleep(0.2)
        return f"job {state['state']}, {state.get('windows')} windows"


def caps(bench: Bench) -> list[list]:
    """One request at each cap (the first row is the baseline: a 256 px prediction)."""
    side = math.isqrt(MAX_PATCH_PIXELS) - 2 * CONTEXT
    predict = lambda w, h, session=None: bench.answer(  # noqa: E731
        bench.post("/predPatch", {"extent": pixel_box(w, h), "session": session})
    )
    rows = [bench.measure("/predPatch 256 px (baseline)", lambda: predict(256, 256))]
    rows.append(bench.measure(f"/predPatch {side} px: canvas at the pixel cap", lambda: predict(side, side)))
    rows.append(
        bench.measure(f"/predPatch {MAX_PATCH_SIDE} x 1 px strip", lambda: predict(MAX_PATCH_SIDE, 1))
    )
    rows.append(
        bench.measure(f"/predPatch {MAX_PATCH_SIDE} x 64 px strip", lambda: predict(MAX_PATCH_SIDE, 64))
    )
    session = bench.post("/sessions", {}).json()["session"]
    for i in range(MAX_CLASSES - 4):
        r = bench.post("/addClass", {"session": session, "name": f"class {i}", "color": "#123456"})
        assert r.ok, r.text
    rows.append(
        bench.measure(
            f"/predPatch {side} px, {MAX_CLASSES} classes (class cap)", lambda: predict(side, side, session)
        )
    )
    rows.append(
        bench.measure(f"/predPatch 512 px, {MAX_CLASSES} classes", lambda: predict(512, 512, session))
    )
    correction = lambda geometry: bench.answer(  # noqa: E731
        bench.post("/recordCorrection", {"geometry": geometry, "crs": 32618, "value": 1})
    )
    rows.append(
        bench.measure(
            f"/recordCorrection, {MAX_VERTICES} vertices (vertex cap)",
            lambda: correction(circle(MAX_VERTICES - 1, 200)),
        )
    )
    points, step = 1249, 5  # a prime: the ring visits every point once; (step - 1) x points crossings
    assert (step - 1) * points <= MAX_CROSSINGS
    rows.append(
        bench.measure(
            f"/recordCorrection, star: {(step - 1) * points} crossings (repaired)",
            lambda: correction(star(points, step, 200)),
        )
    )
    big = star(200_003, 7, 200)
    body = f'{{"value": 1, "crs": 32618, "geometry": {big}}}'.replace("'", '"').encode()  # just under 8 MiB
    rows.append(
        bench.measure(
            f"/recordCorrection, {len(body) / 2**20:.1f} MiB body (body cap)",
            lambda: bench.answer(bench.post("/recordCorrection", body)),
        )
    )
    rows.append(
        bench.measure(
            "/predTile 2 x 2 km (4 km²): one window at a time",
            lambda: bench.job({"extent": utm_box(2000, 2000)}),
        )
    )
    return rows


def tile_path() -> str:
    """A z17 tile in the middle of area a."""
    ext = Extent(CENTER_UTM[0] - 1, CENTER_UTM[1] - 1, CENTER_UTM[0] + 1, CENTER_UTM[1] + 1, crs=UTM)
    lon, lat = (ext.to_crs(parse_crs(4326)).bounds[i] for i in (0, 1))
    t = mercantile.tile(lon, lat, 17)
    return f"/tiles/demo/{t.z}/{t.x}/{t.y}.png"


def light_latencies(url: str, session: str, repeat: int) -> dict[str, float]:
    """Median ms of each light request over `repeat` rounds (one client)."""
    http = requests.Session()
    calls = {
        "GET /health": lambda: http.get(url + "/health", timeout=120),
        "GET /tiles (z17)": lambda: http.get(url + tile_path(), timeout=120),
        "GET /sessions/<id>": lambda: http.get(f"{url}/sessions/{session}", timeout=120),
        "POST /recordCorrection": lambda: http.post(
            url + "/recordCorrection",
            timeout=120,
            json={"extent": utm_box(2, 2), "value": 2, "session": session},
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            r = call()
            assert r.ok, (name, r.status_code, r.text[:200])
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def light_under_load(url: str, repeat: int) -> tuple[list[list], dict]:
    """Light requests' p50 idle and with the heavy queue full; → (rows, heavy answers counted)."""
    session = requests.post(url + "/sessions", json={}, timeout=30).json()["session"]
    light_latencies(url, session, 2)  # warm
    idle = light_latencies(url, session, repeat)
    stop, counts, lock = (
        threading.Event(),
        {"200": 0, "503": 0, "other": 0, "retry_after": set()},
        threading.Lock(),
    )

    def heavy():
        http = requests.Session()
        while not stop.is_set():
            r = http.post(url + "/predPatch", json={"extent": pixel_box(1024, 1024)}, timeout=600)
            with lock:
                key = str(r.status_code) if r.status_code in (200, 503) else "other"
                counts[key] += 1
                if r.status_code == 503:
                    counts["retry_after"].add(r.headers.get("Retry-After"))
            if r.status_code == 503:
                time.sleep(0.2)

    clients = [threading.Thread(target=heavy, daemon=True) for _ in range(HEAVY_SLOTS + MAX_WAITING + 2)]
    for c in clients:
        c.start()
    time.sleep(5)  # the queue fills
    loaded = light_latencies(url, session, repeat)
    stop.set()
    for c in clients:
        c.join()
    rows = [
        [name, f"{idle[name]:.0f}", f"{loaded[name]:.0f}", f"{loaded[name] / idle[name]:.2f}x"]
        for name in idle
    ]
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/limits.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds of light requests, idle and loaded")
    args = parser.parse_args(argv)
    if not DEMO_MODEL.is_file() or not (REPO / "web_tool" / "data" / "demo" / "scene.json").is_file():
        raise SystemExit("the demo dataset or model is missing: run `make demo` first")
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        cmd = ["--model_fn", str(DEMO_MODEL), "--fine_tune", "last_layer", "--state_dir", tmp]
        with ServerProcess(*cmd) as server:
            bench = Bench(server)
            idle_mb = mb_of(server.proc.pid, "VmRSS")
            rows = caps(bench)
            light, counts = light_under_load(server.url, args.repeat)
    print(
        f"\nServer RSS when idle after start-up: {idle_mb:.0f} MB;"
        f" aim at the pixel cap: ≤ {AIM_MB} MB above idle.\n"
    )
    print(markdown_table(["one request at a cap", "answer", "s", "peak MB above idle"], rows))
    print()
    print(markdown_table(["light request", "p50 ms idle", "p50 ms, heavy queue full", "ratio"], light))
    retry = ", ".join(sorted(str(v) for v in counts["retry_after"])) or "–"
    print(
        f"\nWhile the queue was full ({HEAVY_SLOTS} running + {MAX_WAITING} waiting, "
        f"{HEAVY_SLOTS + MAX_WAITING + 2} clients): /predPatch answered {counts['200']} x 200 and "
        f"{counts['503']} x 503 (Retry-After: {retry} s), {counts['other']} other."
    )
    at_cap = float(rows[1][3])
    return 0 if at_cap <= AIM_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
