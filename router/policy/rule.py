"""The one decision rule: route each query to ``argmax(predicted score - lam * cost + bias)``.

``lam`` is the willingness to pay (quality units per $) and ``bias`` an optional per-model offset
(the knob behind a share of calls, ``share.share_bias``). Exact ties go to the cheaper
model, then the lower index: so the cost of each query's choice can only fall as ``lam`` grows,
spend is monotone in ``lam``, and a budget has one smallest lambda meeting it. Evaluation,
calibration, selection, promotion and serving all choose through ``choose`` (or ``rank``, its order).
"""

from __future__ import annotations

import numpy as np


def check_scores(pred_scores, model_costs) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, costs)`` as float64 after checking shapes and values; ValueError naming what is wrong."""
    pred = np.asarray(pred_scores, dtype=np.float64)
    costs = np.asarray(model_costs, dtype=np.float64)
    if pred.ndim != 2:
        raise ValueError(f"pred_scores must be (n_queries, n_models), got shape {pred.shape}")
    if costs.shape != (pred.shape[1],):
        raise ValueError(f"model_costs must have shape ({pred.shape[1]},), got {costs.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("pred_scores contains NaN or infinite values")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError(f"model_costs must be finite and >= 0, got {costs.tolist()}")
    return pred, costs


def utility(pred: np.ndarray, costs: np.ndarray, lam: float, bias=None) -> np.ndarray:
    """``pred - lam * cost + bias``: what the decision rule maximises."""
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    util = pred - lam * costs
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != costs.shape or not np.isfinite(bias).all():
            raise ValueError(f"bias must be {costs.shape[0]} finite numbers, got {bias.tolist()}")
        util = util + bias
    return util


def choose(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float = 0.0,
           allowed: np.ndarray | None = None, bias=None) -> np.ndarray:
    """Index of the chosen model per query: argmax of ``pred - lam * cost + bias``.

    Exact ties go to the cheaper model (then the lower index): at a breakpoint both are equally
    good, and preferring the cheaper one keeps spend non-increasing in ``lam``. ``allowed``
    (n_queries, n_models) bool, optional: only these models compete (their scores must be
    finite, the others are ignored); every query needs at least one. ``bias`` (n_models,),
    optional: a per-model offset (``share.share_bias``).
    """
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != np.shape(pred_scores):
            raise ValueError(f"allowed must have the shape of pred_scores {np.shape(pred_scores)}, "
                             f"got {allowed.shape}")
        pred_scores = np.where(allowed, pred_scores, 0.0)  # scores of excluded models may be NaN
    pred, costs = check_scores(pred_scores, model_costs)
    if allowed is not None and not allowed.any(axis=1).all():
        raise ValueError("allowed leaves some queries without any model")
    util = utility(pred, costs, lam, bias)
    if allowed is not None:
        util[~allowed] = -np.inf
    tied = util >= util.max(axis=1, keepdims=True)
    return np.where(tied, costs, np.inf).argmin(axis=1)


def rank(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float = 0.0, bias=None) -> np.ndarray:
    """(n_queries, n_models) model indices per query, best first, under ``choose``'s utility and tie
    rule (higher ``pred - lam * cost + bias``; exact ties to the cheaper model, then the lower index).

    Column 0 is ``choose(pred, costs, lam, bias=bias)``; the next columns are the fallbacks a gateway
    tries when the chosen model's upstream fails.
    """
    pred, costs = check_scores(pred_scores, model_costs)
    util = utility(pred, costs, lam, bias)
    # lexsort's last key is the primary one, and it is stable: equal (util, cost) keep index order
    cost_key = np.broadcast_to(costs, util.shape)
    return np.lexsort((cost_key, -util), axis=1)


def lambda_grid(pred_scores: np.ndarray, model_costs: np.ndarray, n: int = 50) -> np.ndarray:
    """Sorted lambdas: 0, then ``n - 1`` geometrically spaced values up to the point where the
    cheapest model wins every query.

    The low end is the first lambda at which any query's choice changes, so no grid point is
    wasted where nothing moves. Returns ``[0.0]`` when the costs cannot change a choice (all
    equal, or the cheapest model already wins everywhere).
    """
    pred, costs = check_scores(pred_scores, model_costs)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    c_min = costs.min()
    dearer = costs > c_min
    if not dearer.any() or len(pred) == 0:
        return np.array([0.0])
    cheap_best = pred[:, ~dearer].max(axis=1, keepdims=True)
    # lambda at which the best cheapest model catches up with each dearer model, per query
    catch_up = (pred[:, dearer] - cheap_best) / (costs[dearer] - c_min)
    hi = float(catch_up.max())
    if hi <= 0:
        return np.array([0.0])
    hi *= 1 + 1e-9  # past the last breakpoint despite rounding
    positive = switch_points(pred, costs, max_steps=1)[0]  # each query's first switch
    lo = float(positive.min()) if positive.size else hi
    lo = min(max(lo, hi * 1e-9), hi)
    if lo >= hi:
        return np.array([0.0, hi])
    return np.concatenate([[0.0], np.geomspace(lo, hi, n - 1)])


def switch_points(pred_scores: np.ndarray, model_costs: np.ndarray,
                  max_steps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every lambda > 0 at which a query's choice moves to a cheaper model, and the cost change it makes.

    Per query the choice walks down the upper envelope of the lines ``pred_j - lam * cost_j``: from
    the current model, the next one is the cheaper model it catches up with first (the cheapest of
    several caught at once), at most ``n_models - 1`` steps (or ``max_steps``). Returns
    ``(lams, cost_deltas)`` unsorted, one entry per switch. The sum of ``cost_deltas`` up to a lambda is how
    much the spend has fallen.
    """
    pred, costs = check_scores(pred_scores, model_costs)
    cur = choose(pred, costs, 0.0)
    at = np.zeros(len(pred))
    live = np.arange(len(pred))
    lams, deltas = [], []
    for _ in range(pred.shape[1] - 1 if max_steps is None else min(max_steps, pred.shape[1] - 1)):
        if not live.size:
            break
        gap_c = costs[cur[live]][:, None] - costs[None, :]  # > 0 for the cheaper models
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = np.where(gap_c > 0, (pred[live, cur[live]][:, None] - pred[live]) / gap_c, np.inf)
        cross = np.maximum(cross, at[live, None])  # rounding never moves a switch before the last one
        nxt = cross.min(axis=1)
        moves = np.isfinite(nxt) & (nxt > 0)
        new = np.where(cross <= nxt[:, None], costs[None, :], np.inf).argmin(axis=1)
        rows = live[moves]
        lams.append(nxt[moves])
        deltas.append(costs[new[moves]] - costs[cur[rows]])
        cur[rows], at[rows] = new[moves], nxt[moves]
        live = rows
    if not lams:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(lams), np.concatenate(deltas)
