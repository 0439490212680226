"""Fits on logs where some model has no scored answer: a cross-validation fold of a little-explored log (the
router's own traffic with a small exploration share), where a rarely served model may be absent.

``fit_scored`` fits the router on the models with answers; ``Unscored`` stands in for all of them. A model
without an answer has no evidence there: on each query it is predicted below every scored model and costs the
most, so the rule never picks it at any lam. The job's final fit sees every model (it refuses a model with no
training answer).
"""

from __future__ import annotations

import numpy as np

from router.policy.rule import choose
from router.routers.base import BaseRouter


class Unscored:
    """``router`` (fitted on the ``scored`` models) predicting for every model of the logs; an unscored model
    one below the lowest scored prediction of each query."""

    def __init__(self, router: BaseRouter, scored: np.ndarray) -> None:
        self.router, self.scored = router, scored
        costs = np.full(len(scored), float(np.max(router.model_costs_)))
        costs[scored] = router.model_costs_
        self.model_costs_, self.n_models_ = costs, len(scored)

    def predict_scores(self, X, **kwargs) -> np.ndarray:
        known = self.router.predict_scores(X, **kwargs)
        out = np.repeat(known.min(axis=1, keepdims=True) - 1.0, len(self.scored), axis=1)  # below every scored one
        out[:, self.scored] = known
        return out

    def route(self, X, lam: float = 0.0, costs=None) -> np.ndarray:
        """Index of the chosen model per query, over every model (the one decision rule)."""
        return choose(self.predict_scores(X), self.model_costs_ if costs is None else costs, lam)

    def __getattr__(self, name: str):  # the fitted router's own state (best_params_, members, needs_tasks)
        if name == "router" or name.startswith("__"):  # before __init__ (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.router, name)


def fit_scored(router: BaseRouter, X, Y, C, mask, **fit_params):
    """``router.fit(X, Y, C, mask, **fit_params)``, or, when some model (not all but one) has no scored
    answer, the router fitted on the others wrapped in ``Unscored``."""
    scored = np.asarray(mask, dtype=bool).any(axis=0)
    if scored.all() or scored.sum() < 2:
        return router.fit(X, Y, C, mask, **fit_params)
    if fit_params.get("propensities") is not None:
        fit_params["propensities"] = np.asarray(fit_params["propensities"])[:, scored]
    fitted = router.fit(X, Y[:, scored], None if C is None else C[:, scored], mask[:, scored], **fit_params)
    return Unscored(fitted, scored)
