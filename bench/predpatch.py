"""How fast is an interactive prediction? /predPatch over HTTP vs the network's bare forward pass.

For square patches of 256, 512 and 1024 px (at the demo's 1 m), with the seed's launch line
(`--model nips_hr --model_fn web_tool/data/demo_model --fine_tune last_layer`), it measures in one
run, in turns (so that a busy spell of this shared machine falls on all alike):
  - HTTP:    a real `POST /predPatch` to a server subprocess (read, warp, the model's context on
             every side, inference, four PNGs, JSON) as the client sees it;
  - page:    the same request as the page sends it, `"input_naip": false` (no imagery PNG);
  - forward: the network's bare forward pass (the Keras network, softmax included, compiled) on the
             same pixels (no context), in this process;
  - seed:    the seed tool's tiling scheme (240 px windows, 40 px margins, its weighted blending,
             keras `predict` in batches) with the same model on the same pixels;
and prints medians, HTTP / forward against the aims (1.6x at 256 px, 1.3x at 512 px), and where a
prediction's time goes, stage by stage, timed in this process with the server's own functions
in the same turns as the HTTP requests: read + warp (the padded canvas), forward (the network's
body on it), head (the rest of the model), render (class colours, blend, uncertainty), encode
(four PNGs), JSON; what is left of the HTTP time is the server and the wire (and what the
server's process pays that this one does not: when it has given freed memory back to the system
(web_tool/http/memory.py), the next request's large arrays are faulted in afresh).

With `--precision bf16` it measures bf16 instead (see precision.py): the speed-up of the network's
forward pass over float32 for the demo model and for U-Nets the size of real NAIP models (32 and 64
base filters, depth 4, built here; the 32-filter one briefly trained on the demo scene (30 steps) so that
its classes mean something), and the arg-max agreement of bf16 with float32 on the real development
imagery (../shared/data/chesapeake-wv-dev; skipped without it).

    python bench/predpatch.py [--repeat 7] [--sizes 256 512 1024] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import psutil
from common import REPO, ServerProcess, interleaved_medians, markdown_table

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model"
CENTER_UTM = (325_245.0, 4_305_974.0)  # area a of the demo, where the seed's example lies
#: HTTP / forward that issue 15 aims at, by patch size
AIMS = {256: 1.6, 512: 1.3}
STAGES = ("read + warp", "forward", "head", "render", "encode", "JSON")


def seed_scheme(network, image: np.ndarray, size: int = 240, margin: int = 40, batch: int = 16):
    """The seed's inference: 240 px windows on a stride of 160, weights 5 inside the margin, 1 in
    the margin, 0.1 on the outer 10 px; all windows predicted, then averaged by weight."""
    h, w, _ = image.shape
    stride = size - 2 * margin
    kernel = np.full((size, size), 0.1, np.float32)
    kernel[10:-10, 10:-10] = 1
    kernel[margin:-margin, margin:-margin] = 5
    ys = [*range(0, h - size, stride), h - size]
    xs = [*range(0, w - size, stride), w - size]
    offsets = [(y, x) for y in ys for x in xs]
    windows = np.stack([image[y : y + size, x : x + size] for y, x in offsets]).astype(np.float32) / 255
    preds = network.predict(windows, batch_size=batch, verbose=0)
    out = np.zeros((h, w, preds.shape[-1]), np.float32)
    counts = np.full((h, w, 1), 1e-9, np.float32)
    for (y, x), p in zip(offsets, preds, strict=True):
        out[y : y + size, x : x + size] += p * kernel[..., None]
        counts[y : y + size, x : x + size] += kernel[..., None]
    return out / counts


def extent_for(size_px: int) -> dict:
    """An EPSG:3857 extent of about size_px x size_px demo pixels centred in area a."""
    from web_tool.geometry import WEB_MERCATOR, Extent, center_latitude, ground_resolution_in, parse_crs

    x, y = CENTER_UTM
    half = size_px / 2
    ext = Extent(x - half, y - half, x + half, y + half, crs=parse_crs(32618)).to_crs(WEB_MERCATOR)
    res = ground_resolution_in(WEB_MERCATOR, 1.0, center_latitude(ext))
    cx, cy = (ext.xmin + ext.xmax) / 2, (ext.ymin + ext.ymax) / 2
    half = size_px * res / 2
    return {
        "xmin": cx - half,
        "xmax": cx + half,
        "ymin": cy - half,
        "ymax": cy + half,
        "spatialReference": {"latestWkid": 3857},
    }


def bare_forward(network):
    """image (HxWxB uint8) → the network's class probabilities: the network alone, compiled."""
    from web_tool.ServerModels.keras_model import compiled, network_input

    run = compiled(network)
    return lambda image: run(network_input(image[None])).numpy()


