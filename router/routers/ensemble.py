"""Averaging ensemble: several heads' per-query normalised predictions, weighted."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from router.routers._common import check_choice, rank_rows, zscore_rows
from router.routers.base import BaseRouter

NORMALISATIONS = ("zscore", "rank", "none")


class EnsembleRouter(BaseRouter):
    """Weighted mean of member routers' predictions after per-query normalisation.

    ``routers``: (name, unfitted router) pairs; None uses ``default_members()``. Members are cloned
    and fitted on the same data. ``normalise``: "zscore" (per query: centre and scale each member's
    scores, so heads on different scales get equal say), "rank" (per-query ranks in [0, 1]) or
    "none" (members already on the score scale). ``weights`` None means equal weights. The
    combined scores keep the member-mean score scale: each query's normalised blend is mapped back
    with the members' average per-query mean and spread, so ``lam``-cost routing stays meaningful.
    """

    def __init__(
        self,
        routers: list[tuple[str, BaseRouter]] | None = None,
        normalise: str = "zscore",
        weights: tuple[float, ...] | None = None,
    ):
        self.routers = routers
        self.normalise = normalise
        self.weights = weights

    def _fit(self, X, Y, C, mask) -> None:
        check_choice("normalise", self.normalise, NORMALISATIONS)
        members = self.routers if self.routers is not None else default_members()
        if not members:
            raise ValueError("routers is empty: an ensemble needs at least one member")
        if self.weights is not None and len(self.weights) != len(members):
            raise ValueError(f"weights has {len(self.weights)} entries for {len(members)} routers")
        w = np.ones(len(members)) if self.weights is None else np.asarray(self.weights, dtype=np.float64)
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {self.weights}")
        self.weights_ = w / w.sum()
        self.routers_ = [(name, clone(r).fit(X, Y, C, mask)) for name, r in members]

    def _predict_scores(self, X) -> np.ndarray:
        preds = [r.predict_scores(X) for _, r in self.routers_]
        if self.normalise == "none":
            return sum(w * p for w, p in zip(self.weights_, preds))
        norm = zscore_rows if self.normalise == "zscore" else rank_rows
        blend = sum(w * norm(p) for w, p in zip(self.weights_, preds))
        # Back to the score scale: per query, the members' weighted mean level and spread.
        level = sum(w * p.mean(axis=1, keepdims=True) for w, p in zip(self.weights_, preds))
        spread = sum(w * p.std(axis=1, keepdims=True) for w, p in zip(self.weights_, preds))
        if self.normalise == "rank":
            blend = zscore_rows(blend)
        return level + spread * blend


def default_members() -> list[tuple[str, BaseRouter]]:
    """The ensemble's default heads (fixed later from the benchmark results)."""
    from router.routers.knn import KNNRouter
    from router.routers.linear import LogisticRouter, RidgeRouter

    return [("ridge", RidgeRouter()), ("logistic", LogisticRouter()), ("knn", KNNRouter())]
