"""The stratified estimators of Olofsson et al. (2014), "Good practices for estimating area and
assessing accuracy of land change", Remote Sensing of Environment 148: 42-57, section 4.

The map's classes are the strata. From the sample counts n_ij (map class i, reference class j)
and each map class's share of the mapped area W_i:

    p_ij = W_i n_ij / n_i.                                  area proportion of cell ij   (eq. 4)
    O    = sum_j p_jj                                       overall accuracy             (eq. 1)
    U_i  = p_ii / p_i.        V(U_i) = U_i (1 - U_i) / (n_i. - 1)                        (eqs. 2, 6)
    P_j  = p_jj / p_.j        V(P_j): eq. 7
    V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)                                        (eq. 5)
    p_.k = sum_i p_ik         V(p_.k) = sum_i (W_i p_ik - p_ik^2) / (n_i. - 1)           (eqs. 9, 10)

A 95 % confidence interval is the estimate +- 1.96 standard errors, as in the paper. Given the
strata's sizes N_i (pixels), every stratum's variance terms take Cochran's finite population
correction (1 - n_i. / N_i), which the paper leaves out because its strata are huge: a class whose
every pixel was sampled is then known exactly, even from one point. The same
formulas are the post-stratified estimators when the points are a simple random (or systematic)
sample rather than one stratified by the map. Nothing here reads files: counts in, estimates out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict

import numpy as np

from web_tool.errors import LandCoverError

#: the paper's multiplier of the standard error for an (approximately) 95 % confidence interval
Z95 = 1.96


class IncompleteSample(LandCoverError, ValueError):
    """A mapped class has no answered point yet: its row of the error matrix is unknown."""

    def __init__(self, missing: list[int]):
        self.missing = missing
        super().__init__(f"map classes {missing} have no answered point yet")


@dataclass(frozen=True)
class Estimate:
    """An estimate and its standard error (None where the sample cannot give one)."""

    value: float | None
    se: float | None = None

    @property
    def ci95(self) -> float | None:
        """Half-width of the 95 % confidence interval."""
        return None if self.se is None else Z95 * self.se

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "se": self.se, "ci95": self.ci95}


@dataclass(frozen=True)
class Assessment:
    """What the estimators give for K classes (rows: map class, columns: reference class)."""

    counts: np.ndarray  # K x K sample counts n_ij
    weights: np.ndarray  # K mapped area shares W_i
    proportions: np.ndarray  # K x K estimated area proportions p_ij
    overall: Estimate
    users: list[Estimate]
    producers: list[Estimate]
    areas: list[Estimate]  # share of the total area per reference class, p_.k
    intervals: bool  # False when a stratum has fewer than 2 points (no variances)


def stratified(counts: np.ndarray, weights: np.ndarray, sizes: np.ndarray | None = None) -> Assessment:
    """The stratified estimates from sample `counts` (K x K, map rows) and map area `weights` (K).

    Map classes without area are no stratum (their counts are ignored). IncompleteSample when a
    mapped class has no point; standard errors are None while one has fewer than two points, unless
    `sizes` (K, the pixels of each stratum, points drawn without replacement) shows that every
    pixel of that stratum was sampled.
    """
    counts = np.asarray(counts, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float64)
    if counts.ndim != 2 or counts.shape != (weights.size, weights.size) or (counts < 0).any():
        raise ValueError(f"counts must be a {weights.size} x {weights.size} matrix of counts")
    if (weights < 0).any() or not weights.sum() > 0:
        raise ValueError("weights must be non-negative with a positive sum")
    weights = weights / weights.sum()
    strata = weights > 0
    counts = np.where(strata[:, None], counts, 0)
    n = counts.sum(axis=1)
    missing = np.flatnonzero(strata & (n == 0)).tolist()
    if missing:
        raise IncompleteSample(missing)
    q = counts / np.maximum(n, 1)[:, None]  # n_ij / n_i.
    p = weights[:, None] * q
    users_value = np.diag(q)
    column = p.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        producers_value = np.where(column > 0, np.diag(p) / column, np.nan)
    if sizes is None:
        unsampled = np.ones(weights.size)
    else:
        sizes = np.asarray(sizes, dtype=np.float64)
        if sizes.shape != weights.shape or (sizes[strata] < n[strata]).any():
            raise ValueError("sizes must give each stratum's pixels, at least as many as its points")
        unsampled = 1 - n / np.maximum(sizes, 1)  # Cochran's finite population correction
    intervals = bool(((n >= 2) | (unsampled == 0))[strata].all())
    variances = (
        _variances(q, n, weights, users_value, producers_value, column, unsampled) if intervals else None
    )

    def estimate(value: float, variance: float | None) -> Estimate:
        if not np.isfinite(value):
            return Estimate(None, None)
        return Estimate(float(value), None if variance is None else float(np.sqrt(max(variance, 0.0))))

    def at(key: Literal["users", "producers", "areas"], k: int) -> float | None:
        if variances is None:
            return None
        variance: float = variances[key][k]
        return variance

    k_range = range(weights.size)
    return Assessment(
        counts=counts,
        weights=weights,
        proportions=p,
        overall=estimate(np.trace(p), None if variances is None else variances["overall"]),
        users=[estimate(users_value[i] if strata[i] else np.nan, at("users", i)) for i in k_range],
        producers=[estimate(producers_value[j], at("producers", j)) for j in k_range],
        areas=[estimate(column[k], at("areas", k)) for k in k_range],
        intervals=intervals,
    )


class Variances(TypedDict):
    """The variances of the estimates: of overall accuracy, and per class (K) of the others."""

    overall: float
    users: np.ndarray
    producers: np.ndarray
    areas: np.ndarray


def _variances(
    q: np.ndarray,
    n: np.ndarray,
    weights: np.ndarray,
    users: np.ndarray,
    producers: np.ndarray,
    column: np.ndarray,
    unsampled: np.ndarray,
) -> Variances:
    """Equations 5, 6, 7 and 10, each stratum's terms times its finite population correction
    `unsampled` (every stratum has at least two points, or was sampled whole)."""
    # (1 - n_i / N_i) / (n_i - 1); strata without weight, or sampled whole, contribute 0 whatever n_i is
    factor = unsampled / np.maximum(n - 1, 1)
    cell = weights[:, None] ** 2 * q * (1 - q) * factor[:, None]  # W_i^2 q_ij (1 - q_ij) / (n_i - 1)
    users_var = users * (1 - users) * factor
    own = np.diag(cell)  # the j = i terms
    others = cell.sum(axis=0) - own  # sum over i != j
    with np.errstate(invalid="ignore", divide="ignore"):
        producers_var = (
            weights**2 * (1 - producers) ** 2 * users * (1 - users) * factor + producers**2 * others
        ) / column**2
    return {
        "overall": float((weights**2 * users_var).sum()),
        "users": users_var,
        "producers": producers_var,
        "areas": cell.sum(axis=0),
    }
