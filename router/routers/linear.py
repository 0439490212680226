"""Linear probes on embeddings: ridge per model (the reward-model form) and logistic per model."""

from __future__ import annotations

import numpy as np
from router.routers._common import (affine, as_grid, check_choice, row_blocks, row_centre, sigmoid, standardise,
                                    standardise_stats)
from router.routers.base import BaseRouter
from router.routers.search import cv_search

TARGETS = ("raw", "centred")


class RidgeRouter(BaseRouter):
    """Multi-output ridge regression of each model's score on the features.

    Missing scores are left out exactly: models sharing a missing-pattern share one solve, the
    others get their own. ``alpha``: one value, or a tuple of candidates chosen by ``cv``-fold CV
    on the training data, scored by routing quality (one alpha for all models); with
    ``alpha_per_model`` each model instead gets the candidate with its lowest CV squared error.
    ``target="centred"`` regresses score minus the query's mean score (the query difficulty no
    routing choice changes); with one shared alpha and complete logs it routes identically to
    "raw", so it matters only with per-model alphas. On partial feedback (``fit(..., propensities=)``)
    CV grades as ``router.policy.propensity.partial_feedback`` says; with ``ips_weights`` each model's
    regression is
    inverse-propensity weighted. Off by default: a regression of a model's score on the query is
    consistent without weights (the logging choice depends on the query only), and on real logs the
    weights' variance cost more than their bias correction gained (benchmarks/RESULTS.md, "Feedback loop").
    """

    supports_weights = True

    def __init__(
        self,
        alpha: float | tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0),
        alpha_per_model: bool = False,
        target: str = "raw",
        ips_weights: bool = False,
        cv: int = 5,
        random_state: int = 0,
    ):
        self.alpha = alpha
        self.alpha_per_model = alpha_per_model
        self.target = target
        self.ips_weights = ips_weights
        self.cv = cv
        self.random_state = random_state

    def _fit(self, X, Y, C, mask, feedback=None) -> None:
        check_choice("target", self.target, TARGETS)
        if feedback is not None and self.target == "centred":
            raise ValueError("target='centred' needs several scored models per query; partial feedback has one")
        T = row_centre(Y, mask) if self.target == "centred" else Y
        W = feedback.weights if feedback is not None and self.ips_weights else None
        score_Y, score_mask = (Y, mask) if feedback is None else (feedback.scoring_Y, feedback.scoring_mask)
        alphas = np.asarray(as_grid(self.alpha), dtype=np.float64)
        if (alphas <= 0).any():
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        m = Y.shape[1]
        sq_err = np.zeros((len(alphas), m))  # per alpha and model, for alpha_per_model

        def fold_predictions(tr, va):
            # One SVD per fold gives the whole alpha path.
            coef, icpt = ridge_path(X[tr], T[tr], mask[tr], alphas, None if W is None else W[tr])
            P = np.einsum("nd,adm->anm", X[va].astype(np.float64), coef) + icpt[:, None, :]
            sq_err[:] += np.where(mask[va], (P - np.nan_to_num(T[va])) ** 2, 0.0).sum(axis=1)
            return P

        best, self.cv_results_ = cv_search([float(a) for a in alphas], fold_predictions, score_Y, score_mask,
                                           self.cv, self.random_state)
        # Without a search sq_err stays 0 and argmin takes the one candidate.
        self.alpha_ = alphas[np.argmin(sq_err, axis=0)] if self.alpha_per_model else np.full(m, best)
        # Per-model alphas cannot be frozen into the one ``alpha`` parameter.
        self.best_params_ = {} if self.alpha_per_model else {"alpha": float(self.alpha_[0])}
        self.coef_ = np.empty((X.shape[1], m))
        self.intercept_ = np.empty(m)
        for a in np.unique(self.alpha_):
            cols = self.alpha_ == a
            c, i = ridge_path(X, T[:, cols], mask[:, cols], np.array([a]), None if W is None else W[:, cols])
            self.coef_[:, cols], self.intercept_[cols] = c[0], i[0]

    def _predict_scores(self, X) -> np.ndarray:
        return X.astype(np.float64) @ self.coef_ + self.intercept_


