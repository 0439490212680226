"""Evidence for the gate from the whole log: the training queries, cross-fitted, beside the held-out split.

The held-out split alone is often too small to tell a real gain from noise, while the training queries
play no part in the decision. They can testify too, if no decision about a query saw its label: the
training queries (the selection sample) are cut into ``registry.cross_fit_folds`` outer folds, and for
each one the procedure the job runs on the training split is run again on the other folds and applied to
it:

- every candidate's own hyper-parameter search and fit on the other folds;
- its out-of-fold predictions there, from fits with the hyper-parameters that search chose;
- the best single model chosen there; every candidate calibrated on its out-of-fold predictions
  (``calibrate_router``: its savings point, its budget's lambda, its share's bias) and ranked by selection
  (``selection.grade`` and ``selection.rank``);
- the winner, at its operating point, routes the outer fold with its fit on the other folds, beside the
  best single router's choice.

So every training query gets the outcome of a routing procedure that never used its label, and the gate
decides on all of them plus the held-out queries. Each procedure learns from part of the training split
only, so it tends to understate what the shipped router does, never to overstate it. Reusing the selection
folds' predictions instead (their fits and searches saw every fold) made a planted null pass the gate far
too often; ``benchmarks/bench_gate.py`` measures the error rates. Queries of the router's own traffic (one
scored model each) are left out: grading them needs a reward model per fold. So are logs with a model that
answered part of the queries: the routers learn its estimated scores, which would grade them by their targets.
"""

from __future__ import annotations

import time

import numpy as np

from pipelines.config import JobConfig, RouterSpec
from pipelines.gate import BASELINE, Goal, Outcomes
from pipelines.selection import fit_router, frozen_params, grade, out_of_fold, rank, serving_tags
from router.data.labels import RoutingData
from router.evaluation.metrics import best_single_index
from router.routers.base import predict_with_tasks
from router.routers.search import folds as kfolds

MIN_FIT_QUERIES = 100  # below this many queries in a cross-fitted procedure's smallest fit, the held-out split alone


def cross_fitted(specs: dict[str, RouterSpec], X: np.ndarray, train: RoutingData, job: JobConfig, goal: Goal,
                 calibrate_router, seconds: dict[str, float] | None = None) -> Outcomes | None:
    """Per training query (those scored by every model), the outcome of the job's routing procedure run
    without its outer fold, beside the best single router's (at its operating point there: under savings
    the best single model); None when it is switched off, the training queries hold bandit feedback or
    estimated scores, or
    they are too few for the procedure's smallest fit to get ``MIN_FIT_QUERIES``.

    ``specs``: label -> the candidate as configured (its search runs again on every outer training part);
    ``calibrate_router``: the job's calibration step (``pipelines.experiment.calibrate_router``), passed in
    so that both run the same one; ``seconds``: label -> seconds, each candidate's fitting time added to it.
    """
    n_folds, inner = job.registry.cross_fit_folds, job.selection.folds
    if n_folds < 2 or train.is_bandit.any() or (train.estimated is not None and train.estimated.any()):
        return None  # estimated scores (a model with part of the answers) would grade routers by their own targets
    if train.n_queries * (n_folds - 1) / n_folds * (inner - 1) / inner < MIN_FIT_QUERIES:
        return None
    complete = train.mask.all(axis=1)
    parts = []
    for tr, va in kfolds(train.n_queries, n_folds, job.split.seed + 1):
        rows = np.flatnonzero(complete[va])
        if len(rows):
            parts.append(_procedure(specs, X, train, tr, va[rows], job, goal, calibrate_router,
                                    seconds if seconds is not None else {}))
    return sum(parts[1:], parts[0]) if parts else None


def _procedure(specs, X, train, tr, va, job, goal, calibrate_router, seconds: dict[str, float]) -> Outcomes:
    """The job's choice of router and operating point made on rows ``tr`` alone, applied to rows ``va``."""
    part, held = train.subset(tr), train.subset(va)
    reference = best_single_index(part)
    routers, points, graded = {}, {}, {}
    rows = np.flatnonzero(part.mask.any(axis=1))
    for label, spec in specs.items():
        start = time.perf_counter()
        routers[label], _ = fit_router(spec, X[tr], part)
        frozen = spec.model_copy(update={"params": frozen_params(spec, routers[label])})
        pred, costs = out_of_fold(frozen, X[tr], part, job), routers[label].model_costs_
        seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
        points[label] = calibrate_router(pred, costs, part, job, goal, reference, baseline=label == BASELINE).default
        graded[label] = grade(part, rows, pred[rows], costs, points[label], goal.quality_only, reference)
    winner, _, _ = rank(graded, goal)
    tags = serving_tags(held, job)
    every = np.arange(held.n_queries)
    won, base = (grade(held, every, predict_with_tasks(routers[label], X[va], tags), routers[label].model_costs_,
                       points[label], goal.quality_only, None) for label in (winner, BASELINE))
    return Outcomes(score=won["score"], cost=won["cost"], ref_score=base["score"], ref_cost=base["cost"])
