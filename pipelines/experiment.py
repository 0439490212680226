"""Fit the candidate routers on the training split, select one there, evaluate all on the held-out split.

``run_experiment`` runs named stages, in order:

1. ``split_data``: train and test queries (a user's split, else a hash of the query id);
2. ``sparse_values``: a model with part of the answers (a new model's probe answers) held back below
   ``min_answers``, else its missing scores estimated (``router.evaluation.sparse``);
3. ``usable_candidates``: the configured families that can fit these logs (a task column, bandit feedback);
4. ``held_out_values``: bandit rows of the test split graded by doubly robust pseudo-outcomes;
5. ``fit_candidates``: each family's search (on the selection sample above its cap) and final fit;
6. ``calibrate_candidates``: out-of-fold predictions on the sample -> each router's ``Calibration``;
7. ``select_router``: the best out-of-fold objective on the training split (``pipelines.selection``);
8. ``evaluate_candidates``: every candidate on the held-out split (losers included) and the report;
9. ``gate_router``: does the selected router beat always calling the best single model (``pipelines.gate``)?

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
from pipelines.evidence import cross_fitted
from pipelines.gate import BASELINE, Goal, gate, goal_for, savings_gate
from pipelines.result import Experiment, FittedRouter, SparseModels
from pipelines.selection import (Selection, fit_router, frozen_params, out_of_fold, select, selection_sample,
                                 serving_tags)
from router.data.labels import RoutingData
from router.evaluation.metrics import best_single_index, complete_rows, evaluate_router
from router.evaluation.offpolicy import estimates_by_router, with_dr_values
from router.evaluation.report import build_report
from router.evaluation.sparse import (dr_estimates, fill_estimates, fit_imputer, held_back, versus_best_other,
                                      partial_models)
from router.evaluation.splits import Split, given_split, has_given_split, split_queries
from router.policy.operating_point import Calibration, calibrate
from router.routers import ROUTERS, BaseRouter, make_router
from router.routers.base import predict_with_tasks


MIN_SIDE = 10  # queries on each side of the split: fewer make a report (and a gate) of noise


def split_data(data: RoutingData, job: JobConfig) -> Split:
    """The job's split (a ``split`` column in the logs wins); refused when a side has under ``MIN_SIDE`` queries."""
    s = job.split
    if has_given_split(data):  # a user's fixed split wins over every split setting
        split, fix = given_split(data), "give more queries the split value"
    else:
        split = split_queries(data, test_size=s.test_size, seed=s.seed, by=s.by, test_tasks=s.test_tasks)
        fix = f"change split.test_size ({s.test_size:g})" + (" or split.test_tasks" if s.by == "task" else "")
    for side, rows in (("held-out", split.test), ("training", split.train)):
        if len(rows) < MIN_SIDE:
            raise ValueError(f"the split leaves {len(rows)} {side} quer{'y' if len(rows) == 1 else 'ies'} of "
                             f"{data.n_queries:,} ({split.how}); a report needs at least {MIN_SIDE}: {fix}")
    unlearned = [m for m, seen in zip(data.models, data.mask[split.train].any(axis=0)) if not seen]
    if unlearned:
        raise ValueError(f"no training query has an answer of {', '.join(unlearned)} (all of it is held out: "
                         f"{split.how}); a router cannot learn a model from nothing: {fix}, or log more of its answers")
    return split


def calibrate_router(pred: np.ndarray, costs: np.ndarray, train: RoutingData, job: JobConfig, goal: Goal,
                     reference: int, baseline: bool = False) -> Calibration:
    """A router's ``Calibration`` from its out-of-fold predictions ``pred`` on ``train`` (``out_of_fold``),
    its default point the job's setting: a budget's lambda, a share's bias, the savings margin's cheapest
    non-inferior point (the ``baseline`` router stays at lambda 0: it is the best single model), else
    ``job.lam``. The curve's quality is measured against the ``reference`` model.

    Those folds refit the router with the hyper-parameters its own search chose (another choice would
    change the scale of its scores: ridge at alpha 10 vs 30 moved a 30% share target to 40%).
    """
    share = (job.share.model, job.share.value) if job.share is not None else None
    margin = goal.margin if goal.kind == "savings" and not baseline else None
    return calibrate(pred, costs, train.models, lam=job.lam, budget=job.budget, share=share, margin=margin,
                     scores=train.scores, reference=reference, confidence=goal.confidence)


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
    seconds: dict[str, float] = field(default_factory=dict)  # per label, every fit of every stage


