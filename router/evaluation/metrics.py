"""Metrics of routed choices (pure functions, no I/O); the report that renders them is ``report``.

Conventions
- Evaluation uses only test queries on which every model was scored (an incomplete query has no
  oracle and would favour routers that pick the observed model); the dropped count is reported.
- Cost of a choice: the realised cost of that answer when the logs have it, else the model's mean
  training cost (what the router used to decide).
- Best single model: the best *training* mean (what a user would deploy without a router, ties to
  the cheaper model); the hindsight best on test is reported beside it, never used for gap closed.
- Oracle: per-query best score (ties to the cheaper model for its cost). Random: a uniform choice,
  whose expected quality/cost is the mean over models.
- gap_closed = (router - best_single) / (oracle - best_single); NaN when oracle == best single.

Curves
- The cost-quality curve sweeps lambda over ``router.policy.rule.lambda_grid`` and records (mean cost,
  mean quality) of the choices on the test queries.
- AIQ, APGR and CPT of those curves: ``router.evaluation.curves``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from router.data.labels import RoutingData, best_model_labels, model_means
from router.evaluation.curves import aiq, apgr, cpt, strong_share_curve
from router.policy.rule import choose, lambda_grid
from router.policy.propensity import partial_feedback, weighted_means

# --------------------------------------------------------------------------- basic metrics


def realised_costs(costs: np.ndarray, model_costs: np.ndarray) -> np.ndarray:
    """Per-answer cost: the logged cost where known, else the model's mean cost."""
    costs = np.asarray(costs, dtype=np.float64)
    return np.where(np.isfinite(costs), costs, np.asarray(model_costs, dtype=np.float64)[None, :])


def mean_model_costs(data: RoutingData) -> np.ndarray:
    """Mean known cost per model; 0 where a model's cost is unknown (as ``BaseRouter`` does)."""
    known = np.isfinite(data.costs)
    sums = np.where(known, data.costs, 0.0).sum(axis=0)
    return np.where(known.any(axis=0), sums / np.maximum(known.sum(axis=0), 1), 0.0)


def complete_rows(data: RoutingData) -> np.ndarray:
    """Boolean mask of queries scored by every model."""
    return data.mask.all(axis=1)


