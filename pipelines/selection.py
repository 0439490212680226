"""Choosing a router on the training split, and the fitting that choice rests on.

- ``fit_router`` / ``fit_on``: one candidate fitted on some queries (bandit rows by propensity where the
  family learns from them; the task column for families that need it; a Dask client for some);
- ``out_of_fold``: a candidate's predictions for every training query, each from a fit on the other
  folds: the operating points are calibrated on them;
- ``select``: every candidate is refitted on ``folds`` folds of the *training* queries, its own
  hyper-parameter search included (nested: nothing about a fold's validation queries reaches its fit),
  and scored on the fold's validation queries by the objective it will be judged by (``gate.objective``).
  The highest mean wins; ties go to the earlier candidate (``best_single`` comes first: the simplest
  honest answer). Above ``selection.max_queries`` the job passes the operating-point folds' predictions
  instead, made with the hyper-parameters each family chose once on the sample (``frozen_params``): not
  nested, slightly optimistic for tuned families, and the held-out gate still guards what ships.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipelines.config import JobConfig, RouterSpec
from pipelines.gate import Goal, objective, realised_cost, savings_eligible
from router.data.labels import RoutingData
from router.evaluation.offpolicy import with_dr_values
from router.policy.rule import choose
from router.routers import BaseRouter, make_router
from router.routers.base import predict_with_tasks
from router.routers.unscored import fit_scored
from router.routers.search import folds as kfolds

# Families whose fit can run on a Dask cluster (they take ``fit(..., client=)``).
CLUSTER_FAMILIES = ("lgbm", "ensemble")


@dataclass(frozen=True)
class Selection:
    label: str  # the selected candidate
    oof: dict[str, float]  # mean out-of-fold objective per candidate, in candidate order
    folds: int
    n_queries: int  # training queries the folds ran over
    nested: bool = True  # each fold ran the candidates' own searches; False: hyper-parameters fixed beforehand
    excluded: tuple[str, ...] = ()  # savings: candidates whose out-of-fold quality was not within the margin
    seconds: dict[str, float] = field(default_factory=dict)  # per candidate, its fits and predictions in the folds
    kind: str = "quality"  # what ``oof`` holds: the mean objective, or (savings) the saving

    def ranking(self) -> list[str]:
        """Best first; candidates excluded by the savings margin last."""
        return sorted(self.oof, key=lambda k: (k in self.excluded, -self.oof[k]))


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
    return fit_scored(router, X, data.scores, data.costs, data.mask, **fit_params)


def fit_router(spec: RouterSpec, X: np.ndarray, data: RoutingData, client=None) -> tuple[BaseRouter, float]:
    """A fitted router of ``spec`` and its fit seconds; families in ``CLUSTER_FAMILIES`` use ``client``."""
    router = make_router(spec.family, **spec.params)
    fit_params = {"client": client} if client is not None and spec.family in CLUSTER_FAMILIES else {}
    t = time.perf_counter()
    fitted = fit_on(router, X, data, **fit_params)
    return fitted, time.perf_counter() - t


def frozen_params(spec: RouterSpec, fitted: BaseRouter) -> dict:
    """``spec``'s parameters with the hyper-parameters ``fitted``'s own search chose; an ensemble's members
    frozen too (members it gave no weight are dropped with their weight)."""
    params = {**spec.params, **getattr(fitted, "best_params_", {})}
    members = getattr(fitted, "routers_", None)
    if members is not None:
        kept = [(name, m, w) for (name, m), w in zip(members, fitted.weights_) if m is not None and w > 0]
        params["routers"] = [(name, type(m)(**{**m.get_params(deep=False), **getattr(m, "best_params_", {})}))
                             for name, m, _ in kept]
        params["weights"] = tuple(float(w) for *_, w in kept)
    return params


def selection_sample(n: int, max_queries: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_queries`` of ``n`` training queries (all of them when fewer), seeded."""
    if max_queries is None or n <= max_queries:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_queries, replace=False))


def serving_tags(data: RoutingData, job: JobConfig, rows=None) -> np.ndarray | None:
    """The queries' task tags if a service will send them (``task_at_serving``), else None."""
    if not job.task_at_serving or data.tasks is None:
        return None
    return data.tasks if rows is None else data.tasks[rows]


def out_of_fold(spec: RouterSpec, X: np.ndarray, train: RoutingData, job: JobConfig) -> np.ndarray:
    """Predicted scores of ``spec`` for every training query, each from a fit on the other
    ``selection.folds`` folds: the operating points are found on them (and, above
    ``selection.max_queries``, selection too), so the test split never informs either."""
    pred = np.empty(train.scores.shape)
    for tr, va in kfolds(train.n_queries, job.selection.folds, job.split.seed):
        pred[va] = predict_with_tasks(fit_router(spec, X[tr], train.subset(tr))[0], X[va], serving_tags(train, job, va))
    return pred


