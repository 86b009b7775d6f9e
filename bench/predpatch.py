"""How fast is an interactive prediction? /predPatch over HTTP vs the bare forward pass vs the seed.

For square patches of 256, 512 and 1024 px (at the demo's 1 m) it measures, in one run:
  - http:    the median time of a real `POST /predPatch` to a server subprocess (read, reproject,
             context padding, inference, three PNGs, JSON) as the client sees it;
  - forward: the model's bare forward pass on the same pixels, in this process;
  - seed:    the seed tool's tiling scheme (240 px windows, 40 px margins, its weighted blending,
             keras `predict` in batches) run with the same model on the same pixels.
and prints the medians and their ratios to the forward pass.

    python bench/predpatch.py [--repeat 7] [--sizes 256 512 1024]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import REPO, ServerProcess, markdown_table, median_time

DEMO_MODEL = REPO / "web_tool" / "data" / "demo_model"
CENTER_UTM = (325_245.0, 4_305_974.0)  # area a of the demo, where the seed's example lies


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per measurement (median)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    import keras

    from web_tool.DataLoader import DataLoader
    from web_tool.datasets import from_json
    from web_tool.geometry import Extent, parse_crs
    from web_tool.ServerModels.keras_io import load_keras_model
    from web_tool.ServerModels.keras_model import KerasSegmentationModel

    loader = DataLoader(from_json(REPO / "web_tool" / "datasets.json")[0])
    model = KerasSegmentationModel(DEMO_MODEL, loader.classes)
    network = load_keras_model(DEMO_MODEL)
    print(f"keras {keras.__version__}; model {model.name}; {args.repeat} timed runs each, medians\n")

    rows, results = [], []
    with ServerProcess(
        "--model", "nips_hr", "--model_fn", str(DEMO_MODEL), "--max_patch_pixels", str(2048 * 2048)
    ) as server:
        for size in args.sizes:
            ext = extent_for(size)
            body = {"extent": ext, "weights": [0.25] * model.n_classes}
            patch = loader.read(
                loader.grid_for(
                    Extent(ext["xmin"], ext["ymin"], ext["xmax"], ext["ymax"], crs=parse_crs(3857))
                )
            )
            image = patch.data
            http = median_time(lambda body=body: server.post("/predPatch", body), args.repeat)
            forward = median_time(lambda image=image: model.predict(image), args.repeat)
            seed = median_time(lambda image=image: seed_scheme(network, image), args.repeat)
            shape = f"{image.shape[1]}x{image.shape[0]}"
            rows.append(
                [
                    size,
                    shape,
                    f"{http * 1000:.0f}",
                    f"{forward * 1000:.0f}",
                    f"{seed * 1000:.0f}",
                    f"{http / forward:.2f}x",
                    f"{seed / forward:.2f}x",
                    f"{seed / http:.2f}x",
                ]
            )
            results.append({"size": size, "http_s": http, "forward_s": forward, "seed_s": seed})
            print(f"  {size} px done", flush=True)
    print()
    print(
        markdown_table(
            [
                "patch",
                "pixels",
                "HTTP /predPatch ms",
                "bare forward ms",
                "seed scheme ms",
                "HTTP / forward",
                "seed / forward",
                "seed / HTTP",
            ],
            rows,
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
