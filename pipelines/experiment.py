"""Fit the candidate routers on the training split, select one there, evaluate all on the held-out split.

``run_experiment`` runs named stages, in order:

1. ``split_data``: train and test queries (a user's split, else a hash of the query id);
2. ``usable_candidates``: the configured families that can fit these logs (a task column, bandit feedback);
3. ``held_out_values``: bandit rows of the test split graded by doubly robust pseudo-outcomes;
4. ``fit_candidates``: each family's search (on the selection sample above its cap) and final fit;
5. ``calibrate_candidates``: out-of-fold predictions on the sample -> each router's ``Calibration``;
6. ``select_router``: the best out-of-fold objective on the training split (``pipelines.selection``);
7. ``evaluate_candidates``: every candidate on the held-out split (losers included) and the report;
8. ``gate_router``: does the selected router beat always calling the best single model (``pipelines.gate``)?

Pure: arrays and configs in, fitted routers, the selection, the gate and an ``EvaluationReport`` out;
no MLflow, no files. The held-out split is used once: for the report and the gate.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from pipelines.config import JobConfig, RouterSpec
from pipelines.gate import BASELINE, Gate, gate, objective
from pipelines.selection import (Selection, fit_router, frozen_params, out_of_fold, select, selection_sample,
                                 serving_tags)
from router.data.labels import RoutingData
from router.evaluation.metrics import RouterResult, complete_rows, evaluate_router
from router.evaluation.offpolicy import estimates_by_router, with_dr_values
from router.evaluation.report import EvaluationReport, build_report
from router.evaluation.splits import Split, given_split, has_given_split, split_queries
from router.policy.operating_point import Calibration, OperatingPoint, calibrate
from router.policy.propensity import IPS_CLIP
from router.routers import ROUTERS, BaseRouter, make_router
from router.routers.base import predict_with_tasks


@dataclass
class FittedRouter:
    spec: RouterSpec
    router: BaseRouter
    result: RouterResult
    fit_seconds: float
    predict_seconds: float
    test_scores: np.ndarray = field(repr=False)
    calibration: Calibration  # measured on out-of-fold training predictions; exported with the router

    @property
    def point(self) -> OperatingPoint:
        """Where the router runs: the job's setting resolved on its calibration."""
        return self.calibration.default

    @property
    def lam(self) -> float:
        return self.point.lam


@dataclass
class Experiment:
    split: Split
    train: RoutingData
    test: RoutingData
    fitted: dict[str, FittedRouter]
    report: EvaluationReport
    lam: float  # the configured lambda (under a budget each router has its own: ``FittedRouter.lam``)
    quality_only: bool  # under a budget or a share, routers are compared by quality at their own operating point
    selection: Selection | None  # None when the config names the router to export
    selected: str  # chosen by selection on train, or named by the config
    gate: Gate | None  # None when the selected router is the baseline itself
    exported: str  # what the job exports: the selected router if it passed the gate, else the baseline

    @property
    def eval_rows(self) -> np.ndarray:
        """The held-out queries every model answered: the ones evaluation scores (``metrics``)."""
        return np.flatnonzero(complete_rows(self.test))

    def held_out(self, label: str) -> np.ndarray:
        """Per-query objective of a router's choices on the evaluated held-out queries."""
        f = self.fitted[label]
        return objective(self.test, self.eval_rows, f.result.choices, f.point.lam, f.router.model_costs_,
                         self.quality_only)

    def feedback_lines(self) -> list[str]:
        """How partial feedback (the router's own traffic) entered the fit and the held-out values, if it did."""
        lines = []
        n_bandit = int(self.train.is_bandit.sum())
        if n_bandit:
            lines.append(f"trained on partial feedback: {n_bandit:,} of {self.train.n_queries:,} training queries "
                         "have one scored model (the deployed router's choice, with its propensity); best_single, "
                         f"ridge and knn learn from them (inverse-propensity weighted means, weights clipped at "
                         f"{IPS_CLIP:g}), the other families fit on the fully logged queries only")
        estimated = self.test.estimated
        if estimated is not None and estimated.any():
            lines.append(f"held-out values: doubly robust estimates on {int(estimated.sum()):,} of "
                         f"{self.test.n_queries:,} held-out queries (bandit feedback); selection and the gate "
                         "used them; the oracle is not estimable there")
        return lines

    def outcome_lines(self, job: JobConfig) -> list[str]:
        """What was selected (out-of-fold ranking), what ships and why, and the realised share if targeted."""
        lines = self.feedback_lines()
        if self.selection is not None:
            lines.append(f"selection on the training split (out-of-fold, {self.selection.folds} folds"
                         + (f", on {self.selection.n_queries:,} of {self.train.n_queries:,} queries"
                            if self.selection.n_queries < self.train.n_queries else "")
                         + ("" if self.selection.nested else ", hyper-parameters searched once on them") + "): "
                         + ", ".join(f"{k} {self.selection.oof[k]:.4f}" for k in self.selection.ranking()))
        return lines + [self.decision] + ([self.share_line(job)] if job.share is not None else [])

    def share_line(self, job: JobConfig) -> str | None:
        """The share target against the share the exported router realised on the held-out queries."""
        if job.share is None:
            return None
        realised = self.fitted[self.exported].result.routing_share[self.test.models.index(job.share.model)]
        return (f"share of calls to {job.share.model}: target {job.share.value:.1%} (calibrated on the training "
                f"split), realised {realised:.1%} on the held-out queries")

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
    if has_given_split(data):  # a user's fixed split wins over every split setting
        return given_split(data)
    return split_queries(data, test_size=s.test_size, seed=s.seed, by=s.by, test_tasks=s.test_tasks)