def ridge_path(X, Y, mask, alphas, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients (n_alphas, d, m) and intercepts (n_alphas, m), fitted on observed cells only,
    each cell's squared error weighted by ``weights`` (n, m) when given.

    Models sharing a missing-pattern (and weight pattern) share one solve. Each solve works on the
    centred Gram matrix of its rows, whose eigendecomposition gives the whole alpha path; the Gram is
    accumulated in float64 chunks (``X`` is never copied whole), and a pattern missing few rows takes
    the all-rows Gram minus its missing rows', so a million queries cost about one pass over ``X``.
    """
    n, d = X.shape
    m = Y.shape[1]
    Yz = np.where(mask, Y, 0.0)
    coef = np.zeros((len(alphas), d, m))
    icpt = np.zeros((len(alphas), m))
    patterns: dict[bytes, list[int]] = {}
    for j in range(m):
        key = np.packbits(mask[:, j]).tobytes() + (b"" if weights is None else weights[:, j].tobytes())
        patterns.setdefault(key, []).append(j)
    every = None
    prior = Yz[mask].mean() if mask.any() else 0.0
    for cols in patterns.values():
        rows = mask[:, cols[0]]
        if not rows.any() or (weights is not None and not (weights[rows, cols[0]] > 0).any()):
            # No scored row for these models here (a CV fold of a little-explored log): no evidence, so the
            # mean observed score of every model, never NaN (coef stays 0).
            icpt[:, cols] = prior
            continue
        if weights is not None:
            w, sx, Sxx, Sxy = _moments(X, rows, Yz[:, cols], weights[:, cols[0]])
        elif 2 * rows.sum() >= n:  # few missing rows: all rows' moments minus theirs
            every = every or _moments(X, None, Yz)
            w, sx, Sxx = (a - b for a, b in zip(every[:3], _moments(X, ~rows, None)[:3]))
            Sxy = every[3][:, cols]  # Yz is 0 on this pattern's missing rows
        else:
            w, sx, Sxx, Sxy = _moments(X, rows, Yz[:, cols])
        x_mean, y_mean = sx / w, Yz[rows][:, cols].T @ (np.ones(rows.sum()) if weights is None
                                                         else weights[rows, cols[0]]) / w
        Cxx = Sxx - w * np.outer(x_mean, x_mean)
        Cxy = Sxy - w * np.outer(x_mean, y_mean)
        ev, V = np.linalg.eigh(Cxx)
        VtC = V.T @ Cxy
        for a, alpha in enumerate(alphas):
            c = V @ (VtC / (np.maximum(ev, 0.0) + alpha)[:, None])
            coef[a][:, cols] = c
            icpt[a, cols] = y_mean - x_mean @ c
    return coef, icpt


def _moments(X, rows, Y, w=None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None]:
    """(sum of weights, weighted sum of x, of x x^T, of x y^T) over ``rows`` (a mask; None: all) of ``X``."""
    idx = np.arange(len(X)) if rows is None else np.flatnonzero(rows)
    d = X.shape[1]
    total, sx, Sxx = 0.0, np.zeros(d), np.zeros((d, d))
    Sxy = None if Y is None else np.zeros((d, Y.shape[1]))
    for b in row_blocks(len(idx)):
        part = idx[b]
        Xc = np.asarray(X[part], dtype=np.float64)
        Xw = Xc if w is None else Xc * w[part, None]
        total += len(part) if w is None else float(w[part].sum())
        sx += Xw.sum(axis=0)
        Sxx += Xw.T @ Xc
        if Y is not None:
            Sxy += Xw.T @ Y[part]
    return total, sx, Sxx, Sxy


class LogisticRouter(BaseRouter):
    """Logistic regression per model on scores in [0, 1] (0/1 correctness, or soft scores).

    All models are fitted jointly by one L-BFGS run (independent outputs, missing cells left out).
    Scores outside [0, 1] are min-max scaled for fitting and mapped back. ``alpha``: L2 strength
    per query on standardised features (objective = mean log-loss + alpha/2 |W|^2, so a value
    means the same at any data size); a tuple is searched by ``cv``-fold CV routing quality.
    """

    def __init__(
        self,
        alpha: float | tuple[float, ...] = (0.3, 1.0, 3.0, 10.0),
        cv: int = 5,
        max_iter: int = 200,
        random_state: int = 0,
    ):
        self.alpha = alpha
        self.cv = cv
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        observed = Y[mask]
        self.score_range_ = (min(float(observed.min()), 0.0), max(float(observed.max()), 1.0))
        lo, hi = self.score_range_
        T = np.where(mask, (np.where(mask, Y, lo) - lo) / (hi - lo), 0.0)
        self.x_mean_, self.x_scale_ = standardise_stats(X)
        Xs = standardise(X, self.x_mean_, self.x_scale_)
        # Strongest penalty first: each next fit warm-starts from a smoother solution.
        alphas = sorted(as_grid(self.alpha), reverse=True)

        def fold_predictions(tr, va):
            W = None
            for a in alphas:
                W = fit_sigmoid(Xs[tr], T[tr], mask[tr], a, self.max_iter, W)
                yield affine(Xs[va], W)

        self.alpha_, self.cv_results_ = cv_search(alphas, fold_predictions, Y, mask, self.cv, self.random_state)
        self.best_params_ = {"alpha": self.alpha_}
        self.W_ = fit_sigmoid(Xs, T, mask, self.alpha_, self.max_iter)

    def _predict_scores(self, X) -> np.ndarray:
        p = sigmoid(affine(standardise(X, self.x_mean_, self.x_scale_), self.W_))
        lo, hi = self.score_range_
        return lo + (hi - lo) * p


def fit_sigmoid(X, T, mask, alpha, max_iter, W0=None) -> np.ndarray:
    """Independent L2 logistic regressions for all columns of T; returns stacked (d + 1, m) weights.

    Objective: sum of log-losses over observed cells / n_rows + alpha/2 |W|^2 (bias unpenalised).
    """
    from scipy.optimize import minimize  # fit only: serving needs no scipy
    from scipy.special import expit, log_expit

    d, m = X.shape[1], T.shape[1]
    M = mask.astype(np.float32)
    T = T.astype(np.float32)
    n = len(X)

    def loss(w):
        W = w.reshape(d + 1, m)
        Z = affine(X, W.astype(np.float32))
        # Soft-target BCE, stable via log_expit; float32 products halve the time on big data.
        f = -(M * (T * log_expit(Z) + (1 - T) * log_expit(-Z))).sum(dtype=np.float64) / n
        G = M * (expit(Z) - T) / n
        grad = np.vstack([X.T @ G + alpha * W[:-1], G.sum(axis=0)])
        return f + 0.5 * alpha * (W[:-1] ** 2).sum(), grad.ravel().astype(np.float64)

    w0 = np.zeros((d + 1) * m) if W0 is None else W0.ravel()
    # Routing needs rankings, not 9-digit optima: a looser tolerance saves most iterations.
    res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "ftol": 1e-7})
    return res.x.reshape(d + 1, m)
