"""What the job optimises (the ``Goal``), and whether the selected router ships (the gate).

Objectives (``objective:`` in the job config):

- ``savings`` (the default when every model in the logs has a cost): the cheapest operating point whose
  quality is non-inferior to the best single model, quality >= best single x (1 - ``margin``). The gate:
  on queries the router never trained on, the one-sided lower bound of (router quality - best single
  quality) >= -margin x best single, and the lower bound of the saving (1 - router cost / best single
  cost) >= ``registry.min_savings``. Otherwise the job ships the best single model, saying which failed.
- ``quality`` (the default without costs): the objective per query is ``score - lam * cost`` of the routed
  model (the decision rule's utility); the gate: the lower bound of the gain over the best single model
  is above ``registry.min_gain``.
- ``budget`` / ``share``: every router runs at its own operating point meeting the target, and routers are
  compared by quality alone, gated as ``quality``.

Lower bounds are percentiles of a paired bootstrap over queries at ``registry.confidence``. Pure: arrays in,
small dataclasses out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from pipelines.config import JobConfig
from router.data.labels import RoutingData

_BOOT_CELLS = 2_000_000  # resampled queries per bootstrap draw
BASELINE = "best_single"  # the label of the always-the-same-model router, the gate's reference
OBJECTIVES = ("savings", "quality", "budget", "share")


@dataclass(frozen=True)
class Goal:
    """The job's objective, resolved for its logs, and the gate's thresholds."""

    kind: str  # one of OBJECTIVES
    lam: float = 0.0  # quality: the cost weight
    margin: float = 0.01  # savings: allowed quality loss, as a fraction of the best single model's
    min_savings: float = 0.05  # savings: required lower bound of the saving
    min_gain: float = 0.0  # quality: required lower bound of the gain
    confidence: float = 0.9

    @property
    def quality_only(self) -> bool:
        """Routers compared by quality alone: each runs at its own operating point (budget, share, savings)."""
        return self.kind != "quality"


def goal_for(job: JobConfig, train: RoutingData) -> Goal:
    """The ``Goal`` of ``job`` on these logs: ``auto`` is ``budget`` or ``share`` when one is set, else
    ``savings`` when every model has a cost (and some cost is above 0), else ``quality``."""
    kind = job.objective
    if kind == "auto":
        priced = bool(np.isfinite(train.costs).any(axis=0).all() and np.nanmax(train.costs, initial=0.0) > 0)
        kind = "budget" if job.budget is not None else "share" if job.share is not None else \
            "savings" if priced else "quality"
    if kind == "savings" and not np.isfinite(train.costs).any(axis=0).all():
        unpriced = [m for m, known in zip(train.models, np.isfinite(train.costs).any(axis=0)) if not known]
        raise ValueError(f"objective savings needs a cost for every model; no cost is logged for "
                         f"{', '.join(map(repr, unpriced))} (add cost or token counts with --prices, or use "
                         "objective: quality)")
    r = job.registry
    return Goal(kind=kind, lam=job.lam, margin=job.margin, min_savings=r.min_savings, min_gain=r.min_gain,
                confidence=r.confidence)


def realised_cost(data: RoutingData, rows: np.ndarray, choices: np.ndarray, model_costs: np.ndarray) -> np.ndarray:
    """Per query, the logged cost of the chosen answer, else its model's mean cost."""
    cost = data.costs[rows, choices]
    return np.where(np.isfinite(cost), cost, np.asarray(model_costs)[choices])


def objective(data: RoutingData, rows: np.ndarray, choices: np.ndarray, lam: float, model_costs: np.ndarray,
              quality_only: bool) -> np.ndarray:
    """Per-query objective of ``choices`` on ``rows`` of ``data`` (NaN where the choice was not scored)."""
    score = data.scores[rows, choices]
    if quality_only:
        return score
    return score - lam * realised_cost(data, rows, choices, model_costs)


@dataclass(frozen=True)
class Outcomes:
    """Per query, what a router's choices scored and cost, beside the best single router's (``ref_*``; under
    savings the best single model, under a budget the best one within it)."""

    score: np.ndarray
    cost: np.ndarray
    ref_score: np.ndarray
    ref_cost: np.ndarray

    def objective(self, goal: Goal) -> tuple[np.ndarray, np.ndarray]:
        """The per-query objective of the router and of the reference: ``score - lam * cost`` for quality,
        the score alone otherwise."""
        lam = 0.0 if goal.quality_only else goal.lam
        return self.score - lam * self.cost, self.ref_score - lam * self.ref_cost

    def __add__(self, other: Outcomes) -> Outcomes:
        return Outcomes(*(np.concatenate([getattr(self, f), getattr(other, f)])
                          for f in ("score", "cost", "ref_score", "ref_cost")))

    def value(self, goal: Goal) -> float:
        """One number a champion is compared by: the mean objective; under savings the saving when quality
        is within the margin (point estimates), else -1."""
        if goal.kind != "savings":
            return float(np.nanmean(self.objective(goal)[0]))
        q, q_ref = float(np.mean(self.score)), float(np.mean(self.ref_score))
        return _saving(float(np.mean(self.cost)), float(np.mean(self.ref_cost))) \
            if q >= q_ref - goal.margin * abs(q_ref) else -1.0


