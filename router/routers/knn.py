"""kNN on cosine similarity: predict each model's score as a weighted mean over similar past queries."""

from __future__ import annotations

import numpy as np

from router.routers._common import check_choice, column_means, folds, pick_best, routing_quality
from router.routers.base import BaseRouter

WEIGHTINGS = ("uniform", "similarity", "softmax")
_CHUNK = 2048  # query rows per similarity block: bounds memory at chunk x n_train floats


class KNNRouter(BaseRouter):
    """Similarity-weighted mean of the neighbours' observed scores, per model.

    n_neighbors / weighting: fixed values, or None to choose them from ``n_neighbors_grid`` x
    ``weighting_grid`` by ``cv``-fold cross-validation on the training data, scored by routing
    quality (mean score of the argmax choice). ``weighting``: "uniform", "similarity" (cosine,
    clipped at 0) or "softmax" (exp(cosine / temperature)). ``prior_weight`` pulls each prediction
    towards the model's training mean with that many pseudo-neighbours (shrinks noisy small-k
    estimates; also the fallback when no neighbour saw the model).
    """

    def __init__(
        self,
        n_neighbors: int | None = None,
        weighting: str | None = None,
        n_neighbors_grid: tuple[int, ...] = (10, 20, 50, 100, 200),
        weighting_grid: tuple[str, ...] = ("uniform", "similarity", "softmax"),
        temperature: float = 0.05,
        prior_weight: float = 1.0,
        cv: int = 5,
        random_state: int = 0,
    ):
        self.n_neighbors = n_neighbors
        self.weighting = weighting
        self.n_neighbors_grid = n_neighbors_grid
        self.weighting_grid = weighting_grid
        self.temperature = temperature
        self.prior_weight = prior_weight
        self.cv = cv
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        ks = (self.n_neighbors,) if self.n_neighbors is not None else tuple(self.n_neighbors_grid)
        ws = (self.weighting,) if self.weighting is not None else tuple(self.weighting_grid)
        for w in ws:
            check_choice("weighting", w, WEIGHTINGS)
        if min(ks) < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {min(ks)}")
        Xn = _unit(X)
        Yz = np.where(mask, Y, 0.0)
        self.cv_results_ = {}
        if len(ks) * len(ws) > 1:
            scores = {(k, w): [] for k in ks for w in ws}
            for tr, va in folds(len(X), self.cv, self.random_state):
                kmax = min(max(ks), len(tr))
                sim, idx = _neighbours(Xn[va], Xn[tr], kmax)
                prior = column_means(Y[tr], mask[tr])
                for k in ks:
                    for w in ws:
                        S = self._combine(sim[:, :k], idx[:, :k], Yz[tr], mask[tr], prior, w)
                        scores[(k, w)].append(routing_quality(Y[va], mask[va], S))
            self.cv_results_ = {p: float(np.mean(v)) for p, v in scores.items()}
            ks_best, ws_best = pick_best(self.cv_results_)
        else:
            ks_best, ws_best = ks[0], ws[0]
        self.n_neighbors_ = min(ks_best, len(X))
        self.weighting_ = ws_best
        self.X_ = Xn
        self.Y_ = Yz.astype(np.float32)
        self.mask_ = mask
        self.prior_ = column_means(Y, mask)

    def _predict_scores(self, X) -> np.ndarray:
        sim, idx = _neighbours(_unit(X), self.X_, self.n_neighbors_)
        out = np.empty((len(X), self.n_models_))
        for s in range(0, len(X), _CHUNK):  # the gathered (rows, k, models) block is the big one
            out[s:s + _CHUNK] = self._combine(sim[s:s + _CHUNK], idx[s:s + _CHUNK], self.Y_, self.mask_,
                                              self.prior_, self.weighting_)
        return out

    def _combine(self, sim, idx, Yz, mask, prior, weighting) -> np.ndarray:
        if weighting == "uniform":
            w = np.ones_like(sim)
        elif weighting == "similarity":
            w = np.clip(sim, 0.0, None)
        else:  # softmax; subtracting the row max keeps exp finite, ratios are unchanged
            w = np.exp((sim - sim[:, :1]) / self.temperature)
            w /= w.sum(axis=1, keepdims=True) / sim.shape[1]  # rescale to k total, like uniform
        w = w[:, :, None]
        num = (w * Yz[idx]).sum(axis=1) + self.prior_weight * prior
        den = (w * mask[idx]).sum(axis=1) + self.prior_weight
        return np.where(den > 0, num / np.maximum(den, 1e-12), prior)


def _unit(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.maximum(norms, 1e-12)).astype(np.float32)


def _neighbours(Q: np.ndarray, R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities and indices of rows of R for each row of Q (unit vectors), sorted."""
    k = min(k, len(R))
    sims = np.empty((len(Q), k), np.float32)
    idx = np.empty((len(Q), k), np.int64)
    for s in range(0, len(Q), _CHUNK):
        block = Q[s:s + _CHUNK] @ R.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < len(R) else np.tile(np.arange(len(R)), (len(block), 1))
        top_sim = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        idx[s:s + _CHUNK] = np.take_along_axis(top, order, axis=1)
        sims[s:s + _CHUNK] = np.take_along_axis(top_sim, order, axis=1)
    return sims, idx
