"""Multiclass classifier on the best-model label: predict_scores = P(model is the best choice)."""

from __future__ import annotations

import numpy as np
from router.routers._common import affine, as_grid, check_choice, softmax, standardise, standardise_stats
from router.routers.base import BaseRouter
from router.routers.search import cv_search

LABELS = ("hard", "soft")
CLASS_WEIGHTS = (None, "balanced")


class ClassifierRouter(BaseRouter):
    """Softmax regression on which model is best for each query.

    ``label="hard"``: one class per query, ``labels.best_model_labels`` (ties by lower cost, then
    higher mean score). With costs and many ties that label is "the cheapest model that got it
    right", which a classifier turns into routing to cheap models (RouterBench: quality 0.595 vs
    0.878 for the best single model), hence the default ``label="soft"``: the target spreads
    evenly over all models tied at the best score, so a query that five models got right teaches
    "any of these five" instead of crediting one by a tie-break; queries where every model scored
    the same carry no routing signal and are dropped. Models that are never best get probability
    0. ``alpha``: L2 strength per query on standardised features (as in ``LogisticRouter``); a
    tuple is searched by ``cv``-fold CV routing quality. ``class_weight="balanced"`` up-weights
    rare winners. Scores are probabilities, not model scores: use lam-cost routing with care.
    """

    def __init__(
        self,
        alpha: float | tuple[float, ...] = (0.1, 0.3, 1.0, 3.0),
        label: str = "soft",
        class_weight: str | None = None,
        cv: int = 5,
        max_iter: int = 200,
        random_state: int = 0,
    ):
        self.alpha = alpha
        self.label = label
        self.class_weight = class_weight
        self.cv = cv
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        check_choice("label", self.label, LABELS)
        check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
        T, keep = self._targets(Y, C, mask)
        self.x_mean_, self.x_scale_ = standardise_stats(X)
        Xs = standardise(X, self.x_mean_, self.x_scale_)
        alphas = sorted(as_grid(self.alpha), reverse=True)  # strongest first: smoother warm starts

        def fold_predictions(tr, va):
            tr = tr[keep[tr]]
            W = None
            for a in alphas:
                W = self._fit_one(Xs[tr], T[tr], a, W)
                yield _probabilities(Xs[va], W)

        self.alpha_, self.cv_results_ = cv_search(alphas, fold_predictions, Y, mask, self.cv, self.random_state)
        self.best_params_ = {"alpha": self.alpha_}
        self.W_ = self._fit_one(Xs[keep], T[keep], self.alpha_)

    def _targets(self, Y, C, mask) -> tuple[np.ndarray, np.ndarray]:
        n, m = Y.shape
        if self.label == "hard":
            from router.data import labels  # fit only: serving never imports polars

            best = labels.best_model_labels(Y, mask, C)
            keep = best >= 0
            T = np.zeros((n, m))
            T[np.flatnonzero(keep), best[keep]] = 1.0
        else:
            V = np.where(mask, Y, -np.inf)
            top = mask & (V == V.max(axis=1, keepdims=True))
            keep = top.any(axis=1) & (top.sum(axis=1) < mask.sum(axis=1))
            T = top / np.maximum(top.sum(axis=1, keepdims=True), 1)
        if self.class_weight == "balanced":
            freq = T[keep].sum(axis=0)
            w = np.where(freq > 0, keep.sum() / (m * np.maximum(freq, 1e-12)), 0.0)
            T = T * w  # a weighted cross-entropy: per-class weights scale the target mass
        return T, keep

    def _fit_one(self, X, T, alpha, W0=None) -> np.ndarray:
        # Classes never seen in this training set get a fixed -inf logit: probability 0.
        seen = T.sum(axis=0) > 0
        W = fit_softmax(X, T[:, seen], alpha, self.max_iter, None if W0 is None else W0[:, seen])
        full = np.zeros((X.shape[1] + 1, T.shape[1]))
        full[-1] = -np.inf
        full[:, seen] = W
        return full

    def _predict_scores(self, X) -> np.ndarray:
        return _probabilities(standardise(X, self.x_mean_, self.x_scale_), self.W_)


def _probabilities(Xs, W) -> np.ndarray:
    # Finite even for never-best classes (their -inf logit gives 0): the decision rule needs that.
    return softmax(affine(Xs, W), axis=1)


def fit_softmax(X, T, alpha, max_iter, W0=None) -> np.ndarray:
    """L2 softmax regression on (possibly soft, weighted) targets T; returns stacked (d + 1, k) weights.

    Objective: cross-entropy summed over rows / n_rows + alpha/2 |W|^2 (bias unpenalised).
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    d, k = X.shape[1], T.shape[1]
    n = len(X)
    T = T.astype(np.float32)
    mass = T.sum(axis=1, keepdims=True)

    def loss(w):
        W = w.reshape(d + 1, k)
        logp = log_softmax(affine(X, W.astype(np.float32)), axis=1)
        f = -(T * logp).sum(dtype=np.float64) / n + 0.5 * alpha * (W[:-1] ** 2).sum()
        G = (mass * np.exp(logp) - T) / n
        grad = np.vstack([X.T @ G + alpha * W[:-1], G.sum(axis=0)])
        return f, grad.ravel().astype(np.float64)

    w0 = np.zeros((d + 1) * k) if W0 is None else np.nan_to_num(W0, neginf=0.0).ravel()
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-7})
    return res.x.reshape(d + 1, k)
