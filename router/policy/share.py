"""A share of the calls to one model, costs or no costs: the bias that sends it that share.

A model's *shortfall* on a query is how much its utility must rise to win it (the best other utility
minus its own; <= 0 where it wins). A bias ``b`` on one model routes to it exactly the queries whose
shortfall is below ``b``, so the shortfalls' ``s``-quantile is the bias giving it a share ``s`` of the
calls (RouteLLM's threshold, for any number of models). The quantiles at ``SHARE_LEVELS``, measured on
calibration queries, are exported with a router and answer ``share=`` per call.
"""

from __future__ import annotations

import numpy as np

from router.policy.rule import check_scores

SHARE_LEVELS = np.linspace(0.0, 1.0, 101)  # the quantiles of the shortfalls kept for serving


def shortfall_quantiles(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float) -> np.ndarray:
    """(n_models, len(SHARE_LEVELS)): per model, quantiles over the queries of its shortfall at ``lam``."""
    pred, costs = check_scores(pred_scores, model_costs)
    if pred.shape[1] < 2 or len(pred) == 0:
        raise ValueError("share calibration needs at least 2 models and 1 query")
    util = pred - lam * costs
    out = np.empty((util.shape[1], len(SHARE_LEVELS)))
    for j in range(util.shape[1]):
        shortfall = np.delete(util, j, axis=1).max(axis=1) - util[:, j]
        out[j] = np.quantile(shortfall, SHARE_LEVELS)
    return out


def share_bias(quantiles: np.ndarray, model: int, share: float) -> np.ndarray:
    """The bias vector (zero but for ``model``) that sends it about ``share`` of the calls, from
    ``shortfall_quantiles``. 0 and 1 step just past the extreme shortfalls, so they mean none and all."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    row = np.asarray(quantiles, dtype=np.float64)[model]
    step = 1e-9 * (1.0 + np.abs(row).max())
    b = row[0] - step if share <= 0 else row[-1] + step if share >= 1 else float(np.interp(share, SHARE_LEVELS, row))
    bias = np.zeros(len(quantiles))
    bias[model] = b
    return bias
