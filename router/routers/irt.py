"""Item-response router in the spirit of IRT-Router and EmbedLLM: a low-rank model of P(correct).

P(model m answers query x well) = sigmoid(a_m . (W x) - v . x + c_m): the query gets a k-dim trait
W x and a difficulty v . x, both linear in its (standardised) embedding; the model gets an ability
vector a_m and a bias c_m. All models are fitted jointly on the observed (query, model) cells only,
so models with few answers borrow strength from the shared query traits. Binary cross-entropy for
0/1 scores, squared error (of the probability) for continuous ones, L2 on W, v and A, full-batch
L-BFGS in numpy/scipy: deterministic given ``random_state``. Stored state is arrays only.
"""

from __future__ import annotations

import numpy as np
from router.routers._common import as_grid, check_choice, sigmoid, standardise, standardise_stats
from router.routers.base import BaseRouter
from router.routers.search import cv_search

LOSSES = ("auto", "bce", "squared")


class IRTRouter(BaseRouter):
    """Low-rank item-response model: query trait and difficulty from the embedding, model abilities.

    ``rank``: k, the dimension of the query trait and the model ability vectors. ``l2``: L2 strength
    on W, v and the abilities, relative to the mean loss per observed cell (so a value means the
    same at any data size). Each takes one value or a tuple of candidates, chosen by ``cv``-fold CV
    routing quality; within a rank the l2 path is walked from the strongest penalty down, each fit
    warm-started from the previous one. ``loss``: "bce", "squared", or "auto" (bce when every
    observed score is 0 or 1). Scores outside [0, 1] (ratings) are min-max scaled for fitting and
    mapped back, so ``predict_scores`` is P(correct) for 0/1 scores and the predicted score otherwise.
    ``max_iter``: L-BFGS iterations per fit.
    """

    def __init__(
        self,
        rank: int | tuple[int, ...] = (1, 4, 16),
        l2: float | tuple[float, ...] = (1e-3, 1e-2, 1e-1),
        loss: str = "auto",
        max_iter: int = 150,
        cv: int = 3,
        random_state: int = 0,
    ):
        self.rank = rank
        self.l2 = l2
        self.loss = loss
        self.max_iter = max_iter
        self.cv = cv
        self.random_state = random_state

    def _grid(self) -> list[tuple[int, float]]:
        ranks, l2s = as_grid(self.rank), as_grid(self.l2)
        if any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ranks):
            raise ValueError(f"rank must be integers >= 1, got {self.rank!r}")
        if not all(np.isfinite(a) and a >= 0 for a in l2s):
            raise ValueError(f"l2 must be finite and >= 0, got {self.l2!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        check_choice("loss", self.loss, LOSSES)
        # Rank outermost, strongest penalty first within a rank: the order the warm starts walk.
        return [(int(k), float(a)) for k in ranks for a in sorted(l2s, reverse=True)]

    def _fit(self, X, Y, C, mask) -> None:
        grid = self._grid()
        observed = Y[mask]
        self.score_range_ = (min(float(observed.min()), 0.0), max(float(observed.max()), 1.0))
        lo, hi = self.score_range_
        T = np.clip(np.where(mask, (np.where(mask, Y, lo) - lo) / (hi - lo), 0.0), 0.0, 1.0)
        binary = bool(np.isin(T[mask], (0.0, 1.0)).all())
        self.loss_ = ("bce" if binary else "squared") if self.loss == "auto" else self.loss
        self.x_mean_, self.x_scale_ = standardise_stats(X)
        Xs = standardise(X, self.x_mean_, self.x_scale_)

        def fold_predictions(tr, va):
            w = None
            for i, (k, a) in enumerate(grid):
                if i and grid[i - 1][0] != k:
                    w = None  # a new rank: new parameter shapes, cold start
                w, params = self._train(Xs[tr], T[tr], mask[tr], k, a, w)
                yield _logits(Xs[va], *params)  # the logit ranks models as the probability does

        best, self.cv_results_ = cv_search(grid, fold_predictions, Y, mask, self.cv, self.random_state)
        self.rank_, self.l2_ = best
        self.best_params_ = {"rank": self.rank_, "l2": self.l2_}
        # Cold start: refitting with best_params_ (no search) gives this very router.
        _, (self.W_, self.v_, self.A_, self.c_) = self._train(Xs, T, mask, self.rank_, self.l2_)

    def _train(self, Xs, T, mask, k, l2, w0=None):
        """L-BFGS fit of (W (d, k), v (d,), A (m, k), c (m,)); returns the flat solution and the arrays."""
        from scipy.optimize import minimize
        from scipy.special import expit, log_expit

        n, d = Xs.shape
        m = T.shape[1]
        M = mask.astype(np.float32)
        Tf = T.astype(np.float32)
        scale = 1.0 / max(float(mask.sum()), 1.0)
        squared = self.loss_ == "squared"
        if w0 is None:
            rng = np.random.default_rng(self.random_state)
            # Small random traits and abilities (zero is a saddle point of the bilinear term); the
            # biases start at each model's observed mean rate.
            rate = np.clip((Tf * M).sum(axis=0) / np.maximum(M.sum(axis=0), 1.0), 0.02, 0.98)
            w0 = np.concatenate([rng.normal(0, 0.1 / np.sqrt(d), d * k), np.zeros(d),
                                 rng.normal(0, 0.1, m * k), np.log(rate / (1 - rate))])

        def unpack(w):
            o = d * k
            return w[:o].reshape(d, k), w[o:o + d], w[o + d:o + d + m * k].reshape(m, k), w[o + d + m * k:]

        def loss(w):
            W, v, A, c = unpack(w)
            Z = Xs @ np.column_stack([W, v]).astype(np.float32)  # (n, k + 1): traits and difficulty
            L = Z[:, :k] @ A.T.astype(np.float32) - Z[:, k:] + c.astype(np.float32)
            if squared:
                P = expit(L)
                R = P - Tf
                f = 0.5 * scale * (M * R * R).sum(dtype=np.float64)
                G = scale * M * R * P * (1 - P)  # dLoss/dL
            else:  # soft-target BCE, stable via log_expit
                f = -scale * (M * (Tf * log_expit(L) + (1 - Tf) * log_expit(-L))).sum(dtype=np.float64)
                G = scale * M * (expit(L) - Tf)
            f += 0.5 * l2 * ((W ** 2).sum() + (v ** 2).sum() + (A ** 2).sum())
            gZ = np.column_stack([G @ A.astype(np.float32), -G.sum(axis=1)])
            gWv = Xs.T @ gZ
            grad = [gWv[:, :k] + l2 * W, gWv[:, k] + l2 * v, G.T @ Z[:, :k] + l2 * A, G.sum(axis=0)]
            return f, np.concatenate([g.ravel() for g in grad]).astype(np.float64)

        res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter, "ftol": 1e-8})
        return res.x, tuple(a.copy() for a in unpack(res.x))

    def _predict_scores(self, X) -> np.ndarray:
        Xs = standardise(X, self.x_mean_, self.x_scale_).astype(np.float64)
        lo, hi = self.score_range_
        return lo + (hi - lo) * sigmoid(_logits(Xs, self.W_, self.v_, self.A_, self.c_))


def _logits(Xs, W, v, A, c) -> np.ndarray:
    return (Xs @ W) @ A.T - (Xs @ v)[:, None] + c