def _run(data: RoutingData, X: np.ndarray, job: JobConfig, split: Split, client) -> Experiment:
    train, test = data.subset(split.train), data.subset(split.test)
    X_train, X_test = X[split.train], X[split.test]
    train, test, sparse = sparse_values(train, test, X_train, X_test, job.min_answers, job.registry.confidence)
    exclude = [train.models.index(m) for m in sparse.unproven] if sparse is not None else []
    if sparse is not None and job.share is not None and job.share.model in sparse.held_back:
        raise ValueError(f"share.model {job.share.model!r} is held back: {job.share.model} "
                         f"{sparse.held_back[job.share.model]}")
    specs = usable_candidates(train, job, exclude)
    goal, reference = goal_for(job, train), best_single_index(train, exclude=exclude)
    logged_test = test
    test, q_hat = held_out_values(test, X_test, train, X_train)
    sample = selection_sample(train.n_queries, job.selection.max_queries, job.split.seed)
    X_sel, train_sel = X_train[sample], train.subset(sample)
    fits = fit_candidates(specs, X_train, train, X_sel, train_sel, client)
    calibrate_candidates(fits, X_sel, train_sel, job, goal, reference)
    selection = select_router(specs, fits, X_sel, train_sel, job, goal, reference)
    selected = selection.label if selection is not None else job.export_router
    fitted = evaluate_candidates(specs, fits, X_test, test, train, job, exclude)
    offpolicy = None
    if q_hat is not None:  # the held-out logs hold the router's own traffic: IPS, SNIPS, DR side by side
        offpolicy = estimates_by_router(logged_test, q_hat, _choices_by_row(fitted, test), seed=job.split.seed)
    report = build_report({k: f.result for k, f in fitted.items()}, train, test,
                          fitted[selected].router.model_costs_, split=split.how, budget=job.budget, offpolicy=offpolicy,
                          exclude=exclude)
    evidence = None
    if selected != BASELINE:
        evidence = cross_fitted(specs, X_sel, train_sel, job, goal, calibrate_router, fits.seconds)
    for label, f in fitted.items():
        f.seconds = fits.seconds[label]
    exp = Experiment(split=split, train=train, test=test, fitted=fitted, report=report, goal=goal,
                     reference=reference, evidence=evidence, selection=selection, selected=selected, gate=None,
                     exported=selected, sparse=sparse)
    return gate_router(exp)


def sparse_values(train: RoutingData, test: RoutingData, X_train: np.ndarray, X_test: np.ndarray,
                  min_answers: int, confidence: float = 0.9) -> tuple[RoutingData, RoutingData, SparseModels | None]:
    """Train and test with their partial models (``router.evaluation.sparse``) settled: those ``held_back`` are
    dropped (they take no traffic); the sparse ones' missing training scores are estimated for the routers to
    learn from, their held-out scores doubly robust values for evaluation and the gate. A sparse model is the
    best single model only if, on the queries it answered, it beats the best other model with ``confidence``
    (``versus_best_other``); one scored only in the router's own traffic never is. None for the third when no model
    is partial."""
    if not len(partial_models(train)):
        return train, test, None
    held = held_back(train, test, min_answers)
    keep = [m for m in train.models if m not in held]
    if len(keep) < 2:
        raise ValueError("too few answers to route: " + "; ".join(f"{m} {why}" for m, why in held.items())
                         + ": log more of their answers (router probe picks which queries) or lower min_answers")
    if held:
        train, test = train.select_models(keep), test.select_models(keep)
    imputer = fit_imputer(train, X_train)
    gains = {train.models[j]: versus_best_other(train, j, confidence) for j in partial_models(train)}
    train = fill_estimates(train, imputer.predict(train, X_train), imputer.columns)
    test = dr_estimates(test, imputer.predict(test, X_test), imputer.columns)
    return train, test, SparseModels(imputer=imputer, models=tuple(train.models[j] for j in imputer.columns),
                                     held_back=held, min_answers=min_answers, gains=gains)