def stage_runs(loader, model, extent, weights, colors) -> dict:
    """The stages of /predPatch as calls of the server's own functions in this process, to be timed
    in the same turns as the HTTP request (a busy spell of the machine falls on both alike)."""
    from web_tool.rendering.images import png_base64
    from web_tool.rendering.patch import encode_maps, input_rgb, pred_patch, read_padded, render_maps

    pad = model.padding
    padded, patch = read_padded(loader, extent, pad)
    probs = model.predict(padded.data)[pad:-pad, pad:-pad]
    _, hard, soft, score = render_maps(probs, weights, colors)
    response = pred_patch(loader, model, extent, weights)
    return {
        "stage: read + warp": lambda: read_padded(loader, extent, pad),
        "stage: forward": lambda: model.deep_features(padded.data),
        "stage: forward + head": lambda: model.predict(padded.data),
        "stage: render": lambda: render_maps(probs, weights, colors),
        "stage: encode": lambda: (png_base64(input_rgb(patch)), encode_maps(patch, hard, soft, score)),
        "stage: JSON": lambda: json.dumps(response),
    }


def cpu_of(clock, out: list[float], fn) -> None:
    """Run fn, appending the CPU seconds `clock` counted meanwhile to `out`."""
    start = clock()
    fn()
    out.append(clock() - start)


def http_report(args) -> list[dict]:
    from web_tool.DataLoader import DataLoader
    from web_tool.geometry import Extent, parse_crs
    from web_tool.imagery.datasets import from_json
    from web_tool.rendering.images import class_colors
    from web_tool.ServerModels.keras_io import load_keras_model
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    loader = DataLoader(from_json(REPO / "web_tool" / "datasets.json")[0])
    model = KerasSegmentationModel(DEMO_MODEL, loader.classes)
    network = load_keras_model(DEMO_MODEL)
    forward = bare_forward(network)
    colors = class_colors(model.classes)
    print(f"model {model.name} (context {model.padding} px a side); {args.repeat} timed runs each, medians\n")

    results = []
    launch = ["--model", "nips_hr", "--model_fn", str(DEMO_MODEL), "--fine_tune", "last_layer"]
    with ServerProcess(*launch, "--max_patch_pixels", str(2048 * 2048)) as server:
        process = psutil.Process(server.proc.pid)

        def server_cpu() -> float:
            times = process.cpu_times()
            return times.user + times.system

        for size in args.sizes:
            ext = extent_for(size)
            weights = [0.25] * model.n_classes
            body = {"extent": ext, "weights": weights}
            extent = Extent(ext["xmin"], ext["ymin"], ext["xmax"], ext["ymax"], crs=parse_crs(3857))
            image = loader.read(loader.grid_for(extent)).data
            cpu: dict[str, list[float]] = {"http": [], "forward": []}
            post = partial(server.post, "/predPatch", body)
            runs = {
                "http": partial(cpu_of, server_cpu, cpu["http"], post),
                # the page's own request: the same without the imagery it never shows
                "page": partial(server.post, "/predPatch", {**body, "input_naip": False}),
                "forward": partial(cpu_of, time.process_time, cpu["forward"], partial(forward, image)),
            }
            if not args.no_seed:
                runs["seed"] = lambda image=image: seed_scheme(network, image)
            stage_fns = stage_runs(loader, model, extent, weights, colors)
            times = interleaved_medians({**runs, **stage_fns}, args.repeat)
            cpu_s = {k: statistics.median(v[-args.repeat :]) for k, v in cpu.items()}
            stages = {name.removeprefix("stage: "): times.pop(name) for name in stage_fns}
            stages["head"] = max(0.0, stages.pop("forward + head") - stages["forward"])
            results.append({"size": size, "pixels": image.shape[:2], **times, "cpu": cpu_s, "stages": stages})
            print(f"  {size} px done", flush=True)
    print()
    print(headline_table(results))
    print()
    print(stage_table(results))
    return results


def headline_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        ratio = r["http"] / r["forward"]
        aim = AIMS.get(r["size"])
        verdict = "" if aim is None else f"≤ {aim}x: {'met' if ratio <= aim else 'not met'}"
        seed = [f"{r['seed'] * 1000:.0f}", f"{r['seed'] / r['http']:.2f}x"] if "seed" in r else ["–", "–"]
        c = r["cpu"]
        cpu = f"{c['http'] * 1000:.0f} / {c['forward'] * 1000:.0f} = {c['http'] / c['forward']:.2f}x"
        rows.append(
            [
                r["size"],
                f"{r['http'] * 1000:.0f}",
                f"{r['forward'] * 1000:.0f}",
                f"{ratio:.2f}x",
                verdict,
                f"{r['page'] * 1000:.0f} ({r['page'] / r['forward']:.2f}x)",
                cpu,
                *seed,
            ]
        )
    header = [
        "patch px",
        "HTTP /predPatch ms",
        "bare forward ms",
        "HTTP / forward",
        "aim",
        "the page's request ms (/ forward)",
        "CPU ms: server / forward",
        "seed scheme ms",
        "seed / HTTP",
    ]
    return (
        markdown_table(header, rows)
        + "\n\nCPU ms: all threads of the server process during a request, and of"
        " this process during the bare forward pass (less disturbed by a busy machine than wall-clock time)."
    )


