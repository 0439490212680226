"""Small helpers shared by the router families: the routing score, target and feature shaping."""

from __future__ import annotations

import numpy as np

from router.policy.rule import choose


def routed_scores(Y: np.ndarray, mask: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Per query, the observed score of the model the decision rule picks from predictions S.

    Only observed models compete: with partial logs we cannot grade an unobserved choice. No
    costs are at hand, so ties go to the lower index. NaN for queries with no observed score.
    """
    out = np.full(len(Y), np.nan)
    rows = mask.any(axis=1)
    if rows.any():
        pick = choose(S[rows], np.zeros(Y.shape[1]), allowed=mask[rows])
        out[rows] = Y[np.flatnonzero(rows), pick]
    return out


def observed_mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of per-query values over the queries with an observed score (NaN if there are none)."""
    rows = mask.any(axis=1)
    return float(values[rows].mean()) if rows.any() else float("nan")


def routing_quality(Y: np.ndarray, mask: np.ndarray, S: np.ndarray) -> float:
    """Mean observed score of the model each query would be routed to (``routed_scores``)."""
    return observed_mean(routed_scores(Y, mask, S), mask)


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


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, overflow-free (scipy's ``expit`` without importing scipy at serving)."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64)))


def softmax(z: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax along ``axis``, shifted by the maximum for stability."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def rank_rows(S: np.ndarray) -> np.ndarray:
    """Per-query ranks scaled to [0, 1] (ties share the average rank, as ``scipy.stats.rankdata``)."""
    # Average rank = (#smaller + #smaller-or-equal + 1) / 2, 1-based; m is small, so pairwise is cheap.
    below = (S[:, None, :] < S[:, :, None]).sum(axis=2)
    at_most = (S[:, None, :] <= S[:, :, None]).sum(axis=2)
    return (below + at_most - 1) / 2 / max(S.shape[1] - 1, 1)


def check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def as_grid(value) -> tuple:
    """A parameter given as one value or a tuple/list of candidates, as a tuple of candidates."""
    grid = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not grid:
        raise ValueError("an empty tuple of candidates was given")
    return grid


# Rows per block wherever a head works through many queries: a float64 copy of 700,000 x 384 features
# is 2 GB, a block of 65,536 rows 200 MB.
ROW_BLOCK = 65_536


def row_blocks(n: int) -> list[slice]:
    """Consecutive slices of at most ``ROW_BLOCK`` rows covering ``range(n)`` (one empty slice for n = 0)."""
    return [slice(lo, lo + ROW_BLOCK) for lo in range(0, max(n, 1), ROW_BLOCK)]


def standardise_stats(X) -> tuple[np.ndarray, float]:
    """Feature means and one global scale: unit average variance for the optimiser, while keeping
    the embedding's geometry (per-feature scaling would blow up near-constant dimensions)."""
    mean = X.mean(axis=0).astype(np.float64)
    squares = sum(float(((X[b] - mean) ** 2).sum()) for b in row_blocks(len(X)))
    return mean, float(max(np.sqrt(squares / max(X.size, 1)), 1e-12))


def standardise(X, mean: np.ndarray, scale: float) -> np.ndarray:
    """X centred and scaled by ``standardise_stats``, in float32 (what the optimisers run in)."""
    out = np.empty(np.shape(X), dtype=np.float32)
    for b in row_blocks(len(out)):
        out[b] = (X[b] - mean) / scale
    return out


def affine(X, W) -> np.ndarray:
    """X @ W[:-1] + W[-1]: stacked (d + 1, k) weights whose last row is the bias."""
    return X @ W[:-1] + W[-1]


def unit_rows(X, dtype=np.float32) -> np.ndarray:
    """Rows of X scaled to unit L2 norm (a zero row stays zero), in ``dtype``."""
    X = np.asarray(X, dtype=dtype)
    return (X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)).astype(dtype, copy=False)


def group_stats(labels: np.ndarray, Yz: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (group, model): sum of observed scores (``Yz`` is 0 where unobserved) and their count."""
    onehot = np.zeros((len(labels), k))
    onehot[np.arange(len(labels)), labels] = 1.0
    return onehot.T @ Yz, onehot.T @ mask.astype(np.float64)


def shrunk_means(sums: np.ndarray, counts: np.ndarray, prior: np.ndarray, shrink: float) -> np.ndarray:
    """(sum + shrink * prior) / (count + shrink); the prior itself where a group saw no score."""
    den = counts + shrink
    return np.where(den > 0, (sums + shrink * prior) / np.where(den > 0, den, 1.0), prior)

