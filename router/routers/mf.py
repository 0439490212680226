"""Pairwise matrix-factorisation router in the spirit of RouteLLM's ``mf``.

score(q, m) = (x_q P) . v_m + b_m: a learned projection P of the query embedding meets a learned
embedding v_m per model. Training sees only pairwise outcomes on the same query (model a scored
higher than model b), with the Bradley-Terry loss softplus(-(score_a - score_b)); query difficulty
cancels out of every pair. RouteLLM trains one pair of models from arena votes; here all pairs of
all models are used at once. Full-batch L-BFGS in numpy: deterministic given ``random_state``.
"""

from __future__ import annotations

import numpy as np
from router.routers._common import as_grid, standardise, standardise_stats
from router.routers.base import BaseRouter
from router.routers.search import cv_search


class MFRouter(BaseRouter):
    """Low-rank bilinear pairwise router.

    ``dim``: rank of the model embeddings. ``alpha``: L2 strength on P and the model embeddings,
    relative to the mean pair loss (so a value means the same at any data size); a tuple is
    searched by ``cv``-fold CV routing quality. ``max_iter``: L-BFGS iterations. The raw scores are
    Bradley-Terry logits; after fitting, one affine map (positive slope, so the ranking is
    unchanged) puts them on the training score scale, so that ``route`` with a cost weight ``lam``
    trades score against cost in the data's own units.
    """

    def __init__(
        self,
        dim: int = 16,
        alpha: float | tuple[float, ...] = (0.01, 0.03, 0.1),
        max_iter: int = 200,
        cv: int = 3,
        random_state: int = 0,
    ):
        self.dim = dim
        self.alpha = alpha
        self.max_iter = max_iter
        self.cv = cv
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        alphas = as_grid(self.alpha)
        self.x_mean_, self.x_scale_ = standardise_stats(X)
        Xs = standardise(X, self.x_mean_, self.x_scale_)

        def fold_predictions(tr, va):
            for a in alphas:
                yield _logits(Xs[va], *self._train(Xs[tr], Y[tr], mask[tr], a)[:3])

        self.alpha_, self.cv_results_ = cv_search(alphas, fold_predictions, Y, mask, self.cv, self.random_state)
        self.best_params_ = {"alpha": self.alpha_}
        self.P_, self.V_, self.b_, self.n_iter_ = self._train(Xs, Y, mask, self.alpha_)
        # Affine calibration of the logits to the score scale (least squares, slope kept > 0).
        S = _logits(Xs, self.P_, self.V_, self.b_)[mask]
        y = Y[mask]
        slope = max(float(np.cov(S, y)[0, 1] / max(S.var(), 1e-12)), 1e-6)
        self.calibration_ = (slope, float(y.mean() - slope * S.mean()))

    def _train(self, Xs, Y, mask, alpha):
        from scipy.optimize import minimize
        from scipy.special import expit, log_expit

        n, d = Xs.shape
        m, r = Y.shape[1], self.dim
        fa, fb = _pairs(Y, mask)
        scale = 1.0 / max(len(fa), 1)
        rng = np.random.default_rng(self.random_state)
        w0 = np.concatenate([rng.normal(0, 1 / np.sqrt(d), d * r), rng.normal(0, 1 / np.sqrt(r), m * r), np.zeros(m)])

        def unpack(w):
            return w[:d * r].reshape(d, r), w[d * r:d * r + m * r].reshape(m, r), w[d * r + m * r:]

        def loss(w):
            P, V, b = unpack(w)
            Q = Xs @ P.astype(np.float32)
            S = (Q @ V.T.astype(np.float32) + b.astype(np.float32)).ravel()
            D = S[fa] - S[fb]  # score_winner - score_loser for every pair
            f = -scale * log_expit(D).sum(dtype=np.float64) + 0.5 * alpha * ((P**2).sum() + (V**2).sum())
            g = -scale * expit(-D)  # dLoss/dD
            dS = (np.bincount(fa, g, n * m) - np.bincount(fb, g, n * m)).reshape(n, m)
            gP = Xs.T @ (dS @ V).astype(np.float32) + alpha * P
            gV = dS.T @ Q + alpha * V
            return f, np.concatenate([gP.ravel(), gV.ravel(), dS.sum(axis=0)]).astype(np.float64)

        res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter, "ftol": 1e-8})
        P, V, b = (a.copy() for a in unpack(res.x))
        return P, V, b, int(res.nit)

    def _predict_scores(self, X) -> np.ndarray:
        slope, offset = self.calibration_
        return offset + slope * _logits(standardise(X, self.x_mean_, self.x_scale_), self.P_, self.V_, self.b_)


def _logits(Xs, P, V, b) -> np.ndarray:
    return (Xs @ P) @ V.T + b


def _pairs(Y, mask) -> tuple[np.ndarray, np.ndarray]:
    """Flat (query * n_models + model) indices of winner and loser for every strictly ordered pair
    of models scored on the same query."""
    n, m = Y.shape
    Yz = np.where(mask, Y, 0.0)
    wins = mask[:, :, None] & mask[:, None, :] & (Yz[:, :, None] > Yz[:, None, :])
    i, a, b = np.nonzero(wins)
    return i * m + a, i * m + b