def stage_table(results: list[dict]) -> str:
    """Where the time goes: each stage in ms and as a share of the bare forward pass."""
    rows = []
    for r in results:
        stages, forward = r["stages"], r["forward"]
        rest = r["http"] - sum(stages.values())
        cells = [f"{stages[s] * 1000:.0f} ({stages[s] / forward:.2f})" for s in STAGES]
        rows.append([r["size"], *cells, f"{rest * 1000:.0f} ({rest / forward:.2f})"])
    header = ["patch px", *(f"{s} ms" for s in STAGES), "server + wire ms"]
    return (
        "Stages of /predPatch, ms (as a share of the bare forward pass); forward and head run on the\n"
        "padded canvas; the imagery's PNG is encoded while the network runs, so stages may add up to\n"
        "more than the HTTP time.\n\n" + markdown_table(header, rows)
    )


# --- bf16 ------------------------------------------------------------------------------------------


def train_wide_unet(out: Path, base_filters: int) -> None:
    """A U-Net of `base_filters` briefly trained on the demo scene (web_tool.demo.train, 30 steps)."""
    cmd = [
        sys.executable,
        "-m",
        "web_tool.demo.train",
        "--out",
        str(out),
        "--depth",
        "4",
        "--epochs",
        "1",
        "--base_filters",
        str(base_filters),
        "--steps",
        "30",
        "--batch",
        "4",
        "--no-eval",
    ]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def agreement(f32, b16, classes: list[str]) -> tuple[float, int] | None:
    """(share of the real development pixels where the bf16 model's class is float32's, pixels), or
    None without ../shared."""
    import devset

    if not devset.available():
        return None
    same = total = 0
    for look in devset.looks():
        for tile in devset.load(look, classes):
            a, b = f32.predict(tile.image).argmax(-1), b16.predict(tile.image).argmax(-1)
            same += int((a == b).sum())
            total += a.size
    return same / total, total


def bf16_report(args) -> list[dict]:
    from web_tool.ServerModels.keras_model import KerasSegmentationModel
    from web_tool.ServerModels.precision import cpu_bf16_flag, no_bf16_message
    from web_tool.ServerModels.unet import build_unet

    flag = cpu_bf16_flag()
    print(f"CPU bf16 instructions: {flag}" if flag else no_bf16_message())
    names = {"Water": "#0000FF", "Forest": "#008000", "Field": "#80FF80", "Built": "#806060"}
    classes = [{"name": n, "color": c} for n, c in names.items()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-bf16-") as tmp:
        print("training a 32-filter U-Net on the demo scene to check agreement (1-3 min)...", flush=True)
        train_wide_unet(Path(tmp) / "unet32.keras", 32)
        build_unet(base_filters=64, depth=4).save(Path(tmp) / "unet64.keras")
        networks = {
            "demo U-Net": DEMO_MODEL,
            "U-Net 32 filters (trained briefly)": Path(tmp, "unet32.keras"),
            "U-Net 64 filters (untrained)": Path(tmp, "unet64.keras"),
        }
        for name, path in networks.items():
            f32 = KerasSegmentationModel(path, classes)
            b16 = f32.in_bfloat16()
            params = f32.body.count_params()
            rng = np.random.default_rng(0)
            for size in args.sizes:
                image = rng.integers(0, 256, (size, size, f32.n_bands), dtype=np.uint8)
                runs = {"float32": f32.predict, "bf16": b16.predict}
                times = interleaved_medians({k: partial(run, image) for k, run in runs.items()}, args.repeat)
                results.append({"network": name, "parameters": params, "size": size, **times})
            same = agreement(f32, b16, [c["name"] for c in classes]) if "untrained" not in name else None
            for r in results[-len(args.sizes) :]:
                r["agreement"] = same
            print(f"  {name} done", flush=True)
    rows = []
    for r in results:
        same = r["agreement"]
        cell = "–" if same is None else f"{same[0]:.2%} of {same[1]:,} px"
        rows.append(
            [
                r["network"],
                f"{r['parameters']:,}",
                r["size"],
                f"{r['float32'] * 1000:.0f}",
                f"{r['bf16'] * 1000:.0f}",
                f"{r['float32'] / r['bf16']:.2f}x",
                cell,
            ]
        )
    print()
    print(
        markdown_table(
            [
                "network",
                "parameters",
                "patch px",
                "float32 ms",
                "bf16 ms",
                "bf16 speed-up",
                "arg-max agreement, real dev imagery",
            ],
            rows,
        )
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument(
        "--precision",
        choices=("float32", "bf16"),
        default="float32",
        help="bf16: measure bf16 against float32 instead",
    )
    parser.add_argument("--no_seed", action="store_true", help="leave the seed's scheme out (it is slow)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    import keras

    print(f"keras {keras.__version__}")
    results = bf16_report(args) if args.precision == "bf16" else http_report(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == "__main__":
    main()
