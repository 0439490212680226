"""``router probe``: the queries a new model should answer first, so that the next job learns the most about it.

A new model joins with no answers. Running it on the whole history costs as much as the history; a few hundred
well-chosen queries may do. ``choose_probes`` spreads N queries over the embedding space: a sample stratified
by k-means clusters, each cluster giving its share. A first design took, per cluster, the query the current
models disagree on most; measured (benchmarks/bench_probe.py), such queries are not representative and the
fit misjudged the new model's level, so the sample stays representative. ``random_probes`` is the baseline.
The chosen queries are written as canonical rows without a score; the user runs the new model on them, fills
``score`` (and ``cost``) and adds the file to the logs.
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
                  seed: int = 0, strata: int = 50) -> np.ndarray:
    """Sorted indices of ``n`` queries (not ``exclude``), a stratified sample: the queries' embeddings cut into
    ``strata`` k-means clusters, each giving its share of the ``n`` (by its size; the fractions rounded at
    random so that each query's chance is ``n`` over the pool's size), drawn at random inside it. Every region
    of the logs is covered in proportion, as a random sample covers it on average, without a random sample's
    chance of missing one; the sample stays representative, so a fit on the new model's answers learns its
    level as well as its differences."""
    from sklearn.cluster import KMeans

    pool = np.flatnonzero(~exclude) if exclude is not None else np.arange(data.n_queries)
    if n >= len(pool):
        return pool
    k = max(1, min(strata, n, len(pool)))
    labels = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(X[pool]).labels_
    sizes = np.bincount(labels, minlength=k)
    quota = sizes * n / len(pool)
    take = np.floor(quota).astype(int)
    rng = np.random.default_rng(seed)
    # Systematic rounding of the remainders: each cluster's expected take is its quota, so every query has the
    # chance n / len(pool), as in a uniform sample (the doubly robust evaluation relies on it).
    order = rng.permutation(k)
    edges = np.cumsum((quota - take)[order])
    u = rng.random()
    take[order] += (np.floor(edges - u + 1e-12) - np.floor(np.r_[0.0, edges[:-1]] - u + 1e-12)).astype(int)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False) for c, t in enumerate(take) if t]
    return np.sort(pool[np.concatenate(chosen)])


def random_probes(n: int, data: RoutingData, *, exclude: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` queries (not ``exclude``) drawn uniformly: the baseline."""
    pool = np.flatnonzero(~exclude) if exclude is not None else np.arange(data.n_queries)
    return np.sort(np.random.default_rng(seed).choice(pool, size=min(n, len(pool)), replace=False))


def answered_by(data: RoutingData, model: str) -> np.ndarray:
    """The queries ``model`` already has a score on (none when the logs do not know it)."""
    if model not in data.models:
        return np.zeros(data.n_queries, dtype=bool)
    return data.mask[:, data.models.index(model)].copy()


# What the job recovered of the gain of knowing every answer of a withheld model, with N of them (the models
# whose answers change routing on four research sets): benchmarks/RESULTS.md, section "probe".
MEASURED = "none with 50 or 100 answers (it held the model back), 100% with 200, 99% with 500"


def expectation(n: int, test_size: float, min_answers: int) -> str:
    """What the next job will do with ``n`` answers of the model: about ``n * (1 - test_size)`` land in the
    training split, against ``min_answers``; and what the benchmark measured."""
    k = int(round(n * (1 - test_size)))
    need = int(np.ceil(min_answers / (1 - test_size)))
    verdict = (f"under min_answers ({min_answers}): the next job will hold it back (it takes no traffic); "
               f"{need} answers would do" if k < min_answers else f"enough to route to it (min_answers {min_answers})")
    return (f"with them it has {n} answers, about {k} in the training split (test_size {test_size:g}): {verdict}. "
            f"On the research sets, of what knowing every answer gained, the job recovered {MEASURED} "
            "(benchmarks/RESULTS.md, section probe)")


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
