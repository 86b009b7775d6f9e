"""Does serving imagery at the model's ground resolution pay? The demo model on finer imagery.

The demo model was trained at 1 m. The held-out tile of demo area a is resampled (bilinear) to a
finer resolution (default 0.6 m, as NAIP has been since 2018), then mapped with the batch CLI three
ways, each compared with the tile's labels on every pixel (`python -m web_tool.validate report`):
  - the 1 m original;
  - the finer copy served at its own resolution (what the tool does without `resolution`);
  - the finer copy with `"resolution": 1.0` in datasets.json (served at the model's 1 m).
Prints overall accuracy, each class's producer's accuracy and the pixels mapped.

    .venv/bin/python bench/resolution.py [--res 0.6]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import rasterio
from common import REPO, markdown_table
from rasterio.warp import Resampling, reproject

from web_tool.batch import main as batch
from web_tool.validate.__main__ import main as validate

DEMO = REPO / "web_tool" / "data" / "demo"
MARGIN_M = 40  # the map stays this far inside the tile: no edge of the imagery in any window


def resample(src_path: Path, out: Path, res: float) -> None:
    with rasterio.open(src_path) as src:
        scale = src.res[0] / res
        width, height = round(src.width * scale), round(src.height * scale)
        transform = src.transform * src.transform.scale(src.width / width, src.height / height)
        profile = {**src.profile, "width": width, "height": height, "transform": transform}
        with rasterio.open(out, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                reproject(
                    rasterio.band(src, b),
                    rasterio.band(dst, b),
                    dst_transform=transform,
                    dst_crs=src.crs,
                    resampling=Resampling.bilinear,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=float, default=0.6, help="ground metres of the finer copy")
    parser.add_argument("--data", type=Path, default=DEMO, help="demo scene folder")
    args = parser.parse_args(argv)
    scene = json.loads((args.data / "scene.json").read_text())
    tile = scene["holdout"]
    image, labels = args.data / "imagery" / f"{tile}.tif", args.data / "labels" / f"{tile}.tif"
    classes = scene["classes"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-resolution-") as tmp_dir:
        tmp = Path(tmp_dir)
        fine = tmp / "fine.tif"
        resample(image, fine, args.res)
        datasets = {
            "1 m original": {"paths": [str(image)]},
            f"{args.res:g} m as it is": {"paths": [str(fine)]},
            f'{args.res:g} m, "resolution": 1.0': {"paths": [str(fine)], "resolution": 1.0},
        }
        (tmp / "datasets.json").write_text(json.dumps(datasets))
        with rasterio.open(image) as src:
            b, crs = src.bounds, src.crs.to_epsg()
        m = MARGIN_M
        ring = [[b.left + m, b.bottom + m], [b.right - m, b.bottom + m], [b.right - m, b.top - m]]
        ring += [[b.left + m, b.top - m], ring[0]]
        (tmp / "aoi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
        for i, name in enumerate(datasets):
            out, report = tmp / f"map{i}.tif", tmp / f"report{i}.json"
            common = ["--datasets_json", str(tmp / "datasets.json"), "--aoi", str(tmp / "aoi.geojson")]
            run = ["--dataset", name, *common, "--aoi_crs", str(crs), "--out", str(out), "--workers", "0"]
            with contextlib.redirect_stdout(io.StringIO()):  # the CLIs' own summaries
                code = batch([*run, "--quiet"]) or validate(
                    ["report", str(out), "--reference", str(labels), "--json", str(report)]
                )
            if code:
                return code
            r = json.loads(report.read_text())
            producers = [f"{c['producers']['value']:.3f}" for c in r["classes"]]
            rows.append([name, f"{r['overall']['value']:.3f}", *producers, r["n"]])
    print(f"\nThe demo model (trained at 1 m) on held-out tile {tile}, resampled to {args.res:g} m:\n")
    header = ["imagery", "accuracy", *(f"{c} found" for c in classes), "pixels mapped"]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
