"""Shared fixtures of the router family tests: small settings per family, seeded 70/30 splits of the MMLU-Pro
and NQ fixtures, and one BLAS thread per module."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers import make_router

# Small settings per family so the family suite runs in well under two minutes on 2 cores (imported by the
# family tests and by tests/serve/test_slim_serving.py).
FAST = {
    "best_single": {},
    "random": {"random_state": 3},
    "knn": {"cv": 3},
    "ridge": {"cv": 3},
    "logistic": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "lgbm": {"n_estimators": 40, "n_components": 16, "min_child_samples": 10},
    "classifier": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "mf": {"dim": 8, "alpha": 0.03, "max_iter": 60},
    "cluster": {"n_clusters": (4, 16), "shrink": (1.0, 5.0), "temperature": (0.0, 0.05), "cv": 3},
    "irt": {"rank": (1, 4), "l2": (0.01, 0.1), "cv": 3, "max_iter": 100},
    "task": {"C": (0.1, 1.0), "shrink": (1.0, 10.0), "cv": 3},
    "ensemble": {"routers": [("ridge", make_router("ridge", alpha=30.0)),
                             ("knn", make_router("knn", n_neighbors=20, weighting="uniform", prior_weight=1.0))],
                 "cv": 3},
}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # A 2-thread OpenBLAS on a loaded 2-core machine is 10-40x slower than one thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def split(n: int, seed: int = 0, train: float = 0.7):
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(train * n)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


@pytest.fixture(scope="module")
def mmlu(mmlu_small, mmlu_small_X):
    tr, te = split(mmlu_small.n_queries)
    return mmlu_small, mmlu_small_X, tr, te


@pytest.fixture(scope="module")
def nq_split(nq, nq_X):
    tr, te = split(nq.n_queries)
    return nq, nq_X, tr, te


def fit(name, d, X, rows, **override):
    return make_router(name, **(FAST[name] | override)).fit(X[rows], d.scores[rows], d.costs[rows], d.mask[rows])


def two_cluster_data(n=600, seed=0):
    """Two blobs; model 0 is right on blob 0 (p=0.9 vs 0.2), model 1 on blob 1, model 2 a coin."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2, 16))
    blob = rng.integers(0, 2, n)
    X = centres[blob] + 0.4 * rng.normal(size=(n, 16))
    p = np.stack([np.where(blob == 0, 0.9, 0.2), np.where(blob == 1, 0.9, 0.2), np.full(n, 0.5)], axis=1)
    return X, (rng.random(p.shape) < p).astype(float), blob
