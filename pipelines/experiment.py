"""Fit the candidate routers on the training split, select one there, evaluate all on the held-out split.

Pure: arrays and configs in, fitted routers, the selection, the baseline gate and an
``EvaluationReport`` out; no MLflow, no files. The held-out split is used once: for the report
(every candidate, losers included) and the gate of the selected router (``pipelines.selection``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from pipelines.config import JobConfig, RouterSpec
from pipelines.selection import BASELINE, Gate, Selection, gate, objective, select
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
    lam: float = 0.0  # its operating lambda: the configured one, or calibrated to the budget on train


@dataclass
class Experiment:
    split: Split
    train: RoutingData
    test: RoutingData
    fitted: dict[str, FittedRouter]
    report: EvaluationReport
    lam: float  # the configured lambda (under a budget each router has its own: ``FittedRouter.lam``)
    quality_only: bool  # under a budget routers are compared by quality at their own lambda
    selection: Selection | None  # None when the config names the router to export
    selected: str  # chosen by selection on train, or named by the config
    gate: Gate | None  # None when the selected router is the baseline itself
    exported: str  # what the job exports: the selected router if it passed the gate, else the baseline

    def held_out(self, label: str) -> np.ndarray:
        """Per-query objective of a router's choices on the complete held-out queries."""
        f = self.fitted[label]
        rows = np.flatnonzero(self.test.mask.all(axis=1))
        return objective(self.test, rows, f.result.choices, f.lam, f.router.model_costs_, self.quality_only)

    @property
    def decision(self) -> str:
        """One line: what ships and why."""
        if self.gate is not None:
            return self.gate.reason
        model = self.test.models[self.fitted[BASELINE].result.choices[0]] if self.exported == BASELINE else None
        if self.selection is not None and self.selected == BASELINE:
            return (f"routing does not pay on these logs: always call {model} (best_single had the best "
                    f"out-of-fold objective on the training split)")
        return f"{self.exported} exported as configured" + (f": always call {model}" if model else "")


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
    """Fit every candidate on train, choose one on train (or take the configured one), evaluate all on
    test, and gate the choice against always calling the best single model.

    With ``job.budget`` each router's lambda is calibrated on a slice of the training queries (see
    ``calibrate_on_train``), and routers are compared by quality at their own lambda.
    """
    with threadpool_limits(limits=job.blas_threads, user_api="blas"):  # restored on exit
        return _run(data, X, job, split or split_data(data, job), client)


def _run(data: RoutingData, X: np.ndarray, job: JobConfig, split: Split, client) -> Experiment:
    train, test = data.subset(split.train), data.subset(split.test)
    X_train, X_test = X[split.train], X[split.test]
    quality_only = job.budget is not None
    specs = {spec.label: spec for spec in job.candidates()}
    lams = {label: (calibrate_on_train(spec, X_train, train, job.budget, job.split.seed) if quality_only
                    else job.lam) for label, spec in specs.items()}
    selection = None
    selected = job.export_router
    if selected == "auto":
        makers = {label: functools.partial(make_router, spec.family, **spec.params) for label, spec in specs.items()}
        selection = select(makers, X_train, train, lams, quality_only, job.selection.folds, job.split.seed)
        selected = selection.label
    out = {}
    for label, spec in specs.items():
        router, fit_s = fit_router(spec, X_train, train, client)
        t = time.perf_counter()
        pred = router.predict_scores(X_test)
        pred_s = time.perf_counter() - t
        result = evaluate_router(pred, test, train, router.model_costs_, lams[label])
        out[label] = FittedRouter(spec, router, result, fit_s, pred_s, pred, lams[label])
    report = build_report({k: f.result for k, f in out.items()}, train, test, out[selected].router.model_costs_,
                          split=split.how)
    exp = Experiment(split=split, train=train, test=test, fitted=out, report=report, lam=job.lam,
                     quality_only=quality_only, selection=selection, selected=selected, gate=None,
                     exported=selected)
    if selected != BASELINE:
        baseline_model = test.models[out[BASELINE].result.choices[0]]
        exp.gate = gate(selected, exp.held_out(selected), exp.held_out(BASELINE), baseline_model,
                        job.registry.min_gain, job.registry.confidence)
        exp.exported = selected if exp.gate.passed else BASELINE
    return exp
