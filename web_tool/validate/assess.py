"""The thin outer layer that the routes and the command line share: open the class map (and the
reference), run the design, reference and estimator steps, give back a sample or a report."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from web_tool.validate import design, reference
from web_tool.validate.report import census_report, sample_report
from web_tool.validate.samples import SampleStore


def new_seed() -> int:
    return secrets.randbits(31)


def new_sample(
    store: SampleStore,
    job: str,
    cog: Path,
    classes: list[dict[str, Any]] | None,
    total: int,
    minimum: int,
    seed: int | None = None,
) -> str:
    """Draw a stratified random sample of the class map `cog` and keep it as a sample of `job`; its id."""
    store.check_size(total)
    with rasterio.open(cog) as src:
        strata, plan, points = design.sample_map(
            src, classes or design.map_classes(src), total, minimum, new_seed() if seed is None else seed
        )
    return store.add(job, strata, plan, points)


def stored_sample_report(store: SampleStore, job: str, sample_id: str) -> dict[str, Any]:
    """The report of a sample's answers so far."""
    classes, strata, counts = store.counts(job, sample_id)
    progress = store.progress(sample_id)
    notes = [
        f"{progress['answered']} of {progress['points']} points answered; {progress['unsure']} unsure"
        f" and {progress['pending'] + progress['skipped']} not yet answered are left out"
    ]
    report = sample_report(
        classes, [s["pixels"] for s in strata], [s["km2"] for s in strata], counts, notes=notes
    )
    return {**report, "sample": sample_id, "progress": progress}


def raster_report(
    cog: Path,
    classes: list[dict[str, Any]] | None,
    read_reference: reference.Reader,
    codes: Mapping[str, int | str | None] | None,
) -> dict[str, Any]:
    """The map compared with a reference raster on every pixel (`read_reference`: a reference.Reader)."""
    with rasterio.open(cog) as src:
        classes = classes or design.map_classes(src)
        pixels, km2, notes = reference.census(
            src, read_reference, classes, reference.check_codes(codes, classes)
        )
    return census_report(classes, pixels, km2, notes)


def points_report(
    cog: Path,
    classes: list[dict[str, Any]] | None,
    points_geojson: object,
    prop: str,
    crs: int | str,
    codes: Mapping[str, int | str | None] | None,
) -> dict[str, Any]:
    """The map assessed at reference points (a GeoJSON FeatureCollection with a class property)."""
    xy, values = reference.points_from_geojson(points_geojson, prop)
    with rasterio.open(cog) as src:
        classes = classes or design.map_classes(src)
        counts, notes = reference.point_counts(
            src, xy, crs, values, classes, reference.check_codes(codes, classes)
        )
        strata = design.map_strata(src, classes)
    return sample_report(classes, strata.pixels, strata.km2, np.asarray(counts), kind="points", notes=notes)
