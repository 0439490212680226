"""Multiclass classifier on the best-model label: predict_scores = P(model is the best choice)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from router import labels
from router.routers._common import check_choice, folds, pick_best, routing_quality
from router.routers.base import BaseRouter
from router.routers.linear import standardise_stats

LABELS = ("hard", "soft")
CLASS_WEIGHTS = (None, "balanced")


class ClassifierRouter(BaseRouter):
    """Softmax regression on which model is best for each query.

    ``label="hard"``: one class per query, ``labels.best_model_labels`` (ties by lower cost, then
    higher mean score). ``label="soft"``: the target spreads evenly over all models tied at the best
    score, so a query that five models got right teaches "any of these five" instead of crediting
    one by a tie-break; queries where every model scored the same carry no routing signal and are
    dropped. Models that are never best get probability 0. ``C`` (inverse L2 strength) None picks
    it from ``Cs`` by CV routing quality. ``class_weight="balanced"`` up-weights rare winners.
    Scores are probabilities, not model scores: use lam-cost routing with care.
    """

    def __init__(
        self,
        C: float | None = None,
        Cs: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1),
        label: str = "hard",
        class_weight: str | None = None,
        cv: int = 5,
        max_iter: int = 300,
        random_state: int = 0,
    ):
        self.C = C
        self.Cs = Cs
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
        Xs = (X - self.x_mean_) / self.x_scale_
        Cs = (self.C,) if self.C is not None else tuple(sorted(self.Cs))
        if len(Cs) > 1:
            scores = {c: [] for c in Cs}
            for tr, va in folds(len(X), self.cv, self.random_state):
                tr = tr[keep[tr]]
                W = None
                for c in Cs:
                    W = self._fit_one(Xs[tr], T[tr], c, W)
                    scores[c].append(routing_quality(Y[va], mask[va], _logits(Xs[va], W)))
            self.cv_results_ = {c: float(np.mean(v)) for c, v in scores.items()}
            self.C_ = pick_best(self.cv_results_)
        else:
            self.cv_results_ = {}
            self.C_ = Cs[0]
        self.W_ = self._fit_one(Xs[keep], T[keep], self.C_)

    def _targets(self, Y, C, mask) -> tuple[np.ndarray, np.ndarray]:
        n, m = Y.shape
        if self.label == "hard":
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

    def _fit_one(self, X, T, C, W0=None) -> np.ndarray:
        # Classes never seen in this training set get a fixed -inf logit: probability 0.
        seen = T.sum(axis=0) > 0
        W = fit_softmax(X, T[:, seen], C, self.max_iter, None if W0 is None else W0[:, seen])
        full = np.zeros((X.shape[1] + 1, T.shape[1]))
        full[-1] = -np.inf
        full[:, seen] = W
        return full

    def _predict_scores(self, X) -> np.ndarray:
        return softmax(_logits((X - self.x_mean_) / self.x_scale_, self.W_), axis=1)


def _logits(X, W) -> np.ndarray:
    return X @ W[:-1] + W[-1]


def fit_softmax(X, T, C, max_iter, W0=None) -> np.ndarray:
    """L2 softmax regression on (possibly soft, weighted) targets T; returns stacked (d + 1, k) weights."""
    X = np.asarray(X, dtype=np.float64)
    d, k = X.shape[1], T.shape[1]
    mass = T.sum(axis=1, keepdims=True)

    def loss(w):
        W = w.reshape(d + 1, k)
        logp = log_softmax(_logits(X, W), axis=1)
        f = -(T * logp).sum() + 0.5 / C * (W[:-1] ** 2).sum()
        G = mass * np.exp(logp) - T
        grad = np.vstack([X.T @ G + W[:-1] / C, G.sum(axis=0)])
        return f, grad.ravel()

    w0 = np.zeros((d + 1) * k) if W0 is None else np.nan_to_num(W0, neginf=0.0).ravel()
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(d + 1, k)
