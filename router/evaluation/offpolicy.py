"""Held-out values on the router's own traffic: bandit queries as doubly robust pseudo-outcomes.

A query the deployed router logged has one scored model ``a`` (chosen with propensity ``p``, reward
``r``). For a deterministic choice ``m``, the doubly robust estimate of its reward on that query is
``q_hat[m] + 1[m = a] / p * (r - q_hat[a])`` (``ope.dr_terms`` with a one-hot target): ``q_hat`` is a
reward model fitted on the training split with inverse-propensity weights. Filling each bandit row
with these pseudo-outcomes for every model turns it into a complete row, and the mean over queries
of the pseudo-outcome at a router's choice is exactly the DR estimate of the router's value. So
every held-out figure (quality, best single model, paired bootstrap gate, champion comparison, cost
curves) becomes the DR estimate without a second evaluation path. Only the oracle is not estimable
(the max over pseudo-outcomes is biased upwards): ``RoutingData.estimated`` marks those rows and the
metrics leave the oracle and gap closed out when any is present.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from router.data.labels import RoutingData
from router.evaluation.ope import IPS_CLIP, dr_terms, one_hot


def reward_model(X: np.ndarray, data: RoutingData):
    """``q_hat``: a ridge reward model of every model's score, fitted on ``data`` with inverse-propensity
    weights on its bandit rows (alpha chosen by its CV on the IPS value)."""
    from router.routers import RidgeRouter

    return RidgeRouter().fit(X, data.scores, data.costs, data.mask, propensities=data.propensities)


def dr_pseudo_outcomes(data: RoutingData, q_hat: np.ndarray, clip: float = IPS_CLIP) -> RoutingData:
    """``data`` with every bandit row's scores replaced by the DR pseudo-outcome of each model (all marked
    scored, the rows flagged in ``estimated``); other rows unchanged. ``q_hat``: (n, m) reward-model
    predictions for ``data``'s queries. Costs stay as logged (a model's mean cost stands in elsewhere)."""
    rows = data.is_bandit
    if not rows.any():
        return data
    q_hat = np.asarray(q_hat, dtype=np.float64)
    if q_hat.shape != data.scores.shape:
        raise ValueError(f"q_hat must have shape {data.scores.shape}, got {q_hat.shape}")
    idx = np.flatnonzero(rows)
    actions = data.mask[idx].argmax(axis=1)
    rewards = data.scores[idx, actions]
    propensities = data.propensities[idx, actions]
    m = data.n_models
    pseudo = np.column_stack([
        dr_terms(actions, rewards, propensities, one_hot(np.full(len(idx), j), m), q_hat[idx], clip=clip)
        for j in range(m)])
    scores, mask = data.scores.copy(), data.mask.copy()
    scores[idx], mask[idx] = pseudo, True
    estimated = rows if data.estimated is None else data.estimated | rows
    return replace(data, scores=scores, mask=mask, estimated=estimated)


def with_dr_values(data: RoutingData, X: np.ndarray, fit_data: RoutingData, X_fit: np.ndarray) -> RoutingData:
    """``data`` with its bandit rows as DR pseudo-outcomes, the reward model fitted on ``fit_data`` (never
    on ``data`` itself); ``data`` unchanged when it has no bandit row."""
    if not data.is_bandit.any():
        return data
    return dr_pseudo_outcomes(data, reward_model(X_fit, fit_data).predict_scores(X))
