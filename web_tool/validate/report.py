"""The accuracy report, as JSON and CSV: error matrices in counts and in area proportions, overall,
user's and producer's accuracy with 95 % confidence intervals, and each class's area in km²
estimated from the reference (± 95 % CI) beside the area the map's pixels add up to.

Two kinds: from a sample (stratified by the map, or reference points; `sample_report`) the
estimators of `estimators` apply; from a reference on the map's whole grid (`census_report`) every
pixel is compared, so the figures are exact for the pixels the reference covers (no sampling error).
"""

from __future__ import annotations

import csv
import io
from typing import Any, TypedDict

import numpy as np

from web_tool.errors import RequestError
from web_tool.validate.estimators import Z95, Assessment, Estimate, IncompleteSample, stratified


class _Estimates(TypedDict):
    """What the estimators give a sample's report (no proportions, and estimates of None, until
    every mapped class has an answered point)."""

    proportions: np.ndarray | None
    overall: Estimate
    users: list[Estimate]
    producers: list[Estimate]
    areas_km2: list[Estimate]


def sample_report(
    classes: list[dict[str, Any]],
    mapped_pixels: list[int],
    mapped_km2: list[float],
    counts: np.ndarray,
    kind: str = "sample",
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The report of sample `counts` (K x K: map class rows, reference class columns) of a map whose
    classes cover `mapped_km2`. Estimates are None until every mapped class has an answered point."""
    notes = list(notes or [])
    counts = np.asarray(counts, dtype=np.int64)
    total_km2 = float(sum(mapped_km2))
    if not total_km2 > 0:
        raise RequestError("the map has no classified pixel: there is nothing to assess")
    try:
        # the tool's own samples are drawn without replacement, so a class sampled whole is known;
        # reference points brought by the user may repeat a pixel
        sizes = np.asarray(mapped_pixels) if kind == "sample" else None
        assessment: Assessment | None = stratified(counts, np.asarray(mapped_km2), sizes)
    except IncompleteSample as exc:
        assessment = None
        names = ", ".join(classes[k]["name"] for k in exc.missing)
        notes.append(
            f"no answered point of map class {names} yet: every mapped class needs one for"
            " estimates (two for confidence intervals)"
        )
    estimates: _Estimates
    if assessment is None:
        none = [Estimate(None, None)] * len(classes)
        estimates = _Estimates(proportions=None, overall=none[0], users=none, producers=none, areas_km2=none)
    else:
        if not assessment.intervals:
            notes.append(
                "a mapped class has only one answered point: no confidence intervals until it has two"
            )
        a = assessment
        estimates = _Estimates(
            proportions=a.proportions,
            overall=a.overall,
            users=a.users,
            producers=a.producers,
            areas_km2=[_scaled(e, total_km2) for e in a.areas],
        )
    return _report(
        kind=kind,
        classes=classes,
        counts=counts,
        mapped_pixels=mapped_pixels,
        mapped_km2=mapped_km2,
        notes=notes,
        **estimates,
    )


def census_report(
    classes: list[dict[str, Any]], pixels: np.ndarray, km2: np.ndarray, notes: list[str] | None = None
) -> dict[str, Any]:
    """The report of a comparison on every pixel: `pixels` and `km2` are K x K matrices (map class
    rows, reference class columns) of the pixels where both have a class."""
    km2 = np.asarray(km2, dtype=np.float64)
    total = float(km2.sum())
    p = km2 / total if total > 0 else km2
    rows, columns, diagonal = p.sum(axis=1), p.sum(axis=0), np.diag(p)

    def exact(num: float, den: float) -> Estimate:
        return Estimate(float(num / den), 0.0) if den > 0 else Estimate(None, None)

    return _report(
        kind="census",
        classes=classes,
        counts=np.asarray(pixels, dtype=np.int64),
        proportions=p,
        overall=exact(diagonal.sum(), 1.0) if total > 0 else Estimate(None, None),
        users=[exact(diagonal[k], rows[k]) for k in range(len(classes))],
        producers=[exact(diagonal[k], columns[k]) for k in range(len(classes))],
        areas_km2=[Estimate(float(a), 0.0) for a in km2.sum(axis=0)],
        mapped_pixels=[int(v) for v in np.asarray(pixels).sum(axis=1)],
        mapped_km2=[float(v) for v in km2.sum(axis=1)],
        notes=list(notes or []),
    )


def _scaled(share: Estimate, total: float) -> Estimate:
    if share.value is None:
        return share
    return Estimate(share.value * total, None if share.se is None else share.se * total)


def _report(
    *,
    kind: str,
    classes: list[dict[str, Any]],
    counts: np.ndarray,
    proportions: np.ndarray | None,
    overall: Estimate,
    users: list[Estimate],
    producers: list[Estimate],
    areas_km2: list[Estimate],
    mapped_pixels: list[int],
    mapped_km2: list[float],
    notes: list[str],
) -> dict[str, Any]:
    per_class = []
    for k, c in enumerate(classes):
        area = areas_km2[k]
        per_class.append(
            {
                "index": k,
                "name": c["name"],
                "color": c.get("color"),
                "users": users[k].to_dict(),
                "producers": producers[k].to_dict(),
                "mapped_pixels": int(mapped_pixels[k]),
                "mapped_km2": float(mapped_km2[k]),
                "estimated_km2": area.to_dict(),
                "reference_points": int(counts[:, k].sum()),
                "map_points": int(counts[k].sum()),
            }
        )
    return {
        "kind": kind,
        "complete": overall.value is not None,
        "n": int(counts.sum()),
        "z": Z95,
        "total_km2": float(sum(mapped_km2)),
        "overall": overall.to_dict(),
        "classes": per_class,
        "error_matrix": {
            "rows": "map class",
            "columns": "reference class",
            "counts": counts.tolist(),
            "proportions": None if proportions is None else np.asarray(proportions).tolist(),
        },
        "notes": notes,
    }


def to_csv(report: dict[str, Any]) -> str:
    """The report as CSV: the two error matrices, then per-class accuracies and areas, then overall."""
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    names = [c["name"] for c in report["classes"]]
    unit = "pixels" if report["kind"] == "census" else "points"
    matrices = [
        (
            f"error matrix ({unit}): rows = map class, columns = reference class",
            report["error_matrix"]["counts"],
        )
    ]
    if report["error_matrix"]["proportions"] is not None:
        matrices.append(
            ("error matrix (estimated proportion of area)", report["error_matrix"]["proportions"])
        )
    for title, matrix in matrices:
        out.writerow([title])
        out.writerow(["map \\ reference", *names, "total"])
        for name, row in zip(names, matrix, strict=True):
            out.writerow([name, *(_num(v) for v in row), _num(sum(row))])
        out.writerow(
            ["total", *(_num(sum(col)) for col in zip(*matrix, strict=True)), _num(sum(map(sum, matrix)))]
        )
        out.writerow([])
    out.writerow(
        [
            "class",
            "users_accuracy",
            "users_se",
            "users_ci95",
            "producers_accuracy",
            "producers_se",
            "producers_ci95",
            "mapped_pixels",
            "mapped_km2",
            "estimated_km2",
            "estimated_km2_se",
            "estimated_km2_ci95",
        ]
    )
    for c in report["classes"]:
        u, p, a = c["users"], c["producers"], c["estimated_km2"]
        accuracies = (u["value"], u["se"], u["ci95"], p["value"], p["se"], p["ci95"])
        areas = (c["mapped_km2"], a["value"], a["se"], a["ci95"])
        out.writerow([c["name"], *map(_num, accuracies), c["mapped_pixels"], *map(_num, areas)])
    out.writerow([])
    o = report["overall"]
    out.writerow(["overall_accuracy", "se", "ci95", unit, "kind"])
    out.writerow([_num(o["value"]), _num(o["se"]), _num(o["ci95"]), report["n"], report["kind"]])
    return buf.getvalue()


def _num(v: float | np.number | None) -> str:
    if v is None:
        return ""
    if isinstance(v, int | np.integer):
        return str(int(v))
    return f"{float(v):.6g}"


def to_text(report: dict[str, Any], source: str = "the map") -> str:
    """The report as a few lines of text for a terminal."""
    what = {"sample": "stratified sample points", "points": "reference points", "census": "pixels (census)"}
    lines = [f"Accuracy of {source} from {report['n']} {what[report['kind']]}"]
    exact = report["kind"] == "census"
    _pm = _exact if exact else _plus_minus
    o = report["overall"]
    lines.append(f"  overall accuracy: {_pm(o)}" + ("" if exact else "  (± = 95 % confidence interval)"))
    lines.append(
        f"  {'class':<14} {'user’s':>15} {'producer’s':>15} {'mapped km²':>12} {'estimated km²':>22}"
    )
    for c in report["classes"]:
        area = c["estimated_km2"]
        lines.append(
            f"  {c['name']:<14.14} {_pm(c['users']):>15} {_pm(c['producers']):>15}"
            f" {c['mapped_km2']:>12.4f} {_pm(area, 4):>22}"
        )
    lines += [f"  note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def _plus_minus(e: dict[str, Any], digits: int = 3) -> str:
    if e["value"] is None:
        return "–"
    return f"{e['value']:.{digits}f}" + ("" if e["ci95"] is None else f" ± {e['ci95']:.{digits}f}")


def _exact(e: dict[str, Any], digits: int = 3) -> str:
    return "–" if e["value"] is None else f"{e['value']:.{digits}f}"