def calibrate_router(pred: np.ndarray, costs: np.ndarray, train: RoutingData, job: JobConfig) -> Calibration:
    """A router's ``Calibration`` from its out-of-fold predictions ``pred`` on ``train`` (``out_of_fold``),
    its default point the job's setting: a budget's lambda, a share's bias, else ``job.lam``.

    Those folds refit the router with the hyper-parameters its own search chose (another choice would
    change the scale of its scores: ridge at alpha 10 vs 30 moved a 30% share target to 40%).
    """
    share = (job.share.model, job.share.value) if job.share is not None else None
    return calibrate(pred, costs, train.models, lam=job.lam, budget=job.budget, share=share)


def run_experiment(data: RoutingData, X: np.ndarray, job: JobConfig, split: Split | None = None,
                   client=None) -> Experiment:
    """Fit every candidate on train, choose one on train (or take the configured one), evaluate all on
    test, and gate the choice against always calling the best single model.

    Each router's operating point comes from a slice of the training queries (``calibrate_router``):
    with ``job.budget`` its own lambda, with ``job.share`` its own bias; routers are then compared by
    quality at their own operating point.
    """
    with threadpool_limits(limits=job.blas_threads, user_api="blas"):  # restored on exit
        return _run(data, X, job, split or split_data(data, job), client)


@dataclass
class _Fits:
    """What the fitting stages hand on: per label, the fitted router and its seconds, the spec its folds
    refit (the chosen hyper-parameters), its out-of-fold predictions on the sample and its calibration."""

    routers: dict[str, tuple[BaseRouter, float]]
    chosen: dict[str, RouterSpec]
    capped: bool
    oof: dict[str, np.ndarray] = field(default_factory=dict)
    calibrations: dict[str, Calibration] = field(default_factory=dict)


