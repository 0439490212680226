"""Propensities and the weights built from them: learning from, and evaluating on, a router's own traffic.

A query the deployed router logged has one scored model, chosen with a known propensity ``p``. Fits
weight such cells by ``min(1 / p, IPS_CLIP)`` (``partial_feedback``), off-policy estimates weight a
logged reward by ``pi(a|x) / p`` (``importance_weights``), and a deterministic router is the policy
``one_hot`` of its choices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IPS_CLIP = 20.0  # largest inverse-propensity weight: a 1-in-100 exploration draw counts as 20 answers, not 100


@dataclass(frozen=True)
class Feedback:
    """Partial (bandit) feedback in a fit: a query the deployed router logged has one scored model, chosen
    with a known propensity p. ``weights`` (n, m): 1 on fully logged cells, min(1 / p, ``IPS_CLIP``) on
    bandit cells, 0 where unobserved, then scaled to mean 1 over each model's scored cells: regressions
    weighted by them see every model's queries as the full
    query distribution, not as the deployed router sent them. ``scoring_Y`` / ``scoring_mask``: what a
    family's own CV scores routing quality on: the fully logged rows when there are any (bandit rows
    left out: with the mask alone only their logged model could compete); on bandit rows alone, their
    inverse-propensity pseudo-outcomes (1[m = logged] * score * min(1 / p, clip) for every model m, all
    observed), so routing quality is the clipped IPS estimate of the choice's value."""

    weights: np.ndarray
    scoring_Y: np.ndarray
    scoring_mask: np.ndarray
    n_bandit: int


def bandit_rows(mask: np.ndarray, propensities: np.ndarray) -> np.ndarray:
    """(n,) bool: queries with exactly one scored model whose propensity was logged (bandit feedback)."""
    return (mask.sum(axis=1) == 1) & (mask & np.isfinite(propensities)).any(axis=1)


def partial_feedback(Y: np.ndarray, mask: np.ndarray, propensities, clip: float = IPS_CLIP) -> Feedback | None:
    """The ``Feedback`` of logs with ``propensities`` (n, m; NaN where none was logged), or None when no
    query is bandit feedback (exactly one scored model, with a propensity)."""
    P = np.asarray(propensities, dtype=np.float64)
    if P.shape != Y.shape:
        raise ValueError(f"propensities must have the shape of Y {Y.shape}, got {P.shape}")
    bandit = bandit_rows(mask, P)
    if not bandit.any():
        return None
    cells = bandit[:, None] & mask & np.isfinite(P)
    p = np.where(cells, P, 1.0)
    if ((p <= 0) | (p > 1)).any():
        raise ValueError("propensities must be in (0, 1]")
    inv = np.minimum(1.0 / p, clip)
    weights = np.where(mask, np.where(cells, inv, 1.0), 0.0)
    # Mean 1 over each model's scored cells: relative weights are all IPS needs (weighted means are
    # self-normalised), and a regulariser or a prior keeps the strength it has on unweighted logs.
    weights = weights / np.where(mask.any(axis=0), weights.sum(axis=0) / np.maximum(mask.sum(axis=0), 1), 1.0)
    if not bandit.all():
        # Fully logged rows grade the routing exactly; IPS values of the bandit rows would only add noise
        # (unclipped: 1 / p ~ 270 for an epsilon 0.1 draw among 27 models; measured, it cost more than it gave)
        # or bias (clipped: every choice but the deployed router's undervalued).
        scoring_Y, scoring_mask = Y, mask & ~bandit[:, None]
    else:  # the router's own traffic alone: clipped IPS values, biased towards the deployed router's choices
        scoring_Y = np.where(cells, np.nan_to_num(Y) * inv, 0.0)
        scoring_mask = np.ones_like(mask)
    return Feedback(weights=weights, scoring_Y=scoring_Y, scoring_mask=scoring_mask, n_bandit=int(bandit.sum()))


def weighted_means(Y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-model weighted mean of Y over cells with weight > 0 (0 for a model without any)."""
    total = weights.sum(axis=0)
    return (np.where(weights > 0, Y, 0.0) * weights).sum(axis=0) / np.where(total > 0, total, 1.0)


def one_hot(choices, n_models: int) -> np.ndarray:
    """(n, n_models) float64 target probabilities of a deterministic policy: 1 at each query's choice."""
    c = np.asarray(choices)
    if c.ndim != 1 or (len(c) and c.dtype.kind not in "iu"):
        raise ValueError(f"choices must be 1-D integer model indices, got shape {c.shape}, dtype {c.dtype}")
    if int(n_models) < 1 or (len(c) and (c.min() < 0 or c.max() >= n_models)):
        raise ValueError(f"choices must be model indices in [0, {int(n_models) - 1}]")
    out = np.zeros((len(c), int(n_models)))
    out[np.arange(len(c)), c] = 1.0
    return out


def importance_weights(actions: np.ndarray, propensities: np.ndarray, target_probs: np.ndarray,
                       clip: float | None = None) -> np.ndarray:
    """(n,) ``pi(a_i|x_i) / p_i``, at most ``clip``: how much each logged reward counts for the target policy."""
    w = target_probs[np.arange(len(actions)), actions] / propensities
    return w if clip is None else np.minimum(w, clip)
