"""Pairwise matrix-factorisation router in the spirit of RouteLLM's ``mf``.

score(q, m) = (x_q P) . v_m + b_m: a learned projection P of the query embedding meets a learned
embedding v_m per model. Training sees only pairwise outcomes on the same query (model a scored
higher than model b), with the Bradley-Terry loss softplus(-(score_a - score_b)); query difficulty
cancels out of every pair. RouteLLM trains one pair of models from arena votes; here all pairs of
all models are used at once. Full-batch L-BFGS in numpy: deterministic given ``random_state``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from router.routers.base import BaseRouter
from router.routers.linear import standardise_stats

_CHUNK = 4096  # queries per block of the (queries, models, models) pair tensors


class MFRouter(BaseRouter):
    """Low-rank bilinear pairwise router.

    ``dim``: rank of the model embeddings; ``alpha``: L2 strength on P and the model embeddings
    (per observed pair, so it does not scale with the data size); ``max_iter``: L-BFGS iterations.
    The raw scores are Bradley-Terry logits; after fitting, one affine map (positive slope, so
    the ranking is unchanged) puts them on the training score scale, so that ``route`` with a
    cost weight ``lam`` trades score against cost in the data's own units.
    """

    def __init__(self, dim: int = 32, alpha: float = 1e-3, max_iter: int = 300, random_state: int = 0):
        self.dim = dim
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        self.x_mean_, self.x_scale_ = standardise_stats(X)
        Xs = ((X - self.x_mean_) / self.x_scale_).astype(np.float64)
        d, m, r = X.shape[1], Y.shape[1], self.dim
        Yz = np.where(mask, Y, 0.0)
        starts = range(0, len(X), _CHUNK)
        pairs = [_pairs(Yz[s:s + _CHUNK], mask[s:s + _CHUNK]) for s in starts]  # fixed: computed once
        scale = 1.0 / max(sum(int(p.sum()) for p in pairs), 1)
        rng = np.random.default_rng(self.random_state)
        w0 = np.concatenate([rng.normal(0, 1 / np.sqrt(d), d * r), rng.normal(0, 1 / np.sqrt(r), m * r), np.zeros(m)])

        def unpack(w):
            return w[:d * r].reshape(d, r), w[d * r:d * r + m * r].reshape(m, r), w[d * r + m * r:]

        def loss(w):
            P, V, b = unpack(w)
            f = 0.5 * self.alpha * ((P**2).sum() + (V**2).sum())
            gP, gV, gb = self.alpha * P, self.alpha * V, np.zeros(m)
            for s, W in zip(starts, pairs):
                Xc = Xs[s:s + _CHUNK]
                Q = Xc @ P
                S = Q @ V.T + b
                D = S[:, :, None] - S[:, None, :]  # D[i, a, b] = score_a - score_b
                f -= scale * (W * log_expit(D)).sum()
                G = -scale * W * expit(-D)  # dLoss/dD
                dS = G.sum(axis=2) - G.sum(axis=1)
                gP += Xc.T @ (dS @ V)
                gV += dS.T @ Q
                gb += dS.sum(axis=0)
            return f, np.concatenate([gP.ravel(), gV.ravel(), gb])

        res = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.P_, self.V_, self.b_ = (a.copy() for a in unpack(res.x))
        self.n_iter_ = int(res.nit)
        # Affine calibration of the logits to the score scale (least squares, slope kept >= 0).
        S = self._logits(Xs)[mask]
        y = Y[mask]
        slope = max(float(np.cov(S, y)[0, 1] / max(S.var(), 1e-12)), 1e-6)
        self.calibration_ = (slope, float(y.mean() - slope * S.mean()))

    def _logits(self, Xs) -> np.ndarray:
        return (Xs @ self.P_) @ self.V_.T + self.b_

    def _predict_scores(self, X) -> np.ndarray:
        slope, offset = self.calibration_
        return offset + slope * self._logits((X - self.x_mean_) / self.x_scale_)


def _pairs(Yz, mask) -> np.ndarray:
    """W[i, a, b] True where both models were scored on query i and a scored strictly higher."""
    both = mask[:, :, None] & mask[:, None, :]
    return both & (Yz[:, :, None] > Yz[:, None, :])