def _run(data: RoutingData, X: np.ndarray, job: JobConfig, split: Split, client) -> Experiment:
    train, test = data.subset(split.train), data.subset(split.test)
    X_train, X_test = X[split.train], X[split.test]
    specs = usable_candidates(train, job)
    logged_test = test
    test, q_hat = held_out_values(test, X_test, train, X_train)
    sample = selection_sample(train.n_queries, job.selection.max_queries, job.split.seed)
    X_sel, train_sel = X_train[sample], train.subset(sample)
    fits = fit_candidates(specs, X_train, train, X_sel, train_sel, client)
    calibrate_candidates(fits, X_sel, train_sel, job)
    quality_only = job.budget is not None or job.share is not None
    selection = select_router(specs, fits, X_sel, train_sel, job, quality_only)
    selected = selection.label if selection is not None else job.export_router
    fitted = evaluate_candidates(specs, fits, X_test, test, train, job)
    offpolicy = None
    if q_hat is not None:  # the held-out logs hold the router's own traffic: IPS, SNIPS, DR side by side
        offpolicy = estimates_by_router(logged_test, q_hat, _choices_by_row(fitted, test), seed=job.split.seed)
    report = build_report({k: f.result for k, f in fitted.items()}, train, test,
                          fitted[selected].router.model_costs_, split=split.how, budget=job.budget, offpolicy=offpolicy)
    exp = Experiment(split=split, train=train, test=test, fitted=fitted, report=report, lam=job.lam,
                     quality_only=quality_only, selection=selection, selected=selected, gate=None, exported=selected)
    return gate_router(exp, job)


def usable_candidates(train: RoutingData, job: JobConfig) -> dict[str, RouterSpec]:
    """The configured routers that can fit these logs, by label; a ValueError for a config they cannot meet.

    Families that learn from the task column (``needs_tasks``) sit out when the logs have none, or one task;
    on the router's own traffic alone (one scored model per query), only families that learn from
    inverse-propensity weights can fit at all.
    """
    if job.share is not None and job.share.model not in train.models:
        raise ValueError(f"share.model {job.share.model!r} is not a model of these logs: {list(train.models)}")
    unscored = [m for m, seen in zip(train.models, train.mask.any(axis=0)) if not seen]
    if unscored:  # else the fit fails later naming only column numbers
        one = len(unscored) == 1
        raise ValueError(f"{', '.join(map(repr, unscored))} {'has' if one else 'have'} no score on any of the "
                         f"{train.n_queries:,} training queries (only on held-out ones): log scores for "
                         f"{'it' if one else 'them'} on more queries, or drop {'it' if one else 'them'} from the logs")
    tagged = train.tasks is not None and len(np.unique(train.tasks)) > 1
    bandit_only = bool(train.is_bandit.all())
    specs = {spec.label: spec for spec in job.candidates()
             if (tagged or not getattr(ROUTERS[spec.family], "needs_tasks", False))
             and (not bandit_only or ROUTERS[spec.family].supports_weights)}
    if job.export_router != "auto" and job.export_router not in specs:
        why = ("learns from partial feedback (the logs are the router's own traffic only); families that do: "
               + ", ".join(sorted(f for f, c in ROUTERS.items() if c.supports_weights))) if bandit_only else \
            "needs a task column with at least two tasks in the logs' training split"
        raise ValueError(f"export_router {job.export_router!r} is not a candidate here: the family {why}")
    return specs


def held_out_values(test: RoutingData, X_test: np.ndarray, train: RoutingData, X_train: np.ndarray
                    ) -> tuple[RoutingData, np.ndarray | None]:
    """The test split with its bandit rows as doubly robust pseudo-outcomes (``router.evaluation.offpolicy``),
    and the reward model's predictions (None without bandit rows); a ValueError when the held-out logs are
    one-model-per-query traffic without the propensities that would make them gradable."""
    graded, q_hat = with_dr_values(test, X_test, train, X_train)
    single = graded.mask.sum(axis=1) == 1
    if not complete_rows(graded).any() and single.mean() > 0.5 and not graded.is_bandit.any():
        raise ValueError(
            f"{int(single.sum()):,} of {graded.n_queries:,} held-out queries have one scored model (a deployed "
            "router's own traffic) but no 'propensity' column: evaluating routers on such logs (off-policy) "
            "needs, per row, the probability with which the logging router chose that model (router serve "
            "--decision-log writes it; with --exploration the logs also cover the other models)")
    return graded, q_hat


