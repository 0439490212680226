"""Which router to ship: chosen on the training split by cross-validation, then gated on the held-out split.

- ``select``: every candidate is refitted on ``folds`` folds of the *training* queries, its own
  hyper-parameter search included (nested: nothing about a fold's validation queries reaches its fit),
  and scored on the fold's validation queries by the objective it will be judged by. The highest mean
  wins; ties go to the earlier candidate (``best_single`` comes first: the simplest honest answer).
  Above ``selection.max_queries`` the job passes the operating-point folds' predictions instead, made
  with the hyper-parameters each family chose once on the sample: not nested, slightly optimistic for
  tuned families, and the held-out gate below still guards what ships.
- ``gate``: on the held-out queries, the selected router must beat the best single model (chosen on
  train) by more than ``min_gain`` at the lower bound of a one-sided paired-bootstrap interval.
  Otherwise the job ships the best-single router and says why.

The objective per query: ``score - lam * cost`` of the routed model (the decision rule's utility);
under a $ budget or a share target, where every router runs at its own operating point meeting it,
the score alone.
Pure: arrays in, small dataclasses out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.data.labels import RoutingData
from router.policy.rule import choose
from router.evaluation.offpolicy import with_dr_values
from router.routers.base import predict_with_tasks
from router.routers.search import folds as kfolds

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
class Selection:
    label: str  # the selected candidate
    oof: dict[str, float]  # mean out-of-fold objective per candidate, in candidate order
    folds: int
    n_queries: int  # training queries the folds ran over
    nested: bool = True  # each fold ran the candidates' own searches; False: hyper-parameters fixed beforehand

    def ranking(self) -> list[str]:
        return sorted(self.oof, key=lambda k: -self.oof[k])


def fit_on(router, X: np.ndarray, data: RoutingData, **fit_params):
    """``router`` fitted on ``data``; families with ``needs_tasks`` also get the logs' task column.

    Bandit rows (the router's own traffic: one scored model, with its propensity) go to families with
    ``supports_weights`` with their propensities; the other families fit on the fully logged rows only
    (their fit would learn the deployed router's bias).
    """
    bandit = data.is_bandit
    if bandit.any():
        if getattr(router, "supports_weights", False):
            fit_params["propensities"] = data.propensities
        else:
            if bandit.all():
                raise ValueError(f"{type(router).__name__} cannot learn from partial feedback alone: every "
                                 "query has one scored model (the deployed router's own traffic)")
            X, data = X[~bandit], data.subset(~bandit)
    if getattr(router, "needs_tasks", False):
        fit_params["tasks"] = data.tasks
    return router.fit(X, data.scores, data.costs, data.mask, **fit_params)



def select(candidates: dict, X: np.ndarray, train: RoutingData, points: dict, quality_only: bool,
           n_folds: int, seed: int, task_at_serving: bool = False,
           predictions: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Selection:
    """The candidate with the best out-of-fold objective on the training queries.

    ``candidates``: label -> a callable returning an unfitted router (fitted afresh in every fold);
    ``points``: label -> its operating point (``.lam``, ``.bias``), used in every fold.
    ``predictions``: label -> (out-of-fold scores on every query of ``train``, from these same folds;
    the model costs): graded as they are, nothing is fitted (the selection is then not nested).
    """
    values = {label: np.full(train.n_queries, np.nan) for label in candidates}
    for tr, va in kfolds(train.n_queries, n_folds, seed):
        fold_train = train.subset(tr)
        # Bandit queries of the fold are graded by their DR pseudo-outcomes (reward model of the fold's rest).
        fold_va, _ = with_dr_values(train.subset(va), X[va], fold_train, X[tr])
        mask_va = fold_va.mask
        usable = mask_va.any(axis=1)
        for label, make in candidates.items():
            if predictions is not None:
                scores, costs = predictions[label]
                pred = scores[va[usable]]
            else:
                router = fit_on(make(), X[tr], fold_train)
                tags = train.tasks[va[usable]] if task_at_serving and train.tasks is not None else None
                pred, costs = predict_with_tasks(router, X[va[usable]], tags), router.model_costs_
            # Only models scored on the query can be graded, so only they compete (as in routing_quality).
            point = points[label]
            picks = choose(pred, costs, point.lam, allowed=mask_va[usable], bias=point.bias)
            values[label][va[usable]] = objective(fold_va, np.flatnonzero(usable), picks, point.lam, costs,
                                                  quality_only)
    oof = {label: float(np.nanmean(v)) for label, v in values.items()}
    best = max(oof, key=lambda k: (oof[k], -list(oof).index(k)))
    return Selection(label=best, oof=oof, folds=n_folds, n_queries=train.n_queries, nested=predictions is None)


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
