"""Does the selected router ship? The gate on the held-out split, and the objective it compares.

- ``objective``: per query, ``score - lam * cost`` of the routed model (the decision rule's utility);
  under a $ budget or a share target, where every router runs at its own operating point meeting it,
  the score alone.
- ``gate``: on the held-out queries, the selected router must beat the best single model (chosen on
  train) by more than ``min_gain`` at the lower bound of a one-sided paired-bootstrap interval.
  Otherwise the job ships the best-single router and says why.

Pure: arrays in, small dataclasses out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.data.labels import RoutingData

_BOOT_CELLS = 2_000_000  # resampled queries per bootstrap draw in ``paired_gain``
BASELINE = "best_single"  # the label of the always-the-same-model router, the gate's reference


def objective(data: RoutingData, rows: np.ndarray, choices: np.ndarray, lam: float, model_costs: np.ndarray,
              quality_only: bool) -> np.ndarray:
    """Per-query objective of ``choices`` on ``rows`` of ``data`` (NaN where the choice was not scored)."""
    score = data.scores[rows, choices]
    if quality_only:
        return score
    cost = data.costs[rows, choices]
    return score - lam * np.where(np.isfinite(cost), cost, model_costs[choices])


@dataclass(frozen=True)
class Gate:
    passed: bool
    gain: float  # held-out mean objective of the challenger minus the best single model's
    lower: float  # one-sided lower confidence bound of that gain (paired bootstrap over queries)
    confidence: float
    min_gain: float
    reason: str


def paired_gain(challenger: np.ndarray, baseline: np.ndarray, confidence: float, n_boot: int = 2000,
                seed: int = 0) -> tuple[float, float]:
    """Mean of ``challenger - baseline`` and its one-sided lower bound at ``confidence`` (bootstrap over queries)."""
    diff = np.asarray(challenger, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if diff.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    rows = max(1, _BOOT_CELLS // diff.size)  # resamples per draw: a million held-out queries stay at 16 MB
    for lo in range(0, n_boot, rows):
        means[lo:lo + rows] = diff[rng.integers(0, diff.size, size=(min(rows, n_boot - lo), diff.size))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 1.0 - confidence))


def gate(label: str, challenger: np.ndarray, baseline: np.ndarray, baseline_model: str, min_gain: float,
         confidence: float) -> Gate:
    """Does ``label`` beat always calling ``baseline_model`` on the held-out queries, with confidence?"""
    gain, lower = paired_gain(challenger, baseline, confidence)
    passed = bool(lower > min_gain)
    bound = f"{confidence:.0%} lower bound {lower:+.4f}"
    if passed:
        reason = f"{label} beats always calling {baseline_model}: gain {gain:+.4f}, {bound} > {min_gain:g}"
    else:
        reason = (f"routing does not pay on these logs: always call {baseline_model} ({label} gains {gain:+.4f}, "
                  f"{bound} <= {min_gain:g})")
    return Gate(passed=passed, gain=gain, lower=lower, confidence=confidence, min_gain=min_gain, reason=reason)
