"""Small helpers shared by the router families: CV folds, the routing score, target shaping."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold


def routing_quality(Y: np.ndarray, mask: np.ndarray, S: np.ndarray) -> float:
    """Mean observed score of the model each row would be routed to (argmax of S).

    Only observed models compete: with partial logs we cannot grade an unobserved choice.
    Rows with no observed score are skipped.
    """
    S = np.where(mask, S, -np.inf)
    rows = mask.any(axis=1)
    pick = np.argmax(S[rows], axis=1)
    return float(Y[rows][np.arange(rows.sum()), pick].mean()) if rows.any() else float("nan")


def folds(n: int, n_splits: int, random_state: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K-fold (train, validation) index pairs over queries."""
    if n_splits < 2:
        raise ValueError(f"cv must be >= 2 folds, got {n_splits}")
    if n < n_splits:
        raise ValueError(f"cross-validation needs at least cv={n_splits} queries, got {n}")
    return list(KFold(n_splits, shuffle=True, random_state=random_state).split(np.arange(n)))


def column_means(Y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=0)
    return np.where(mask, Y, 0.0).sum(axis=0) / np.maximum(counts, 1)


def row_centre(Y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Y minus each query's mean observed score: removes query difficulty, which no choice can change."""
    counts = mask.sum(axis=1, keepdims=True)
    means = np.where(mask, Y, 0.0).sum(axis=1, keepdims=True) / np.maximum(counts, 1)
    return np.where(mask, Y - means, np.nan)


def zscore_rows(S: np.ndarray) -> np.ndarray:
    """Per-query standardised predictions: puts heads with different scales on one footing."""
    S = S - S.mean(axis=1, keepdims=True)
    return S / np.maximum(S.std(axis=1, keepdims=True), 1e-12)


def rank_rows(S: np.ndarray) -> np.ndarray:
    """Per-query ranks scaled to [0, 1] (ties share the average rank)."""
    from scipy.stats import rankdata

    return (rankdata(S, axis=1) - 1) / max(S.shape[1] - 1, 1)


def pick_best(results: dict):
    """The grid point with the highest mean CV score (the first one wins ties: order grids by preference)."""
    return max(results, key=results.__getitem__)


def check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def as_grid(value) -> tuple:
    """A parameter given as one value or a tuple/list of candidates, as a tuple of candidates."""
    grid = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not grid:
        raise ValueError("an empty tuple of candidates was given")
    return grid
