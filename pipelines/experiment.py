"""Fit the configured routers on the training split and evaluate them on the held-out split.

Pure: arrays and configs in, fitted routers and an ``EvaluationReport`` out; no MLflow, no files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipelines.config import JobConfig, RouterSpec
from router.data.labels import RoutingData
from router.evaluation.decision import calibrate
from router.evaluation.metrics import RouterResult, evaluate_router
from router.evaluation.report import EvaluationReport, build_report
from router.evaluation.splits import Split, resolve_split
from router.routers import BaseRouter, make_router

# Families whose fit can run on a Dask cluster (they take ``fit(..., client=)``).
CLUSTER_FAMILIES = ("lgbm",)


@dataclass
class FittedRouter:
    spec: RouterSpec
    router: BaseRouter
    result: RouterResult
    fit_seconds: float
    predict_seconds: float
    test_scores: np.ndarray = field(repr=False)


@dataclass
class Experiment:
    split: Split
    train: RoutingData
    test: RoutingData
    fitted: dict[str, FittedRouter]
    report: EvaluationReport
    lam: float  # the operating lambda (configured, or calibrated to the budget)


def split_data(data: RoutingData, job: JobConfig) -> Split:
    s = job.split
    return resolve_split(data, test_size=s.test_size, seed=s.seed, by=s.by, test_tasks=s.test_tasks)


def fit_router(spec: RouterSpec, X: np.ndarray, data: RoutingData, client=None) -> tuple[BaseRouter, float]:
    """A fitted router of ``spec`` and its fit seconds; families in ``CLUSTER_FAMILIES`` use ``client``."""
    router = make_router(spec.family, **spec.params)
    fit_params = {"client": client} if client is not None and spec.family in CLUSTER_FAMILIES else {}
    t = time.perf_counter()
    router.fit(X, data.scores, data.costs, data.mask, **fit_params)
    return router, time.perf_counter() - t


def calibrate_on_train(spec: RouterSpec, X: np.ndarray, train: RoutingData, budget: float, seed: int,
                       share: float = 0.2) -> float:
    """Lambda meeting ``budget`` ($/query), found on a held-out slice of the *training* queries.

    A copy of the router is fitted on the rest of train; the test split never informs the
    operating point it is then evaluated at.
    """
    order = np.random.default_rng(seed).permutation(train.n_queries)
    n_cal = max(1, int(round(share * train.n_queries)))
    cal, fit_rows = np.sort(order[:n_cal]), np.sort(order[n_cal:])
    router, _ = fit_router(spec, X[fit_rows], train.subset(fit_rows))
    return calibrate(router.predict_scores(X[cal]), router.model_costs_, budget=budget).lam


def run_experiment(data: RoutingData, X: np.ndarray, job: JobConfig, split: Split | None = None,
                   client=None) -> Experiment:
    """Fit every configured router on train, evaluate all on test at one operating lambda.

    With ``job.budget`` the lambda is calibrated on a slice of the training queries (see
    ``calibrate_on_train``) and used for every router, so they are compared at one operating rule.
    """
    split = split or split_data(data, job)
    train, test = data.subset(split.train), data.subset(split.test)
    X_train, X_test = X[split.train], X[split.test]
    fitted: dict[str, tuple[RouterSpec, BaseRouter, float, float, np.ndarray]] = {}
    for spec in job.routers:
        router, fit_s = fit_router(spec, X_train, train, client)
        t = time.perf_counter()
        pred = router.predict_scores(X_test)
        fitted[spec.label] = (spec, router, fit_s, time.perf_counter() - t, pred)
    lam = job.lam
    exported = job.exported_spec().label
    if job.budget is not None:
        lam = calibrate_on_train(job.exported_spec(), X_train, train, job.budget, job.split.seed)
    results = {}
    out = {}
    for label, (spec, router, fit_s, pred_s, pred) in fitted.items():
        results[label] = evaluate_router(pred, test, train, router.model_costs_, lam)
        out[label] = FittedRouter(spec, router, results[label], fit_s, pred_s, pred)
    report = build_report(results, train, test, fitted[exported][1].model_costs_, split=split.how)
    return Experiment(split=split, train=train, test=test, fitted=out, report=report, lam=lam)
