"""Baselines every report shows: the best single model and a seeded random router."""

from __future__ import annotations

import hashlib

import numpy as np

from router.policy.propensity import weighted_means
from router.routers._common import column_means
from router.routers.base import BaseRouter


class BestSingleRouter(BaseRouter):
    """Predicts each model's training mean for every query: what a user deploys without a router.
    On partial feedback, the means are inverse-propensity weighted.

    ``exclude``: models that may not be the best single model (a new model whose few answers do not show it
    better than the others, ``router.evaluation.sparse.unproven``): predicted one below the lowest other mean.
    """

    supports_weights = True

    def __init__(self, exclude: list[int] | None = None):
        self.exclude = exclude

    def _fit(self, X, Y, C, mask, feedback=None) -> None:
        means = column_means(Y, mask) if feedback is None else weighted_means(Y, feedback.weights)
        self.means_ = exclude_models(means, self.exclude)

    def _predict_scores(self, X) -> np.ndarray:
        return np.broadcast_to(self.means_, (X.shape[0], self.n_models_)).copy()


def exclude_models(means: np.ndarray, exclude: list[int] | None) -> np.ndarray:
    """``means`` with the ``exclude`` models one below the lowest of the others (so never the argmax)."""
    if not exclude:
        return means
    out = np.asarray(means, dtype=np.float64).copy()
    others = np.delete(out, exclude)
    out[list(exclude)] = (np.nanmin(others) if len(others) else 0.0) - 1.0
    return out


class RandomRouter(BaseRouter):
    """Uniform random scores, keyed by (random_state, query features).

    Keying on the query's bytes rather than its position makes the choice for a query the same
    in every batch, so results do not depend on how the test set is chunked.
    """

    def __init__(self, random_state: int = 0):
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        pass

    def _predict_scores(self, X) -> np.ndarray:
        out = np.empty((X.shape[0], self.n_models_))
        for i, row in enumerate(np.ascontiguousarray(X)):
            key = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng([self.random_state, key]).random(self.n_models_)
        return out