def fit_candidates(specs: dict[str, RouterSpec], X_train: np.ndarray, train: RoutingData, X_sel: np.ndarray,
                   train_sel: RoutingData, client) -> _Fits:
    """Every candidate's final fit on all training queries, its own search included.

    Above ``selection.max_queries`` (``train_sel`` is then a sample) each family searches once, on the
    sample, and the final fit, the operating-point folds and selection take the hyper-parameters it chose.
    """
    capped = train_sel.n_queries < train.n_queries
    final = specs
    if capped:
        final = {label: spec.model_copy(update={"params": frozen_params(spec, fit_router(spec, X_sel, train_sel)[0])})
                 for label, spec in specs.items()}
    routers = {label: fit_router(final[label], X_train, train, client) for label in specs}
    chosen = final if capped else {label: spec.model_copy(update={"params": {**spec.params, **getattr(
        routers[label][0], "best_params_", {})}}) for label, spec in specs.items()}
    return _Fits(routers=routers, chosen=chosen, capped=capped)


def calibrate_candidates(fits: _Fits, X_sel: np.ndarray, train_sel: RoutingData, job: JobConfig) -> None:
    """Each candidate's out-of-fold predictions on the selection sample and the ``Calibration`` made of them
    (so the test split never sets an operating point); stored on ``fits``."""
    for label, spec in fits.chosen.items():
        fits.oof[label] = out_of_fold(spec, X_sel, train_sel, job)
        fits.calibrations[label] = calibrate_router(fits.oof[label], fits.routers[label][0].model_costs_,
                                                    train_sel, job)


def select_router(specs: dict[str, RouterSpec], fits: _Fits, X_sel: np.ndarray, train_sel: RoutingData,
                  job: JobConfig, quality_only: bool) -> Selection | None:
    """The selection on the training split (None when the config names the router to export).

    Above the cap, selection grades the operating-point folds' predictions (hyper-parameters fixed on the
    sample, so not nested: its cost is one fold fit per candidate and fold instead of a search)."""
    if job.export_router != "auto":
        return None
    makers = {label: functools.partial(make_router, spec.family, **spec.params) for label, spec in specs.items()}
    points = {label: cal.default for label, cal in fits.calibrations.items()}
    given = {label: (fits.oof[label], fits.routers[label][0].model_costs_) for label in specs} if fits.capped else None
    return select(makers, X_sel, train_sel, points, quality_only, job.selection.folds, job.split.seed,
                  job.task_at_serving, predictions=given)


def evaluate_candidates(specs: dict[str, RouterSpec], fits: _Fits, X_test: np.ndarray, test: RoutingData,
                        train: RoutingData, job: JobConfig) -> dict[str, FittedRouter]:
    """Every candidate's held-out predictions, evaluated at its own operating point."""
    out = {}
    for label, (router, fit_s) in fits.routers.items():
        t = time.perf_counter()
        pred = predict_with_tasks(router, X_test, serving_tags(test, job))
        pred_s = time.perf_counter() - t
        # A share bias shifts one model's scores: evaluating the shifted scores is the decision rule with it.
        point = fits.calibrations[label].default
        shifted = pred if point.bias is None else pred + np.asarray(point.bias)
        result = evaluate_router(shifted, test, train, router.model_costs_, point.lam, budget=job.budget)
        out[label] = FittedRouter(specs[label], router, result, fit_s, pred_s, pred, fits.calibrations[label])
    return out


def _choices_by_row(fitted: dict[str, FittedRouter], test: RoutingData) -> dict[str, np.ndarray]:
    """Each router's choice per held-out row (0 on rows evaluation did not score)."""
    evaluated = np.flatnonzero(complete_rows(test))  # the rows evaluate_router scored
    picks = {}
    for label, f in fitted.items():
        picks[label] = np.zeros(test.n_queries, dtype=np.int64)
        picks[label][evaluated] = f.result.choices
    return picks


def gate_router(exp: Experiment, job: JobConfig) -> Experiment:
    """``exp`` with its gate decided: the selected router ships only if it beats always calling the best
    single model on the held-out queries, with confidence; else the baseline ships."""
    if exp.selected == BASELINE:
        return exp
    baseline_model = exp.test.models[exp.fitted[BASELINE].result.choices[0]]
    exp.gate = gate(exp.selected, exp.held_out(exp.selected), exp.held_out(BASELINE), baseline_model,
                    job.registry.min_gain, job.registry.confidence)
    exp.exported = exp.selected if exp.gate.passed else BASELINE
    return exp
