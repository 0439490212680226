"""``router probe``: the queries a new model should answer first, so that the next job learns the most about it.

A new model joins with no answers. Running it on the whole history costs as much as the history; a few hundred
well-chosen queries may do. ``choose_probes`` spreads N queries over the embedding space (k-means into N
clusters) and, inside each cluster, takes the query on which the current models disagree most: where every
model scores the same, a new model's answer changes no routing decision. ``random_probes`` is the baseline a
benchmark compares it with. The chosen queries are written as canonical rows without a score; the user runs the
new model on them, fills ``score`` (and ``cost``) and adds the file to the logs.
"""

from __future__ import annotations

import json

import numpy as np

from router.data.labels import RoutingData
from router.io import write_text_atomic


def disagreement(data: RoutingData) -> np.ndarray:
    """Per query, the variance of the scores the current models got on it (0 with fewer than two scored)."""
    scored = data.mask.sum(axis=1)
    Y = np.where(data.mask, data.scores, 0.0)
    mean = Y.sum(axis=1) / np.maximum(scored, 1)
    var = (np.where(data.mask, (data.scores - mean[:, None]) ** 2, 0.0)).sum(axis=1) / np.maximum(scored, 1)
    return np.where(scored >= 2, var, 0.0)


def choose_probes(X: np.ndarray, data: RoutingData, n: int, *, exclude: np.ndarray | None = None,
                  seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` queries (not ``exclude``): one per k-means cluster of their embeddings, the one
    the current models disagree on most (ties: the one nearest its cluster's centre)."""
    from sklearn.cluster import KMeans

    pool = np.flatnonzero(~exclude) if exclude is not None else np.arange(data.n_queries)
    if n >= len(pool):
        return pool
    km = KMeans(n_clusters=n, n_init=1, random_state=seed).fit(X[pool])
    spread = disagreement(data)[pool]
    distance = np.linalg.norm(X[pool] - km.cluster_centers_[km.labels_], axis=1)
    order = np.lexsort((distance, -spread, km.labels_))  # per cluster: most disagreement, then nearest
    first = order[np.r_[True, km.labels_[order][1:] != km.labels_[order][:-1]]]
    chosen = set(pool[first].tolist())
    if len(chosen) < n:  # a cluster k-means left empty: the most disputed queries left fill in
        rest = [i for i in pool[np.argsort(-spread, kind="stable")] if i not in chosen]
        chosen.update(rest[: n - len(chosen)])
    return np.array(sorted(chosen))


def random_probes(n: int, data: RoutingData, *, exclude: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` queries (not ``exclude``) drawn uniformly: the baseline."""
    pool = np.flatnonzero(~exclude) if exclude is not None else np.arange(data.n_queries)
    return np.sort(np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False))


def answered_by(data: RoutingData, model: str) -> np.ndarray:
    """The queries ``model`` already has a score on (none when the logs do not know it)."""
    if model not in data.models:
        return np.zeros(data.n_queries, dtype=bool)
    return data.mask[:, data.models.index(model)].copy()


def write_probes(path, data: RoutingData, rows: np.ndarray, model: str) -> None:
    """Canonical rows for ``model`` on ``rows``, ``score`` and ``cost`` empty for the user to fill (JSONL)."""
    lines = []
    for i in rows:
        record = {"query_id": str(data.query_ids[i]), "prompt": str(data.prompts[i]), "model": model,
                  "score": None, "cost": None}
        if data.tasks is not None and data.tasks[i] is not None:
            record["task"] = str(data.tasks[i])
        lines.append(json.dumps(record, ensure_ascii=False))
    write_text_atomic(path, "\n".join(lines) + "\n")
