"""Optional extra features built beside the embeddings (routers themselves only see arrays)."""

from __future__ import annotations

import numpy as np


class TaskOneHot:
    """One-hot of a per-query task tag, appended to the embeddings by ``transform``.

    ``scale`` sets the one-hot's weight relative to unit-norm embeddings (it matters for the
    L2-penalised and distance-based heads). Tasks unseen at fit time get an all-zero block, so
    serving never fails on a new tag.
    """

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def fit(self, tasks) -> TaskOneHot:
        self.categories_ = np.unique(np.asarray(tasks, dtype=str))
        return self

    def encode(self, tasks) -> np.ndarray:
        tasks = np.asarray(tasks, dtype=str)
        return (tasks[:, None] == self.categories_[None, :]).astype(np.float32) * self.scale

    def transform(self, X, tasks) -> np.ndarray:
        if len(X) != len(tasks):
            raise ValueError(f"X has {len(X)} rows but tasks has {len(tasks)}")
        return np.hstack([np.asarray(X, dtype=np.float32), self.encode(tasks)])
