"""kNN on cosine similarity: predict each model's score as a weighted mean over similar past queries."""

from __future__ import annotations

from itertools import product

import numpy as np

from router.policy.propensity import weighted_means
from router.routers._common import as_grid, check_choice, unit_rows
from router.routers.base import BaseRouter
from router.routers.search import cv_search

WEIGHTINGS = ("uniform", "similarity", "kernel")
_CHUNK = 2048  # query rows per block of the neighbour average
_SEARCH_CELLS = 12_800_000  # similarities per search block (51 MB): 256 query rows at 50,000 references


class KNNRouter(BaseRouter):
    """Weighted mean of the k most similar training queries' observed scores, per model.

    Each prediction is shrunk towards the model's training mean by ``prior_weight`` pseudo-
    neighbours: (sum_i w_i y_i + prior_weight * mean) / (sum_i w_i + prior_weight), which is also
    the fallback when no neighbour saw the model. ``weighting``: "uniform" (w = 1), "similarity"
    (w = cosine, clipped at 0) or "kernel" (w = exp((cosine - 1) / temperature): near-duplicates
    count fully, mere topical neighbours hardly at all, so with a small temperature the router
    keeps the prior unless the query was effectively seen before).

    ``n_neighbors``, ``weighting``, ``temperature`` and ``prior_weight`` each take one value or a
    tuple of candidates; with any tuple the combination is chosen by ``cv``-fold cross-validation
    on the training data, scored by routing quality (mean score of the argmax choice).
    ``temperature`` only matters for "kernel". On partial feedback (``fit(..., propensities=)``) CV
    grades as ``router.policy.propensity.partial_feedback`` says; with ``ips_weights`` a neighbour's score also
    counts with its
    inverse-propensity weight (off by default, as for ``RidgeRouter``). ``max_references``: above that
    many training queries, neighbours are searched among a seeded random sample of that size (in every CV
    fold too, so CV grades the router as it will run); the brute-force search grows with queries x
    references, and the head stores only the references. The priors use every query.
    """

    supports_weights = True

    def __init__(
        self,
        n_neighbors: int | tuple[int, ...] = (10, 30, 100, 300),
        weighting: str | tuple[str, ...] = ("uniform", "kernel"),
        temperature: float | tuple[float, ...] = (0.003, 0.01, 0.03),
        prior_weight: float | tuple[float, ...] = (0.3, 3.0),
        ips_weights: bool = False,
        max_references: int | None = 50_000,
        cv: int = 5,
        random_state: int = 0,
    ):
        self.ips_weights = ips_weights
        self.max_references = max_references
        self.n_neighbors = n_neighbors
        self.weighting = weighting
        self.temperature = temperature
        self.prior_weight = prior_weight
        self.cv = cv
        self.random_state = random_state

    def _grid(self) -> list[tuple[int, str, float, float]]:
        ks, ws = as_grid(self.n_neighbors), as_grid(self.weighting)
        ts, ps = as_grid(self.temperature), as_grid(self.prior_weight)
        for w in ws:
            check_choice("weighting", w, WEIGHTINGS)
        if min(ks) < 1 or min(ts) <= 0 or min(ps) < 0:
            raise ValueError(f"need n_neighbors >= 1, temperature > 0, prior_weight >= 0; got {ks}, {ts}, {ps}")
        # Temperature is irrelevant without the kernel: one entry avoids duplicate grid points.
        return [(k, w, t, p) for k, w, t, p in product(ks, ws, ts, ps) if w == "kernel" or t == ts[0]]

    def _references(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` itself, or a seeded sorted sample of ``max_references`` of them."""
        if self.max_references is None or len(rows) <= self.max_references:
            return rows
        if self.max_references < 1:
            raise ValueError(f"max_references must be >= 1 or None, got {self.max_references}")
        return np.sort(np.random.default_rng(self.random_state).choice(rows, self.max_references, replace=False))

    def _fit(self, X, Y, C, mask, feedback=None) -> None:
        grid = self._grid()
        Xn = unit_rows(X)
        # A cell's weight: 1 where scored (its inverse propensity on partial feedback), 0 where not.
        weighted = feedback is not None and self.ips_weights
        W = feedback.weights.astype(np.float32) if weighted else mask.astype(np.float32)
        # The prior (each model's mean) is weighted on partial feedback either way: a plain mean of the
        # logged scores averages only the queries the deployed router sent to that model.
        W_prior = mask if feedback is None else feedback.weights
        Yw = np.where(mask, Y, 0.0) * W
        score_Y, score_mask = (Y, mask) if feedback is None else (feedback.scoring_Y, feedback.scoring_mask)

        def fold_predictions(tr, va):
            # Neighbours once per fold, for the largest k: every grid point reads a prefix.
            ref = self._references(tr)
            sim, idx = _neighbours(Xn[va], Xn[ref], max(g[0] for g in grid))
            prior = weighted_means(Y[tr], W_prior[tr])
            return (_combine(sim, idx, Yw[ref], W[ref], prior, *g) for g in grid)

        best, self.cv_results_ = cv_search(grid, fold_predictions, score_Y, score_mask, self.cv, self.random_state)
        ref = self._references(np.arange(len(X)))
        self.n_neighbors_ = min(best[0], len(ref))
        self.weighting_, self.temperature_, self.prior_weight_ = best[1:]
        self.best_params_ = dict(zip(("n_neighbors", "weighting", "temperature", "prior_weight"), best))
        self.X_ = Xn[ref]
        self.Y_ = Yw[ref].astype(np.float32)  # weighted scores (plain scores without partial feedback)
        self.mask_ = (W if weighted else mask)[ref]  # the cell weights: the mask itself when unweighted
        self.prior_ = weighted_means(Y, W_prior)

    def _predict_scores(self, X) -> np.ndarray:
        sim, idx = _neighbours(unit_rows(X), self.X_, self.n_neighbors_)
        return _combine(sim, idx, self.Y_, self.mask_, self.prior_, self.n_neighbors_, self.weighting_,
                        self.temperature_, self.prior_weight_)


def _combine(sim, idx, Yz, mask, prior, k, weighting, temperature, prior_weight) -> np.ndarray:
    """Shrunk weighted mean over the first k (sorted) neighbours, in row blocks to bound memory.
    ``Yz``: scores times cell weights; ``mask``: the cell weights (a bool mask: all 1)."""
    out = np.empty((len(sim), Yz.shape[1]))
    for s in range(0, len(sim), _CHUNK):
        si, ix = sim[s:s + _CHUNK, :k], idx[s:s + _CHUNK, :k]
        if weighting == "uniform":
            w = np.ones_like(si)
        elif weighting == "similarity":
            w = np.clip(si, 0.0, None)
        else:
            w = np.exp((np.minimum(si, 1.0) - 1.0) / temperature)
        num = np.einsum("nk,nkm->nm", w, Yz[ix]) + prior_weight * prior
        den = np.einsum("nk,nkm->nm", w, mask[ix].astype(np.float32)) + prior_weight
        out[s:s + _CHUNK] = np.where(den > 1e-12, num / np.maximum(den, 1e-12), prior)
    return out


def _neighbours(Q: np.ndarray, R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities and indices of rows of R for each row of Q (unit vectors), sorted."""
    k = min(k, len(R))
    sims = np.empty((len(Q), k), np.float32)
    idx = np.empty((len(Q), k), np.int64)
    # One reused block: a fresh (rows x references) array per block costs page faults, and a small block
    # keeps the selection in cache (at 50,000 references: 3x faster than 2,048-row blocks).
    rows = max(1, min(len(Q), _SEARCH_CELLS // max(len(R), 1)))
    buf = np.empty((rows, len(R)), np.float32)
    for s in range(0, len(Q), rows):
        block = buf[:len(Q[s:s + rows])]
        np.matmul(Q[s:s + rows], R.T, out=block)  # R.T: a view, BLAS reads it transposed
        if k < len(R):
            top = np.argpartition(block, len(R) - k, axis=1)[:, len(R) - k:]
        else:
            top = np.broadcast_to(np.arange(len(R)), block.shape)
        top_sim = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        idx[s:s + rows] = np.take_along_axis(top, order, axis=1)
        sims[s:s + rows] = np.take_along_axis(top_sim, order, axis=1)
    return sims, idx