def usable_candidates(train: RoutingData, job: JobConfig, exclude: list[int] | None = None) -> dict[str, RouterSpec]:
    """The configured routers that can fit these logs, by label; a ValueError for a config they cannot meet.

    Families that learn from the task column (``needs_tasks``) sit out when the logs have none, or one task;
    on the router's own traffic alone (one scored model per query), only families that learn from
    inverse-propensity weights can fit at all. ``exclude``: models the best single router may not pick.
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
    full = ~train.is_bandit  # the rows families without inverse-propensity weights fit on
    # on the router's own traffic alone, or with a model scored only there, only weighted families can fit
    weighted_only = not full.any() or not train.mask[full].any(axis=0).all()
    specs = {spec.label: spec for spec in job.candidates()
             if (tagged or not getattr(ROUTERS[spec.family], "needs_tasks", False))
             and (not weighted_only or ROUTERS[spec.family].supports_weights)}
    if exclude and BASELINE in specs:
        specs[BASELINE] = specs[BASELINE].model_copy(update={"params": {**specs[BASELINE].params,
                                                                        "exclude": list(exclude)}})
    if job.export_router != "auto" and job.export_router not in specs:
        why = ("learns from partial feedback (the logs are the router's own traffic, or some model is scored only "
               "there); families that do: " + ", ".join(sorted(f for f, c in ROUTERS.items() if c.supports_weights))
               ) if weighted_only else \
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
    final, seconds = dict(specs), dict.fromkeys(specs, 0.0)
    if capped:
        for label, spec in specs.items():
            searched, seconds[label] = fit_router(spec, X_sel, train_sel)
            final[label] = spec.model_copy(update={"params": frozen_params(spec, searched)})
    routers = {label: fit_router(final[label], X_train, train, client) for label in specs}
    chosen = final if capped else {label: spec.model_copy(update={"params": {**spec.params, **getattr(
        routers[label][0], "best_params_", {})}}) for label, spec in specs.items()}
    return _Fits(routers=routers, chosen=chosen, capped=capped,
                 seconds={label: seconds[label] + routers[label][1] for label in specs})


def calibrate_candidates(fits: _Fits, X_sel: np.ndarray, train_sel: RoutingData, job: JobConfig, goal: Goal,
                         reference: int) -> None:
    """Each candidate's out-of-fold predictions on the selection sample and the ``Calibration`` made of them
    (so the test split never sets an operating point); stored on ``fits``."""
    for label, spec in fits.chosen.items():
        start = time.perf_counter()
        fits.oof[label] = out_of_fold(spec, X_sel, train_sel, job)
        fits.seconds[label] += time.perf_counter() - start
        fits.calibrations[label] = calibrate_router(fits.oof[label], fits.routers[label][0].model_costs_,
                                                    train_sel, job, goal, reference, baseline=label == BASELINE)


def select_router(specs: dict[str, RouterSpec], fits: _Fits, X_sel: np.ndarray, train_sel: RoutingData,
                  job: JobConfig, goal: Goal, reference: int) -> Selection | None:
    """The selection on the training split (None when the config names the router to export).

    Above the cap, selection grades the operating-point folds' predictions (hyper-parameters fixed on the
    sample, so not nested: its cost is one fold fit per candidate and fold instead of a search)."""
    if job.export_router != "auto":
        return None
    makers = {label: functools.partial(make_router, spec.family, **spec.params) for label, spec in specs.items()}
    points = {label: cal.default for label, cal in fits.calibrations.items()}
    given = {label: (fits.oof[label], fits.routers[label][0].model_costs_) for label in specs} if fits.capped else None
    selection = select(makers, X_sel, train_sel, points, goal.quality_only, job.selection.folds, job.split.seed,
                       job.task_at_serving, predictions=given, goal=goal, reference=reference)
    for label, seconds in selection.seconds.items():
        fits.seconds[label] += seconds
    return selection


def evaluate_candidates(specs: dict[str, RouterSpec], fits: _Fits, X_test: np.ndarray, test: RoutingData,
                        train: RoutingData, job: JobConfig, exclude: list[int] | None = None
                        ) -> dict[str, FittedRouter]:
    """Every candidate's held-out predictions, evaluated at its own operating point."""
    out = {}
    for label, (router, fit_s) in fits.routers.items():
        t = time.perf_counter()
        pred = predict_with_tasks(router, X_test, serving_tags(test, job))
        pred_s = time.perf_counter() - t
        # A share bias shifts one model's scores: evaluating the shifted scores is the decision rule with it.
        point = fits.calibrations[label].default
        shifted = pred if point.bias is None else pred + np.asarray(point.bias)
        result = evaluate_router(shifted, test, train, router.model_costs_, point.lam, budget=job.budget,
                                 exclude=exclude)
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


def gate_router(exp: Experiment) -> Experiment:
    """``exp`` with its gate decided on the held-out queries and the training queries cross-fitted
    (``exp.evidence``): the selected router ships only if it beats the best single router with confidence
    (under savings: saves enough at quality within the margin, ``pipelines.gate.savings_gate``); else the
    baseline ships."""
    if exp.selected == BASELINE:
        return exp
    goal, f = exp.goal, exp.fitted[exp.selected]
    held = exp.outcomes(f.result.choices, f.router.model_costs_)
    every = held if exp.evidence is None else held + exp.evidence
    baseline_model = exp.test.models[exp.fitted[BASELINE].result.choices[0]]
    if goal.kind == "savings":
        exp.gate = savings_gate(exp.selected, every, baseline_model, goal)
    else:
        exp.gate = gate(exp.selected, *every.objective(goal), baseline_model, goal.min_gain, goal.confidence)
    exp.exported = exp.selected if exp.gate.passed else BASELINE
    return exp