def quality_cost(choices: np.ndarray, scores: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """Mean score and mean cost of the chosen answers (``scores``/``costs`` complete, (n, m))."""
    rows = np.arange(len(choices))
    return float(scores[rows, choices].mean()), float(costs[rows, choices].mean())


def oracle_choices(scores: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Per-query best model, ties to the cheaper one (complete ``scores``)."""
    return best_model_labels(scores, np.ones(scores.shape, dtype=bool), costs)


def routing_share(choices: np.ndarray, n_models: int) -> np.ndarray:
    """Share of queries routed to each model, (m,) summing to 1."""
    choices = np.asarray(choices, dtype=np.int64)
    if len(choices) == 0:
        return np.zeros(n_models)
    return np.bincount(choices, minlength=n_models)[:n_models] / len(choices)


def gap_closed(router: float, best_single: float, oracle: float) -> float:
    """(router - best_single) / (oracle - best_single); NaN when the oracle gains nothing."""
    gap = oracle - best_single
    return float((router - best_single) / gap) if abs(gap) > 1e-12 else math.nan


def best_single_index(train: RoutingData, model_costs: np.ndarray | None = None, budget: float | None = None,
                      exclude: list[int] | None = None) -> int:
    """Model with the best training mean; ties to the cheaper model, then the lower index. Under a
    ``budget`` ($/query) only models whose mean cost fits it compete (none fits: the cheapest); the
    ``exclude`` models never do (``BestSingleRouter``'s)."""
    costs = mean_model_costs(train) if model_costs is None else np.asarray(model_costs, dtype=np.float64)
    means = model_means(train.scores, train.mask)
    feedback = None if train.propensities is None else partial_feedback(train.scores, train.mask, train.propensities)
    if feedback is not None:  # the router's own traffic: plain means carry the deployed router's bias
        means = weighted_means(train.scores, feedback.weights)
    if exclude:  # never the best single model, under any budget
        means = np.where(np.isin(np.arange(len(means)), exclude), -np.inf, means)
        costs = np.where(np.isin(np.arange(len(costs)), exclude), np.inf, costs)
    if budget is not None:
        fits = costs <= budget
        if not fits.any():
            return int(np.argmin(costs))
        means = np.where(fits, means, -np.inf)
    return _best_index(means, costs)


def _best_index(means: np.ndarray, costs: np.ndarray) -> int:
    means = np.nan_to_num(means, nan=-np.inf)
    tied = np.flatnonzero(means == means.max())
    return int(tied[np.argmin(costs[tied])])


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class Baselines:
    """What every router is compared with, on the evaluated (complete) test queries."""

    models: tuple[str, ...]
    n_train: int
    n_test: int
    n_eval: int
    n_dropped_incomplete: int
    has_cost: bool
    best_single: int  # index, chosen on train (within the budget, if any)
    reference: int  # index, chosen on train without a budget: the model matched-spend figures compare with
    hindsight_best: int  # index, best on test
    single_quality: np.ndarray  # (m,) test mean per model
    single_cost: np.ndarray  # (m,) test mean realised cost per model (NaN without costs)
    oracle_quality: float
    oracle_cost: float
    random_quality: float
    random_cost: float
    model_costs: np.ndarray  # (m,) mean training cost per model used for decisions


@dataclass(frozen=True)
class _EvalSet:
    rows: np.ndarray  # complete test rows
    scores: np.ndarray
    costs: np.ndarray  # realised; NaN everywhere when there is no cost information
    tasks: np.ndarray | None


def _eval_set(test: RoutingData, model_costs: np.ndarray, has_cost: bool) -> _EvalSet:
    rows = np.flatnonzero(complete_rows(test))
    if len(rows) == 0:
        raise ValueError(
            f"none of the {test.n_queries} test queries has a score for every model; evaluate on "
            "models scored everywhere (RoutingData.select_models(data.complete_models()))"
        )
    scores = test.scores[rows]
    costs = realised_costs(test.costs[rows], model_costs) if has_cost else np.full(scores.shape, np.nan)
    tasks = None if test.tasks is None else np.array(
        ["(none)" if t is None else str(t) for t in test.tasks[rows]], dtype=object)
    return _EvalSet(rows=rows, scores=scores, costs=costs, tasks=tasks)


def _resolve_costs(train: RoutingData, test: RoutingData, model_costs) -> tuple[np.ndarray, bool]:
    costs = mean_model_costs(train) if model_costs is None else np.asarray(model_costs, dtype=np.float64)
    if costs.shape != (train.n_models,):
        raise ValueError(f"model_costs must have shape ({train.n_models},), got {costs.shape}")
    if train.models != test.models:
        raise ValueError(f"train and test have different models: {train.models} vs {test.models}")
    return costs, bool(test.has_cost or train.has_cost or np.any(costs != 0))


def baselines(train: RoutingData, test: RoutingData, model_costs: np.ndarray | None = None,
              budget: float | None = None, exclude: list[int] | None = None) -> Baselines:
    """Best single (train-chosen, within ``budget`` if given, never an ``exclude`` model; and hindsight),
    oracle and random on the complete test queries."""
    costs, has_cost = _resolve_costs(train, test, model_costs)
    ev = _eval_set(test, costs, has_cost)
    single_q = ev.scores.mean(axis=0)
    single_c = ev.costs.mean(axis=0)
    oracle_q, oracle_c = quality_cost(oracle_choices(ev.scores, np.nan_to_num(ev.costs, nan=0.0)),
                                      ev.scores, ev.costs)
    if test.estimated is not None and test.estimated[ev.rows].any():
        # Rows holding DR pseudo-outcomes (router.evaluation.offpolicy): their max is no oracle.
        oracle_q = oracle_c = float("nan")
    return Baselines(
        models=tuple(test.models), n_train=train.n_queries, n_test=test.n_queries, n_eval=len(ev.rows),
        n_dropped_incomplete=test.n_queries - len(ev.rows), has_cost=has_cost,
        best_single=best_single_index(train, costs, budget, exclude),
        reference=best_single_index(train, costs, exclude=exclude),
        hindsight_best=_best_index(single_q, costs),
        single_quality=single_q, single_cost=single_c, oracle_quality=oracle_q, oracle_cost=oracle_c,
        random_quality=float(single_q.mean()), random_cost=float(single_c.mean()), model_costs=costs,
    )


# --------------------------------------------------------------------------- one router


@dataclass(frozen=True)
class RouterResult:
    """One router on the test queries at its operating ``lam``, plus its curves.

    ``choices`` are model indices for the evaluated test rows (``baselines.n_eval`` of them).
    ``aiq`` is None without costs; ``apgr``/``cpt50``/``cpt80``/``strong_model``/``weak_model``
    are None unless the pool has exactly two models.
    """

    lam: float
    quality: float
    cost: float
    gap_closed: float
    choices: np.ndarray
    routing_share: np.ndarray
    ci: dict
    per_task: dict
    curve: dict  # {"lam": [...], "cost": [...], "quality": [...]}
    aiq: float | None
    baselines: Baselines = field(repr=False)
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None
    strong_model: str | None = None
    weak_model: str | None = None

    def to_dict(self) -> dict:
        models = self.baselines.models
        out = {
            "lam": json_number(self.lam),
            "quality": json_number(self.quality),
            "cost": json_number(self.cost),
            "gap_closed": json_number(self.gap_closed),
            "ci": _jsonable(self.ci),
            "routing_share": {m: json_number(s) for m, s in zip(models, self.routing_share)},
            "per_task": _jsonable(self.per_task),
            "curve": _jsonable(self.curve),
        }
        if self.baselines.has_cost:
            out["aiq"] = json_number(self.aiq)
        if len(models) == 2:
            out.update(apgr=json_number(self.apgr), cpt50=json_number(self.cpt50), cpt80=json_number(self.cpt80),
                       strong_model=self.strong_model, weak_model=self.weak_model)
        return out


def bootstrap_ci(
    router_scores: np.ndarray,
    best_scores: np.ndarray,
    oracle_scores: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap over test queries for router quality and gap closed.

    Each resample draws the queries with replacement and recomputes router, best-single and
    oracle means on the same draw (the best single model stays the one chosen on train). With
    the same seed and test set every router sees the same resamples, so intervals compare fairly.
    """
    n = len(router_scores)
    rng = np.random.default_rng(seed)
    stack = np.stack([router_scores, best_scores, oracle_scores])  # (3, n)
    means = np.empty((n_boot, 3))
    chunk = max(1, 2_000_000 // max(n, 1))  # bounds the (chunk, n) index array's memory
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(size, n))
        means[start:start + size] = stack[:, idx].mean(axis=2).T
    r, b, o = means.T
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.where(np.abs(o - b) > 1e-12, (r - b) / (o - b), np.nan)
    tail = 100 * (1 - level) / 2

    def bounds(v: np.ndarray) -> list[float]:
        if not np.isfinite(v).any():
            return [math.nan, math.nan]
        return [float(x) for x in np.nanpercentile(v, [tail, 100 - tail])]

    return {"level": level, "n_boot": n_boot, "seed": seed, "quality": bounds(r), "gap_closed": bounds(gaps)}


def per_task_breakdown(
    tasks: np.ndarray, router_scores: np.ndarray, best_scores: np.ndarray, oracle_scores: np.ndarray,
    choices: np.ndarray | None = None, models: tuple[str, ...] | None = None,
) -> dict:
    """{task: {n, router, best_single, oracle}} mean qualities per task, tasks sorted; with the router's
    ``choices`` and the ``models``, also the model it routes most of the task to (``routed_to``) and that
    model's share of the task (``routed_share``)."""
    out = {}
    for t in sorted(set(tasks.tolist())):
        rows = tasks == t
        out[t] = {"n": int(rows.sum()), "router": float(router_scores[rows].mean()),
                  "best_single": float(best_scores[rows].mean()), "oracle": float(oracle_scores[rows].mean())}
        if choices is not None and models is not None:
            share = routing_share(choices[rows], len(models))
            out[t].update(routed_to=models[int(np.argmax(share))], routed_share=float(share.max()))
    return out


def cost_quality_curve(pred: np.ndarray, scores: np.ndarray, costs: np.ndarray,
                       model_costs: np.ndarray, lams: np.ndarray) -> dict:
    """(lam, mean cost, mean quality) of the choices at each lambda."""
    points = [quality_cost(choose(pred, model_costs, lam), scores, costs) for lam in lams]
    return {"lam": [float(x) for x in lams], "cost": [c for _, c in points], "quality": [q for q, _ in points]}


def evaluate_router(
    pred_scores_test: np.ndarray,
    test: RoutingData,
    train: RoutingData,
    model_costs: np.ndarray | None = None,
    lam: float = 0.0,
    *,
    n_lambdas: int = 50,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    budget: float | None = None,
    exclude: list[int] | None = None,
) -> RouterResult:
    """Score one router's predictions on the test queries (rows of ``pred_scores_test`` align with
    ``test``; incomplete queries are dropped here). ``model_costs`` defaults to the mean training
    cost per model (``BaseRouter.model_costs_``). Under a ``budget`` gap closed is measured from the
    best single model that fits it; ``exclude``: models that may not be the best single one."""
    pred = np.asarray(pred_scores_test, dtype=np.float64)
    if pred.shape != test.scores.shape:
        raise ValueError(f"pred_scores_test must have shape {test.scores.shape} (test queries x models), "
                         f"got {pred.shape}")
    base = baselines(train, test, model_costs, budget, exclude)
    costs = base.model_costs
    ev = _eval_set(test, costs, base.has_cost)
    pred = pred[ev.rows]
    choices = choose(pred, costs, lam)
    quality, cost = quality_cost(choices, ev.scores, ev.costs)
    rows = np.arange(len(choices))
    r_scores = ev.scores[rows, choices]
    b_scores = ev.scores[:, base.best_single]
    o_scores = ev.scores.max(axis=1) if np.isfinite(base.oracle_quality) else np.full(len(rows), np.nan)
    lams = lambda_grid(pred, costs, n_lambdas) if base.has_cost else np.array([0.0])
    curve = cost_quality_curve(pred, ev.scores, ev.costs, costs, lams)
    two = {}
    if len(base.models) == 2:
        # strong = better training mean (ties: the dearer one), as in RouteLLM's strong/weak pair
        means = np.nan_to_num(model_means(train.scores, train.mask), nan=-np.inf)
        strong = int(np.lexsort((costs, means))[-1])
        weak = 1 - strong
        shares, quals = strong_share_curve(pred[:, strong] - pred[:, weak], ev.scores[:, strong], ev.scores[:, weak])
        w, s = base.single_quality[weak], base.single_quality[strong]
        two = dict(apgr=apgr(shares, quals, w, s), cpt50=cpt(shares, quals, w, s, 0.5),
                   cpt80=cpt(shares, quals, w, s, 0.8), strong_model=base.models[strong],
                   weak_model=base.models[weak])
    return RouterResult(
        lam=float(lam), quality=quality, cost=cost,
        gap_closed=gap_closed(quality, base.single_quality[base.best_single], base.oracle_quality),
        choices=choices, routing_share=routing_share(choices, len(base.models)),
        ci=bootstrap_ci(r_scores, b_scores, o_scores, n_boot=n_boot, level=level, seed=seed),
        per_task={} if ev.tasks is None else per_task_breakdown(ev.tasks, r_scores, b_scores, o_scores, choices,
                                                                base.models),
        curve=curve, aiq=aiq(curve["cost"], curve["quality"]) if base.has_cost else None,
        baselines=base, **two,
    )


# --------------------------------------------------------------------------- JSON helpers


def json_number(x) -> float | None:
    """JSON-safe float: NaN/inf/None become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return json_number(obj)
    return obj
