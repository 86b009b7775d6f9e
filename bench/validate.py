"""How fast is accuracy assessment, and do its 95 % intervals hold what they promise?

Speed: on a generated class map of 4 km² and of 25 km² (the server's /predTile cap) at 1 m, the
median time to draw a 200-point stratified sample (two passes over the map) and keep it in SQLite,
to compare the map with a reference raster on every pixel (census), and to compute a report from
200 answers, each as a ratio to one plain windowed read of the same map (every block decompressed
once, from a freshly opened file, as the others do; measured in the same run).

Honesty of the intervals: real maps made by the demo model with `python -m web_tool.batch`, whose
truth is known on every pixel (the demo's label rasters; the Chesapeake 1 m labels of real NAIP when
../shared is present). A perfect interpreter answers stratified samples of 200 points (minimum 20
a class) drawn with many seeds; for the overall accuracy and each class's area the table gives the
census (true) value, the mean estimate, and how often the 95 % interval covered the truth (aim: 95 %).

    python bench/validate.py [--quick] [--repeat 5] [--draws 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, markdown_table, median_time  # common puts the repository on sys.path

DEMO = REPO / "web_tool" / "data" / "demo"
CHESAPEAKE = REPO.parent / "shared" / "data" / "chesapeake-wv-dev"
CLASSES = ["Water", "Forest", "Field", "Built"]
LUT_CHESAPEAKE = np.array([255, 0, 1, 2, 3, 3, 3] + [255] * 249, np.uint8)


def write_map(path: Path, data: np.ndarray, origin=(400_000, 4_400_000), crs="EPSG:32618") -> Path:
    """A class map like an export's: tiled, deflate, uint8, nodata 255, CLASSES tag."""
    import rasterio

    h, w = data.shape
    profile = dict(
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="uint8",
        crs=crs,
        nodata=255,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        zlevel=1,
        transform=rasterio.Affine(1, 0, origin[0], 0, -1, origin[1]),
    )
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, h, 1024):
            dst.write(
                data[row : row + 1024], 1, window=rasterio.windows.Window(0, row, w, min(1024, h - row))
            )
        dst.update_tags(CLASSES=json.dumps(CLASSES))
    return path


