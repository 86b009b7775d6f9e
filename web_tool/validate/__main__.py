"""Assess a finished map from the command line: draw a validation sample, or report accuracy and
class areas (with 95 % confidence intervals) against reference points, a reference raster, a
dataset's labels, or a sample answered on the page.

    python -m web_tool.validate sample map.tif [--total 200] [--min_per_class 20] [--out points.geojson]
    python -m web_tool.validate report map.tif --points points.geojson [--property reference]
    python -m web_tool.validate report map.tif --reference 'labels/*.tif' [--codes 1=Water,2=Forest,15=]
    python -m web_tool.validate report map.tif --dataset demo           # the dataset's `labels`
    python -m web_tool.validate report --state_dir web_tool/data/state --job JOB --sample SAMPLE

`sample` writes the points as GeoJSON (lon/lat) with an empty `reference` property and without
the map's class (so that whoever labels them is not swayed by it): label them in any GIS (a class
name or index per point; "unsure" or nothing leaves a point out), then `report --points` them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import rasterio

from web_tool.DataLoader import DataLoader
from web_tool.errors import LandCoverError, NotFoundError
from web_tool.imagery import datasets as dataset_config
from web_tool.paths import DATASETS_JSON, STATE_DIR
from web_tool.validate import assess, design, reference
from web_tool.validate.report import to_csv, to_text
from web_tool.validate.samples import SampleStore

#: the property `sample` writes for the reference class, and `report --points` reads by default
REFERENCE_PROPERTY = "reference"


def parse_codes(text: str) -> dict[str, str | None]:
    """--codes 1=Water,2=Forest,15= → {"1": "Water", "2": "Forest", "15": None}."""
    codes: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--codes: {item!r} is not CODE=CLASS (CLASS may be empty)")
        codes[key.strip()] = value.strip() or None
    return codes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m web_tool.validate", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="draw a stratified random sample of a class map's pixels")
    s.add_argument("map", help="the class map (a COG from /predTile or python -m web_tool.batch)")
    s.add_argument("--total", type=int, default=design.DEFAULT_TOTAL, help="points in the sample")
    s.add_argument(
        "--min_per_class",
        type=int,
        default=design.DEFAULT_MIN_PER_CLASS,
        help="fewest points a mapped class gets; the rest go in proportion to area",
    )
    s.add_argument("--seed", type=int, default=None, help="random seed (default: a new one, printed)")
    s.add_argument("--out", default=None, help="points GeoJSON (default: <map>_sample.geojson)")
    r = sub.add_parser("report", help="accuracy and class areas with 95 %% confidence intervals")
    r.add_argument("map", nargs="?", help="the class map (not needed with --sample)")
    source = r.add_mutually_exclusive_group(required=True)
    source.add_argument("--points", help="GeoJSON points with a reference class property")
    source.add_argument("--reference", help="reference label raster(s): a file, folder or glob")
    source.add_argument("--dataset", help="compare with this dataset's `labels` (--datasets_json)")
    source.add_argument("--sample", help="a sample answered on the page (with --state_dir and --job)")
    r.add_argument("--property", default=REFERENCE_PROPERTY, help="--points: the property with the class")
    r.add_argument("--crs", default="4326", help="--points: EPSG code of the coordinates")
    r.add_argument(
        "--codes",
        type=parse_codes,
        default=None,
        help="reference value → class, e.g. 1=Water,2=Forest,5=Built,15= (empty: ignore);"
        " default: values are class indices (or names)",
    )
    r.add_argument("--datasets_json", default=str(DATASETS_JSON), help="named datasets")
    r.add_argument("--state_dir", default=str(STATE_DIR), help="--sample: the server's state")
    r.add_argument("--job", help="--sample: the /predTile job the sample belongs to")
    r.add_argument("--json", default=None, help="also write the report as JSON here")
    r.add_argument("--csv", default=None, help="also write the report as CSV here")
    args = p.parse_args(argv)
    if args.command == "report" and args.sample is None and args.map is None:
        p.error("report needs the map (or --sample with --job)")
    if args.command == "report" and args.sample is not None and args.job is None:
        p.error("--sample needs --job (the job whose map it assesses)")
    return args


def run_sample(args: argparse.Namespace) -> str:
    seed = assess.new_seed() if args.seed is None else args.seed
    with rasterio.open(args.map) as src:
        strata, plan, points = design.sample_map(
            src, design.map_classes(src), args.total, args.min_per_class, seed
        )
    out = Path(args.out or Path(args.map).with_name(Path(args.map).stem + "_sample.geojson"))
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
            "properties": {"id": i, REFERENCE_PROPERTY: None},
        }
        for i, p in enumerate(points)
    ]
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}, indent=1))
    lines = [f"wrote {len(points)} points to {out} (seed {seed}); label each point's `{REFERENCE_PROPERTY}`"]
    for c, n, km2 in zip(strata.classes, plan["points"], strata.km2, strict=True):
        lines.append(f"  {c['name']:<14} {n:>5} points   {km2:12.4f} km² mapped")
    return "\n".join(lines)


def run_report(args: argparse.Namespace) -> dict[str, Any]:
    if args.sample:
        state = Path(args.state_dir)
        if not (state / "validation.sqlite").is_file():
            raise NotFoundError(f"no validation samples in {state} (wrong --state_dir?)")
        return assess.stored_sample_report(SampleStore(state), args.job, args.sample)
    if not Path(args.map).is_file():
        raise NotFoundError(f"no such map: {args.map}")
    if args.points:
        try:
            points = json.loads(Path(args.points).read_text())
        except (OSError, ValueError) as exc:
            raise NotFoundError(f"cannot read the points GeoJSON {args.points}: {exc}") from None
        return assess.points_report(Path(args.map), None, points, args.property, args.crs, args.codes)
    if args.dataset:
        configs = {c.name: c for c in dataset_config.from_json(args.datasets_json)}
        if args.dataset not in configs:
            raise NotFoundError(
                f"no dataset {args.dataset!r} in {args.datasets_json}; it has {', '.join(configs)}"
            )
        loader = DataLoader(configs[args.dataset])
    else:
        files = dataset_config.expand_paths(args.reference)
        if not files:
            raise NotFoundError(f"--reference {args.reference!r}: no raster files found")
        loader = DataLoader(dataset_config.DatasetConfig("reference", files, label_paths=files))
    return assess.raster_report(Path(args.map), None, reference.labels_reader(loader), args.codes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "sample":
            print(run_sample(args))
            return 0
        report = run_report(args)
    except LandCoverError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_text(report, args.map or f"sample {args.sample}"))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    if args.csv:
        Path(args.csv).write_text(to_csv(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
