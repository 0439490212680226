"""Cluster priors: k-means on the unit embeddings, each model's shrunk mean score per cluster.

In the spirit of the Avengers cluster router (route a query to the model that did best on its
cluster of past queries), with two additions: the per-cluster means are shrunk towards each
model's global mean, so a small cluster cannot crown a model on three lucky answers, and the
number of clusters, the shrinkage and the soft-assignment temperature are chosen by CV routing
quality. Only the centroids and the cluster score table are kept: prediction is plain numpy.
"""

from __future__ import annotations

import warnings
from itertools import product

import numpy as np

from router.routers._common import as_grid, column_means, group_stats, row_blocks, shrunk_means, unit_rows
from router.routers.base import BaseRouter
from router.routers.search import cv_search


class ClusterRouter(BaseRouter):
    """Per-cluster, per-model mean observed score, shrunk towards the model's global mean.

    Fit: k-means (``n_clusters``, ``n_init`` restarts, ``random_state``) on the L2-normalised
    embeddings; every training query counts towards its nearest centroid, and the score of model m
    on cluster c is (sum of observed scores in c + shrink * mean_m) / (observed count in c + shrink).
    Predict: with ``temperature`` 0 a query takes its nearest cluster's scores (hard assignment);
    with ``temperature`` t > 0 it takes a softmax mix over clusters with weights
    exp(-(d2_c - min_c d2_c) / t), d2 the squared Euclidean distance from the unit query to the
    centroid (on unit vectors d2 is mostly in [0.3, 1.5], so t = 0.03 mixes only near ties and
    t = 0.1 the few nearest clusters).

    ``n_clusters``, ``shrink`` and ``temperature`` each take one value or a tuple of candidates;
    with any tuple the combination is chosen by ``cv``-fold cross-validation on the training data,
    scored by routing quality (k-means is fitted once per fold and ``n_clusters``; shrink and
    temperature reuse it). ``n_clusters`` larger than the number of training queries is capped.
    ``max_kmeans_queries``: above that many training queries the centroids are found on a seeded
    sample of that size (in every CV fold too, so CV grades the router as it will run); every query
    still counts towards its cluster's scores. k-means grows with queries x clusters x iterations.
    """

    def __init__(
        self,
        n_clusters: int | tuple[int, ...] = (8, 16, 32, 64),
        shrink: float | tuple[float, ...] = (1.0, 5.0, 20.0),
        temperature: float | tuple[float, ...] = (0.0, 0.03, 0.1),
        n_init: int = 2,
        max_kmeans_queries: int | None = 50_000,
        cv: int = 5,
        random_state: int = 0,
    ):
        self.n_clusters = n_clusters
        self.shrink = shrink
        self.temperature = temperature
        self.n_init = n_init
        self.max_kmeans_queries = max_kmeans_queries
        self.cv = cv
        self.random_state = random_state

    def _grid(self) -> list[tuple[int, float, float]]:
        ks, ss, ts = as_grid(self.n_clusters), as_grid(self.shrink), as_grid(self.temperature)
        bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
        if bad:
            raise ValueError(f"n_clusters must be integers >= 1, got {self.n_clusters!r}")
        if not all(np.isfinite(s) and s >= 0 for s in ss):
            raise ValueError(f"shrink must be finite and >= 0, got {self.shrink!r}")
        if not all(np.isfinite(t) and t >= 0 for t in ts):
            raise ValueError(f"temperature must be finite and >= 0 (0 = hard assignment), got {self.temperature!r}")
        if isinstance(self.n_init, bool) or not isinstance(self.n_init, (int, np.integer)) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}")
        # n_clusters outermost: one k-means per fold and k, every (shrink, temperature) reuses it.
        return [(int(k), float(s), float(t)) for k, s, t in product(ks, ss, ts)]

    def _fit(self, X, Y, C, mask) -> None:
        grid = self._grid()
        if self.max_kmeans_queries is not None and (
                isinstance(self.max_kmeans_queries, bool) or self.max_kmeans_queries < 1):
            raise ValueError(f"max_kmeans_queries must be an integer >= 1 or None, got {self.max_kmeans_queries!r}")
        Yz = np.where(mask, Y, 0.0)

        def fold_predictions(tr, va):
            prior = column_means(Y[tr], mask[tr])
            for k in dict.fromkeys(g[0] for g in grid):  # distinct, in grid order
                centroids = self._kmeans(X[self._kmeans_rows(tr)], k)
                sums, counts = group_stats(_nearest(X[tr], centroids), Yz[tr], mask[tr], len(centroids))
                d2 = _sq_dist(unit_rows(X[va], np.float64), centroids)
                for _, s, t in (g for g in grid if g[0] == k):
                    yield _assign(d2, t) @ shrunk_means(sums, counts, prior, s)

        best, self.cv_results_ = cv_search(grid, fold_predictions, Y, mask, self.cv, self.random_state)
        self.best_params_ = dict(zip(("n_clusters", "shrink", "temperature"), best))
        _, self.shrink_, self.temperature_ = best
        self.prior_ = column_means(Y, mask)
        self.centroids_ = self._kmeans(X[self._kmeans_rows(np.arange(len(X)))], best[0])
        self.n_clusters_ = len(self.centroids_)
        labels = _nearest(X, self.centroids_)
        sums, counts = group_stats(labels, Yz, mask, self.n_clusters_)
        self.cluster_counts_ = counts  # observed answers per (cluster, model): for inspection
        self.cluster_scores_ = shrunk_means(sums, counts, self.prior_, self.shrink_)

    def _kmeans_rows(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` itself, or a seeded sorted sample of ``max_kmeans_queries`` of them."""
        if self.max_kmeans_queries is None or len(rows) <= self.max_kmeans_queries:
            return rows
        return np.sort(np.random.default_rng(self.random_state).choice(rows, self.max_kmeans_queries, replace=False))

    def _kmeans(self, X: np.ndarray, k: int) -> np.ndarray:
        """Centroids (min(k, n), d) in float64 of the unit rows of ``X``; the estimator itself is not kept."""
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        Xn = unit_rows(X, np.float64)
        k = min(k, len(Xn))
        with warnings.catch_warnings():
            # Fewer distinct points than clusters (duplicated prompts): some centroids coincide.
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(Xn)
        return km.cluster_centers_.astype(np.float64)

    def _predict_scores(self, X) -> np.ndarray:
        return _assign(_sq_dist(unit_rows(X, np.float64), self.centroids_), self.temperature_) @ self.cluster_scores_


def _nearest(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid per row of ``X`` (unit-scaled), a block of rows at a time."""
    return np.concatenate([_sq_dist(unit_rows(X[b], np.float64), centroids).argmin(axis=1)
                           for b in row_blocks(len(X))])


def _sq_dist(Xn: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, k) of unit rows to the centroids (float64, clipped at 0)."""
    d2 = (Xn ** 2).sum(axis=1)[:, None] - 2.0 * (Xn @ centroids.T) + (centroids ** 2).sum(axis=1)[None, :]
    return np.maximum(d2, 0.0)


def _assign(d2: np.ndarray, temperature: float) -> np.ndarray:
    """Cluster weights (n, k), rows summing to 1: one-hot on the nearest centroid (ties to the lower
    index) for temperature 0, else a softmax of -d2 / temperature."""
    if temperature == 0:
        W = np.zeros_like(d2)
        W[np.arange(len(d2)), d2.argmin(axis=1)] = 1.0
        return W
    W = np.exp(-(d2 - d2.min(axis=1, keepdims=True)) / temperature)
    return W / W.sum(axis=1, keepdims=True)