def _saving(cost: float, ref_cost: float) -> float:
    return 1.0 - cost / ref_cost if ref_cost > 0 else 0.0


@dataclass(frozen=True)
class Gate:
    passed: bool
    gain: float  # mean objective (savings: quality) of the challenger minus the best single model's
    lower: float  # one-sided lower confidence bound of that gain (paired bootstrap over queries)
    confidence: float
    min_gain: float  # the bound the gain's lower bound must clear (savings: -margin x best single quality)
    reason: str
    n: int = 0  # queries the decision rests on
    saving: float | None = None  # savings: 1 - router cost / best single cost
    saving_lower: float | None = None
    saved_per_query: tuple[float, float, float] | None = None  # savings: $ saved per query, two-sided CI
    quality: tuple[float, float] | None = None  # savings: mean quality of the router and of the best single model


def resample_means(columns: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, k): the means of the ``k`` rows of ``columns`` (k, n) over ``n_boot`` resamples of the n queries,
    drawn a block at a time (a million queries x 2,000 resamples would be 16 GB at once) from one stream."""
    columns = np.atleast_2d(np.asarray(columns, dtype=np.float64))
    n = columns.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, columns.shape[0]))
    rows = max(1, _BOOT_CELLS // n)
    for lo in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - lo), n))
        out[lo:lo + len(idx)] = columns[:, idx].mean(axis=2).T
    return out


def paired_gain(challenger: np.ndarray, baseline: np.ndarray, confidence: float, n_boot: int = 2000,
                seed: int = 0) -> tuple[float, float]:
    """Mean of ``challenger - baseline`` and its one-sided lower bound at ``confidence`` (bootstrap over queries)."""
    diff = np.asarray(challenger, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    if diff.size == 0:
        return float("nan"), float("nan")
    means = resample_means(diff[None, :], n_boot, seed)[:, 0]
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
    return Gate(passed=passed, gain=gain, lower=lower, confidence=confidence, min_gain=min_gain, reason=reason,
                n=int(np.size(challenger)))


def savings_gate(label: str, outcomes: Outcomes, baseline_model: str, goal: Goal) -> Gate:
    """Does ``label`` save at least ``min_savings`` of always calling ``baseline_model`` at quality within
    ``margin`` of it, at the lower bounds of a paired bootstrap over the queries of ``outcomes``?"""
    o = outcomes
    means = resample_means(np.stack([o.score - o.ref_score, o.cost, o.ref_cost, o.ref_cost - o.cost]))
    q, q_ref = float(np.mean(o.score)), float(np.mean(o.ref_score))
    cost, ref_cost = float(np.mean(o.cost)), float(np.mean(o.ref_cost))
    tail = 1.0 - goal.confidence
    lower = float(np.quantile(means[:, 0], tail))
    savings = 1.0 - means[:, 1] / np.where(means[:, 2] > 0, means[:, 2], np.nan)
    saving, saving_lower = _saving(cost, ref_cost), float(np.nanquantile(savings, tail)) if ref_cost > 0 else 0.0
    saved = (ref_cost - cost, *(float(x) for x in np.quantile(means[:, 3], [tail / 2, 1 - tail / 2])))
    floor = -goal.margin * abs(q_ref)
    quality_ok, saving_ok = lower >= floor, saving_lower >= goal.min_savings
    conf = f"{goal.confidence:.0%}"
    if quality_ok and saving_ok:
        reason = (f"ships {label}: quality {q:.3f} vs {q_ref:.3f} (always {baseline_model}) at "
                  f"{cost / ref_cost:.0%} of its cost: saves ${saved[0] * 1000:.4g} per 1,000 queries "
                  f"({conf} CI {saved[1] * 1000:.4g}-{saved[2] * 1000:.4g})")
    else:
        failed = " and ".join(name for name, ok in (("quality", quality_ok), ("saving", saving_ok)) if not ok)
        reason = (f"routing does not pay on these logs: always call {baseline_model} ({label} fails the {failed} "
                  f"condition{'s' if ' and ' in failed else ''}: quality {q:.3f} vs {q_ref:.3f}, {conf} lower "
                  f"bound of the difference {lower:+.4f} {'>=' if quality_ok else '<'} {floor:+.4f} "
                  f"(margin {goal.margin:g}); "
                  f"saving {saving:.1%}, {conf} lower bound {saving_lower:.1%} {'>=' if saving_ok else '<'} "
                  f"{goal.min_savings:.0%})")
    return Gate(passed=quality_ok and saving_ok, gain=q - q_ref, lower=lower, confidence=goal.confidence,
                min_gain=floor, reason=reason, n=len(o.score), saving=saving, saving_lower=saving_lower,
                saved_per_query=saved, quality=(q, q_ref))


def savings_eligible(score: np.ndarray, ref_score: np.ndarray, goal: Goal) -> bool:
    """Is the mean quality within the margin of the reference's at ``goal.confidence`` (normal bound on the
    paired difference)? The rule selection applies to candidates under ``savings``."""
    diff = np.asarray(score, dtype=np.float64) - np.asarray(ref_score, dtype=np.float64)
    if diff.size == 0:
        return False
    se = diff.std(ddof=1) / math.sqrt(diff.size) if diff.size > 1 else math.inf
    return diff.mean() - NormalDist().inv_cdf(goal.confidence) * se >= -goal.margin * abs(float(np.mean(ref_score)))
