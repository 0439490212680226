"""The hyper-parameter search every family shares: K-fold CV over a grid, scored by routing quality."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

import numpy as np

from router.routers._common import observed_mean, routed_scores, routing_quality

FoldPredictions = Callable[[np.ndarray, np.ndarray], Iterable[np.ndarray]]


def folds(n: int, n_splits: int, random_state: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold (train, validation) index pairs over queries."""
    if n_splits < 2:
        raise ValueError(f"cv must be >= 2 folds, got {n_splits}")
    if n < n_splits:
        raise ValueError(f"cross-validation needs at least cv={n_splits} queries, got {n}")
    from sklearn.model_selection import KFold  # training only: serving never imports sklearn

    return list(KFold(n_splits, shuffle=True, random_state=random_state).split(np.arange(n)))


def cv_search(
    grid: Sequence[Hashable],
    fold_predictions: FoldPredictions,
    Y: np.ndarray,
    mask: np.ndarray,
    cv: int,
    random_state: int | None,
    *,
    pooled: bool = False,
) -> tuple[Hashable, dict]:
    """The grid point with the best ``cv``-fold routing quality, and every point's score.

    ``grid``: candidates ordered by preference (the first wins ties). ``fold_predictions(tr, va)``
    fits on rows ``tr`` and yields, for each grid point in order, predicted scores for rows ``va``:
    one call per fold, so work shared by the grid (neighbours, a warm-started or closed-form
    regularisation path) is done once per fold, and a generator holds one prediction at a time.
    A point's score is the mean over folds of ``routing_quality`` on the validation rows; with
    ``pooled``, the routing quality of all its out-of-fold predictions at once. Returns
    ``(best, cv_results)`` with ``cv_results`` in grid order; a single candidate is returned
    without CV, with empty results.
    """
    grid = list(grid)
    if len(grid) == 1:
        return grid[0], {}
    per_fold = {g: [] for g in grid}
    # Pooled: each query's routed score, so the result is exactly routing quality on all rows.
    picked = {g: np.full(len(Y), np.nan) for g in grid} if pooled else None
    for tr, va in folds(len(Y), cv, random_state):
        for g, S in zip(grid, fold_predictions(tr, va), strict=True):
            if pooled:
                picked[g][va] = routed_scores(Y[va], mask[va], S)
            else:
                per_fold[g].append(routing_quality(Y[va], mask[va], S))
    if pooled:
        results = {g: observed_mean(p, mask) for g, p in picked.items()}
    else:
        results = {g: float(np.mean(q)) for g, q in per_fold.items()}
    return max(results, key=results.__getitem__), results