def select(candidates: dict, X: np.ndarray, train: RoutingData, points: dict, quality_only: bool,
           n_folds: int, seed: int, task_at_serving: bool = False,
           predictions: dict[str, tuple[np.ndarray, np.ndarray]] | None = None, *, goal: Goal | None = None,
           reference: int | None = None) -> Selection:
    """The candidate with the best out-of-fold objective on the training queries.

    ``candidates``: label -> a callable returning an unfitted router (fitted afresh in every fold);
    ``points``: label -> its operating point (``.lam``, ``.bias``), used in every fold.
    ``predictions``: label -> (out-of-fold scores on every query of ``train``, from these same folds;
    the model costs): graded as they are, nothing is fitted (the selection is then not nested).
    Under a savings ``goal`` the candidates whose quality is within the margin of the ``reference``
    model's (``gate.savings_eligible``) are ranked by their saving, the others excluded.
    """
    n = train.n_queries
    graded = {label: {k: np.full(n, np.nan) for k in GRADES} for label in candidates}
    seconds = dict.fromkeys(candidates, 0.0)
    for tr, va in kfolds(n, n_folds, seed):
        fold_train = train.subset(tr)
        # Bandit queries of the fold are graded by their DR pseudo-outcomes (reward model of the fold's rest).
        fold_va, _ = with_dr_values(train.subset(va), X[va], fold_train, X[tr])
        usable = fold_va.mask.any(axis=1)
        at = va[usable]
        for label, make in candidates.items():
            start = time.perf_counter()
            if predictions is not None:
                scores, costs = predictions[label]
                pred = scores[at]
            else:
                router = fit_on(make(), X[tr], fold_train)
                tags = train.tasks[at] if task_at_serving and train.tasks is not None else None
                pred, costs = predict_with_tasks(router, X[at], tags), router.model_costs_
            seconds[label] += time.perf_counter() - start
            grades = grade(fold_va, np.flatnonzero(usable), pred, costs, points[label], quality_only, reference)
            for key, values in grades.items():
                graded[label][key][at] = values
    label, oof, excluded = rank(graded, goal)
    return Selection(label=label, oof=oof, folds=n_folds, n_queries=n, nested=predictions is None,
                     excluded=excluded, kind="savings" if goal is not None and goal.kind == "savings" else "quality",
                     seconds=seconds)


GRADES = ("value", "score", "cost", "ref_score", "ref_cost")


def grade(data: RoutingData, rows: np.ndarray, pred: np.ndarray, costs: np.ndarray, point, quality_only: bool,
          reference: int | None) -> dict[str, np.ndarray]:
    """The choices of ``pred`` (one row per query of ``rows``) at ``point`` on ``rows`` of ``data``, only the
    models scored on a query competing: per query the objective (``value``), the choice's ``score`` and
    ``cost``, and the ``reference`` model's (``ref_score``, ``ref_cost``; NaN without a reference)."""
    picks = choose(pred, costs, point.lam, allowed=data.mask[rows], bias=point.bias)
    out = {"value": objective(data, rows, picks, point.lam, costs, quality_only),
           "score": data.scores[rows, picks], "cost": realised_cost(data, rows, picks, costs),
           "ref_score": np.full(len(rows), np.nan), "ref_cost": np.full(len(rows), np.nan)}
    if reference is not None:
        ref = np.full(len(rows), reference)
        out["ref_score"], out["ref_cost"] = data.scores[rows, reference], realised_cost(data, rows, ref, costs)
    return out


def rank(graded: dict[str, dict[str, np.ndarray]], goal: Goal | None) -> tuple[str, dict[str, float], tuple[str, ...]]:
    """(the best label, the value per label, the labels excluded) from per-query ``grade``s: the highest
    mean objective (ties: the earlier label); under a savings ``goal`` the highest saving among the
    labels whose quality is within the margin of the reference's, the others excluded (ranked last; when
    all are, the first label, by convention ``best_single``)."""
    order = list(graded)
    if goal is None or goal.kind != "savings":
        oof = {label: float(np.nanmean(g["value"])) for label, g in graded.items()}
        return max(oof, key=lambda k: (oof[k], -order.index(k))), oof, ()
    oof, excluded = {}, []
    for label, g in graded.items():
        rows = np.isfinite(g["score"]) & np.isfinite(g["ref_score"])
        ref_cost = float(np.mean(g["ref_cost"][rows])) if rows.any() else 0.0
        oof[label] = 1.0 - float(np.mean(g["cost"][rows])) / ref_cost if ref_cost > 0 else 0.0
        if not savings_eligible(g["score"][rows], g["ref_score"][rows], goal):
            excluded.append(label)
    best = min(oof, key=lambda k: (k in excluded, -oof[k], order.index(k)))
    if best in excluded:  # none is within the margin: the first candidate (by convention best_single)
        best = order[0]
    return best, oof, tuple(excluded)
