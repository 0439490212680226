"""Held-out values on the router's own traffic: bandit queries as doubly robust pseudo-outcomes.

A query the deployed router logged has one scored model ``a`` (chosen with propensity ``p``, reward
``r``). For a deterministic choice ``m``, the doubly robust estimate of its reward on that query is
``q_hat[m] + 1[m = a] / p * (r - q_hat[a])`` (``ope.dr_terms`` with a one-hot target): ``q_hat`` is a
reward model fitted on the training split (``reward_model``). Filling each bandit row
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
from router.evaluation.ope import IPS_CLIP, Estimate, dr_terms, off_policy_estimates, one_hot


def reward_model(X: np.ndarray, data: RoutingData):
    """``q_hat``: a ridge reward model of every model's score fitted on ``data`` (bandit rows count as the
    logged model's score; alpha chosen by its CV on the IPS value of the routing)."""
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


def with_dr_values(data: RoutingData, X: np.ndarray, fit_data: RoutingData, X_fit: np.ndarray
                   ) -> tuple[RoutingData, np.ndarray | None]:
    """``data`` with its bandit rows as DR pseudo-outcomes, and the reward model's predictions for ``data``
    (fitted on ``fit_data``, never on ``data`` itself); ``(data, None)`` when it has no bandit row."""
    if not data.is_bandit.any():
        return data, None
    q_hat = reward_model(X_fit, fit_data).predict_scores(X)
    return dr_pseudo_outcomes(data, q_hat), q_hat


def estimates_by_router(logged: RoutingData, q_hat: np.ndarray, choices: dict[str, np.ndarray], *,
                        n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Estimate]]:
    """IPS, SNIPS, DR and DM estimates (bootstrap CIs) of each router's value on the bandit rows of
    ``logged`` (the held-out logs as logged); ``choices``: router -> its choice per row of ``logged``."""
    rows = np.flatnonzero(logged.is_bandit)
    actions = logged.mask[rows].argmax(axis=1)
    rewards = logged.scores[rows, actions]
    propensities = logged.propensities[rows, actions]
    return {name: off_policy_estimates(actions, rewards, propensities, one_hot(picks[rows], logged.n_models),
                                       q_hat=q_hat[rows], n_boot=n_boot, seed=seed)
            for name, picks in choices.items()}