def generated(side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(map, truth) of side x side px: blocky classes, the map wrong on about 15 % of pixels."""
    rng = np.random.default_rng(seed)
    coarse = rng.choice(4, size=(side // 50 + 1, side // 50 + 1), p=[0.05, 0.35, 0.5, 0.1]).astype(np.uint8)
    truth = np.repeat(np.repeat(coarse, 50, axis=0), 50, axis=1)[:side, :side]
    wrong = rng.random(truth.shape) < 0.15
    return np.where(wrong, rng.integers(0, 4, truth.shape, dtype=np.uint8), truth).astype(np.uint8), truth


# --------------------------------------------------------------------------- speed


def speed(side: int, repeat: int) -> list[object]:
    """One row of the speed table: a generated map of side x side px."""
    import rasterio

    from web_tool.validate import design, reference
    from web_tool.validate.report import sample_report
    from web_tool.validate.samples import SampleStore

    classes = [{"name": n, "color": "#888888"} for n in CLASSES]
    with tempfile.TemporaryDirectory() as tmp:
        mapped, truth = generated(side)
        map_path, truth_path = (
            write_map(Path(tmp) / "map.tif", mapped),
            write_map(Path(tmp) / "truth.tif", truth),
        )
        del mapped, truth
        store = SampleStore(Path(tmp) / "state")

        def read_once():  # the baseline: every block of the map decompressed once
            with rasterio.open(map_path) as src:
                for window in design.windows(src.height, src.width):
                    src.read(1, window=window)

        def sample():
            with rasterio.open(map_path) as src:
                strata, plan, points = design.sample_map(src, classes, 200, 20, seed=1)
            store.add("0123456789abcdef", strata, plan, points)

        def census():
            with rasterio.open(map_path) as src, rasterio.open(truth_path) as ref:
                reference.census(src, reference.raster_reader(ref), classes, None)

        with rasterio.open(map_path) as src:
            strata = design.map_strata(src, classes)
        counts = np.full((4, 4), 3) + np.eye(4, dtype=int) * 40  # 200 answers
        base = median_time(read_once, repeat)
        t_sample = median_time(sample, repeat)
        t_census = median_time(census, max(1, repeat // 2))
        t_report = median_time(lambda: sample_report(classes, strata.pixels, strata.km2, counts), repeat)
    ms = lambda t: f"{1000 * t:.0f}"  # noqa: E731
    return [
        f"{side * side / 1e6:g}",
        ms(base),
        ms(t_sample),
        f"{t_sample / base:.2f}x",
        ms(t_census),
        f"{t_census / base:.2f}x",
        f"{1000 * t_report:.2f}",
    ]


# --------------------------------------------------------------------------- interval coverage


def batch_map(dataset: str, aoi: dict, crs: str, out: Path) -> Path:
    from web_tool.batch import main as batch

    (out.parent / "aoi.geojson").write_text(json.dumps(aoi))
    args = [
        "--dataset",
        dataset,
        "--aoi",
        str(out.parent / "aoi.geojson"),
        "--aoi_crs",
        crs,
        "--out",
        str(out),
    ]
    assert batch([*args, "--workers", "0", "--quiet"]) == 0
    return out


def square(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def truth_on(src, read) -> np.ndarray:
    """The truth on the map's grid: class index per pixel (255 where unknown)."""
    from web_tool.validate.design import grid_of

    codes, valid = read(grid_of(src))
    return np.where(valid, codes, 255).astype(np.uint8)


def coverage(name: str, map_path: Path, truth: np.ndarray, draws: int) -> list[object]:
    import rasterio

    from web_tool.validate.design import allocate, draw, map_classes, map_strata
    from web_tool.validate.report import sample_report

    with rasterio.open(map_path) as src:
        mapped = src.read(1)
        classes = map_classes(src)
        strata = map_strata(src, classes)
        known = (mapped != 255) & (truth != 255)
        true_oa = float((mapped[known] == truth[known]).mean())
        true_km2 = np.bincount(truth[known], minlength=4)[:4] * 1e-6
        points = allocate(strata.pixels, 200, 20)
        est, hit, width = [], [], []
        for seed in range(draws):
            counts = np.zeros((4, 4), np.int64)
            for r, c, k in draw(src, points, strata.pixels, np.random.default_rng(seed)):
                if truth[r, c] != 255:
                    counts[k, truth[r, c]] += 1
            report = sample_report(classes, strata.pixels, strata.km2, counts)
            got = [report["overall"], *(c["estimated_km2"] for c in report["classes"])]
            want = [true_oa, *true_km2]
            est.append([g["value"] for g in got])
            hit.append([abs(g["value"] - w) <= (g["ci95"] or 0) for g, w in zip(got, want, strict=True)])
            width.append(got[0]["ci95"])
    est, hit = np.array(est), np.array(hit)
    present = [k for k in range(4) if true_km2[k] > 0 or strata.pixels[k] > 0]
    per_class = ", ".join(f"{CLASSES[k]} {100 * hit[:, k + 1].mean():.0f} %" for k in present)
    oa = [
        f"{true_oa:.3f}",
        f"{est[:, 0].mean():.3f}",
        f"±{np.mean(width):.3f}",
        f"{100 * hit[:, 0].mean():.0f} %",
    ]
    return [name, f"{sum(strata.km2):.2f}", *oa, per_class]


def coverage_rows(draws: int, quick: bool) -> list[list[object]]:
    from web_tool.DataLoader import DataLoader
    from web_tool.imagery import datasets
    from web_tool.validate import reference

    rows = []
    demo = {c.name: c for c in datasets.from_json(REPO / "web_tool" / "datasets.json")}["demo"]
    labels = reference.labels_reader(DataLoader(demo))
    side = 600 if quick else 1800
    areas = [
        ("demo area b (shifted look, ~80 % accurate)", (328_100, 4_305_100)),
        ("demo area a (~99 % accurate)", (325_000, 4_304_500)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        import rasterio

        for i, (name, (x0, y0)) in enumerate(areas):
            path = Path(tmp) / f"m{i}" / "map.tif"
            path.parent.mkdir()
            batch_map("demo", square(x0, y0, x0 + side, y0 + side), "32618", path)
            with rasterio.open(path) as src:
                truth = truth_on(src, labels)
            rows.append(coverage(name, path, truth, draws))
        if CHESAPEAKE.exists():
            patches = [
                rasterio.open(CHESAPEAKE / "lc" / f"train_m_3708020_sw_17_1_{i}_lc.tif") for i in range(8)
            ]
            aoi = {"type": "MultiPolygon", "coordinates": [square(*p.bounds)["coordinates"] for p in patches]}
            path = Path(tmp) / "wv" / "map.tif"
            path.parent.mkdir()
            batch_map(str(CHESAPEAKE / "naip2014"), aoi, "26917", path)
            from web_tool.imagery.datasets import DatasetConfig

            files = [str(CHESAPEAKE / "lc" / p.name) for p in patches]
            lc = DataLoader(DatasetConfig("lc", files, label_paths=files))
            with rasterio.open(path) as src:
                truth = LUT_CHESAPEAKE[truth_on(src, reference.labels_reader(lc))]
            rows.append(coverage(f"Chesapeake WV, {len(patches)} real NAIP patches", path, truth, draws))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small maps, few repeats and draws")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--draws", type=int, default=300, help="samples drawn per map for the coverage table")
    args = p.parse_args()
    repeat, draws = (2, 40) if args.quick else (args.repeat, args.draws)
    sides = [1000, 2000] if args.quick else [2000, 5000]
    started = time.perf_counter()
    print("Speed (medians, ms; ratios to one windowed read of the same map in the same run)\n")
    header = [
        "map km²",
        "read ms",
        "sample 200 + store ms",
        "sample / read",
        "census ms",
        "census / read",
        "report ms",
    ]
    print(markdown_table(header, [speed(side, repeat) for side in sides]))
    print(f"\nInterval coverage ({draws} stratified samples of 200 points per map, a perfect interpreter)\n")
    header = ["map", "km²", "true OA", "mean estimate", "mean 95 % CI", "OA covered", "area covered"]
    print(markdown_table(header, coverage_rows(draws, args.quick)))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
