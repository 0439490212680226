"""Ensemble: a weighted blend of several heads' per-query normalised predictions, shrunk towards
the training means, with weights and shrinkage chosen on out-of-fold predictions."""

from __future__ import annotations

import inspect
from itertools import product

import numpy as np

from router.routers._common import as_grid, check_choice, column_means, rank_rows, zscore_rows
from router.routers.base import BaseRouter
from router.routers.search import cv_search

NORMALISATIONS = ("zscore", "rank", "none")
_WEIGHT_LEVELS = (0.0, 1.0, 2.0)  # per-member levels of the "cv" weight grid (normalised after)


class EnsembleRouter(BaseRouter):
    """Weighted mean of member routers' normalised predictions, shrunk towards the training means.

    ``routers``: (name, unfitted router) pairs; None uses ``default_members()``. ``normalise``:
    "zscore" (per query: centre and scale each member's scores, so heads on different scales get
    an equal say), "rank" (per-query ranks) or "none" (members already on the score scale). The
    blend is mapped back to the score scale with the members' per-query level and spread, then
    S = (1 - shrink) * blend + shrink * training means: shrink > 0 only lets a query leave the
    model with the best training mean when the heads agree it should (on data where one model
    dominates, most "switches" are noise; shrink = 1 is the best-single router). ``weights``: a
    tuple, "equal", or "cv"; with "cv" or several ``shrink`` candidates, each member is also fitted
    on ``cv`` folds of the training data and the combination with the best out-of-fold routing
    quality is kept. Those fold fits reuse the hyper-parameters each member chose on the whole
    training set (its ``best_params_``), which is fast but slightly optimistic; ``nested=True``
    reruns each member's own CV in every fold instead (about ``cv`` times slower).

    ``fit(..., client=...)``: a connected ``distributed.Client``; the final fit of each member whose
    ``_fit`` takes a ``client`` (LightGBM) runs on the cluster, the fold fits stay local.
    """

    def __init__(
        self,
        routers: list[tuple[str, BaseRouter]] | None = None,
        normalise: str = "zscore",
        weights: tuple[float, ...] | str = "cv",
        shrink: float | tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
        cv: int = 5,
        nested: bool = False,
        random_state: int = 0,
    ):
        self.routers = routers
        self.normalise = normalise
        self.weights = weights
        self.shrink = shrink
        self.cv = cv
        self.nested = nested
        self.random_state = random_state

    def _fit(self, X, Y, C, mask, client=None) -> None:
        check_choice("normalise", self.normalise, NORMALISATIONS)
        from sklearn.base import clone  # fit only: serving never imports sklearn

        members = self.routers if self.routers is not None else default_members()
        if not members:
            raise ValueError("routers is empty: an ensemble needs at least one member")
        weight_grid = self._weight_grid(len(members))
        shrinks = as_grid(self.shrink)
        if not all(0.0 <= s <= 1.0 for s in shrinks):
            raise ValueError(f"shrink must be in [0, 1], got {self.shrink}")
        fitted = [clone(r).fit(X, Y, C, mask, **_client_params(r, client)) for _, r in members]
        inner = [r if self.nested else clone(r).set_params(**getattr(f, "best_params_", {}))
                 for (_, r), f in zip(members, fitted)]

        def fold_predictions(tr, va):
            # Members are fitted once per fold; every (weights, shrink) point blends their predictions.
            # Fold fits stay local even with a client: they are many small fits, where lightgbm.dask's
            # per-regressor socket set-up dominates (bench_cluster: 15.5 s vs 0.5 s for 31 regressors).
            parts = self._normalised([clone(r).fit(X[tr], Y[tr], C[tr], mask[tr]).predict_scores(X[va])
                                      for r in inner])
            prior = column_means(Y[tr], mask[tr])
            for w in weight_grid:
                blend = _blend(parts, w)
                for s in shrinks:
                    yield (1 - s) * blend + s * prior

        # Pooled: scored on all out-of-fold predictions at once, as stacking usually is.
        (self.weights_, self.shrink_), self.cv_results_ = cv_search(
            list(product(weight_grid, shrinks)), fold_predictions, Y, mask, self.cv, self.random_state, pooled=True)
        self.best_params_ = {"weights": tuple(float(w) for w in self.weights_), "shrink": float(self.shrink_)}
        self.weights_ = np.asarray(self.weights_)
        self.prior_ = column_means(Y, mask)
        # Members with zero weight are not needed at serving time.
        self.routers_ = [(name, f if w > 0 else None) for (name, _), f, w in zip(members, fitted, self.weights_)]

    def _weight_grid(self, n: int) -> list[tuple[float, ...]]:
        if isinstance(self.weights, str):
            check_choice("weights", self.weights, ("cv", "equal"))
            if self.weights == "equal" or n == 1:
                return [tuple([1.0 / n] * n)]
            grid = {tuple(np.round(np.array(c) / sum(c), 6)) for c in product(_WEIGHT_LEVELS, repeat=n) if sum(c) > 0}
            return sorted(grid, key=lambda w: (-min(w), w))  # evenest first: it wins ties
        w = np.asarray(self.weights, dtype=np.float64)
        if len(w) != n:
            raise ValueError(f"weights has {len(w)} entries for {n} routers")
        if (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {self.weights}")
        return [tuple(w / w.sum())]

    def _normalised(self, preds: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per member: (normalised scores, per-query level, per-query spread) for mapping back."""
        if self.normalise == "none":
            return [(p, None, None) for p in preds]
        norm = zscore_rows if self.normalise == "zscore" else (lambda p: zscore_rows(rank_rows(p)))
        return [(norm(p), p.mean(axis=1, keepdims=True), p.std(axis=1, keepdims=True)) for p in preds]

    def _predict_scores(self, X) -> np.ndarray:
        live = [(w, r) for w, (_, r) in zip(self.weights_, self.routers_) if w > 0]
        parts = self._normalised([r.predict_scores(X) for _, r in live])
        blend = _blend(parts, tuple(w for w, _ in live))
        return (1 - self.shrink_) * blend + self.shrink_ * self.prior_


def _client_params(router: BaseRouter, client) -> dict:
    """``{"client": client}`` for a member whose ``_fit`` takes one (LightGBM, a nested ensemble), else {}."""
    if client is None or "client" not in inspect.signature(router._fit).parameters:
        return {}
    return {"client": client}


def _blend(parts, weights) -> np.ndarray:
    """Weighted blend of normalised member scores, mapped back to the score scale."""
    live = [(part, w) for part, w in zip(parts, weights) if w > 0]
    z = sum(w * part[0] for part, w in live)
    if live[0][0][1] is None:  # normalise="none": members are on the score scale already
        return z
    level = sum(w * part[1] for part, w in live)
    spread = sum(w * part[2] for part, w in live)
    return level + spread * z


def default_members() -> list[tuple[str, BaseRouter]]:
    """The default heads: kernel kNN, ridge and LightGBM. On MMLU-Pro out-of-fold predictions, adding
    logistic, classifier or MF heads got zero weight (benchmarks/explore_routers.py)."""
    from router.routers.knn import KNNRouter
    from router.routers.lgbm import LGBMRouter
    from router.routers.linear import RidgeRouter

    return [("knn", KNNRouter()), ("ridge", RidgeRouter()), ("lgbm", LGBMRouter())]
