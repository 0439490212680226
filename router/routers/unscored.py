"""Fits on logs where some model has no scored answer: a cross-validation fold of a little-explored log (the
router's own traffic with a small exploration share), where a rarely served model may be absent.

``fit_scored`` fits the router on the models with answers; ``Unscored`` stands in for all of them. A model
without an answer has no evidence there: it is predicted the lowest mean score of the others and costs the
most, so it never wins on ignorance. A final fit sees every model (validation refuses a model never scored).
"""

from __future__ import annotations

import numpy as np

from router.routers.base import BaseRouter


class Unscored:
    """``router`` (fitted on the ``scored`` models) predicting for every model of the logs."""

    def __init__(self, router: BaseRouter, scored: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> None:
        means = np.nanmean(np.where(mask, Y, np.nan)[:, scored], axis=0)
        self.router, self.scored, self.fill = router, scored, float(means.min())
        costs = np.full(len(scored), float(np.max(router.model_costs_)))
        costs[scored] = router.model_costs_
        self.model_costs_, self.n_models_ = costs, len(scored)

    def predict_scores(self, X, **kwargs) -> np.ndarray:
        out = np.full((len(X), len(self.scored)), self.fill)
        out[:, self.scored] = self.router.predict_scores(X, **kwargs)
        return out

    def __getattr__(self, name: str):  # the fitted router's own state (best_params_, members, needs_tasks)
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
    return Unscored(fitted, scored, Y, mask)
