"""Off-policy evaluation: the value of a target routing policy, estimated from bandit logs.

A bandit log has, per query ``i``, the one model ``a_i`` the deployed (logging) policy served, the
reward ``r_i`` it earned, and the propensity ``p_i`` with which that policy picked it (the
``sample_choices`` propensity, logged at decision time). The target policy is given as
``target_probs`` (n, m): its probability of each model on each logged query (``policy_probabilities``,
or ``one_hot`` of a deterministic router's choices). Its value is the mean reward it would earn on
these queries, ``V = 1/n sum_i sum_m pi(m|x_i) R[i, m]``.

Assumptions: queries are independent draws, rewards depend only on the query and the model; ``p_i``
is the true probability the logging policy gave ``a_i`` (not a re-estimate); positivity: every model
the target may pick has logging probability > 0 on that query. The logs cannot check positivity (only
the logged model's propensity is kept): where it fails, IPS and SNIPS silently omit those models'
rewards; DR and DM fall back on ``q_hat`` there. A deterministic logging policy (exploration ``off``)
gives propensity 1 and supports only target policies that pick the same models.

Estimators (``w_i = pi(a_i|x_i) / p_i``, optionally clipped at ``clip``):

- IPS  ``1/n sum_i w_i r_i``: unbiased (unclipped) under the assumptions; high variance when ``p_i``
  is small.
- SNIPS ``sum_i w_i r_i / sum_i w_i``: self-normalised, slightly biased, consistent, lower variance
  and invariant to a constant shift of the rewards.
- DM   ``1/n sum_i sum_m pi(m|x_i) q_hat[i, m]``: the reward model's prediction; low variance, as
  biased as ``q_hat`` (it ignores the logged rewards).
- DR   ``DM + 1/n sum_i w_i (r_i - q_hat[i, a_i])``: unbiased when the propensities are right,
  whatever ``q_hat``; variance shrinks as ``q_hat`` approaches the true rewards.

Clipping the weights trades variance for a bias (downwards for non-negative rewards). Confidence
intervals are the percentile bootstrap over queries, which treats the queries as a sample from the
traffic (so for the value on the logged queries themselves it is, if anything, conservative).

Held-out values on the router's own traffic (``with_dr_values``): for a deterministic choice ``m``, the
doubly robust estimate of its reward on a bandit query is ``q_hat[m] + 1[m = a] / p * (r - q_hat[a])``
(``dr_terms`` with a one-hot target), ``q_hat`` a reward model fitted on the training split
(``reward_model``). Filling each bandit row with these pseudo-outcomes for every model turns it into a
complete row, and the mean over queries of the pseudo-outcome at a router's choice is exactly the DR
estimate of the router's value. So every held-out figure (quality, best single model, paired bootstrap
gate, champion comparison, cost curves) becomes the DR estimate without a second evaluation path. Only
the oracle is not estimable (the max over pseudo-outcomes is biased upwards): ``RoutingData.estimated``
marks those rows and the metrics leave the oracle and gap closed out when any is present.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from router.data.labels import RoutingData
from router.policy.propensity import IPS_CLIP, importance_weights, one_hot
from router.routers import RidgeRouter
from router.routers.unscored import fit_scored

_ROW_SUM_TOL = 1e-6
_BOOT_CELLS = 2_000_000  # resampled (query, term) cells per bootstrap batch: ~16 MB


@dataclass(frozen=True)
class Estimate:
    """A policy value with its bootstrap confidence interval, from ``n`` logged queries."""

    value: float
    lower: float
    upper: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------- validation

def _probs(target_probs, n: int | None = None) -> np.ndarray:
    probs = np.asarray(target_probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise ValueError(f"target_probs must be (n_queries, n_models) with n_models >= 1, got shape {probs.shape}")
    if n is not None and len(probs) != n:
        raise ValueError(f"target_probs has {len(probs)} rows for {n} logged queries")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError("target_probs must be finite and >= 0")
    sums = probs.sum(axis=1)
    if len(probs) and not np.allclose(sums, 1.0, rtol=0.0, atol=_ROW_SUM_TOL):
        bad = int(np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_TOL)[0])
        raise ValueError(f"target_probs rows must sum to 1; row {bad} sums to {sums[bad]:.9g}")
    return probs


def _q_hat(q_hat, shape: tuple[int, int]) -> np.ndarray:
    q = np.asarray(q_hat, dtype=np.float64)
    if q.shape != shape:
        raise ValueError(f"q_hat must have the shape of target_probs {shape}, got {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("q_hat contains NaN or infinite values")
    return q


def _check_log(actions, rewards, propensities, target_probs, clip):
    """Validated ``(actions int64, rewards, propensities, target_probs)`` of one bandit log."""
    acts = np.asarray(actions)
    if acts.ndim != 1:
        raise ValueError(f"actions must be 1-D (one logged model index per query), got shape {acts.shape}")
    n = len(acts)
    if n == 0:
        raise ValueError("off-policy evaluation needs at least one logged query")
    probs = _probs(target_probs, n)
    m = probs.shape[1]
    if acts.dtype.kind not in "iu":
        if acts.dtype.kind != "f" or not np.isfinite(acts).all() or (acts != np.round(acts)).any():
            raise ValueError(f"actions must be integer model indices, got dtype {acts.dtype}")
    acts = acts.astype(np.int64)
    if (acts < 0).any() or (acts >= m).any():
        raise ValueError(f"actions must be model indices in [0, {m - 1}], got values in "
                         f"[{acts.min()}, {acts.max()}]")
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (n,):
        raise ValueError(f"rewards must have shape ({n},), got {r.shape}")
    if np.isnan(r).any():
        raise ValueError(f"rewards contain NaN ({int(np.isnan(r).sum())} of {n}): drop those queries or "
                         "score them first")
    if not np.isfinite(r).all():
        raise ValueError("rewards contain infinite values")
    p = np.asarray(propensities, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"propensities must have shape ({n},), got {p.shape}")
    if not np.isfinite(p).all() or (p <= 0).any() or (p > 1.0 + 1e-9).any():
        raise ValueError("propensities must be logging probabilities in (0, 1], got values in "
                         f"[{np.nanmin(p):.6g}, {np.nanmax(p):.6g}]")
    if clip is not None and not (np.isfinite(clip) and clip > 0):
        raise ValueError(f"clip must be None or a finite number > 0, got {clip!r}")
    return acts, r, np.minimum(p, 1.0), probs


# ------------------------------------------------------------------------------------- estimators

def ips_terms(actions, rewards, propensities, target_probs, clip: float | None = None) -> np.ndarray:
    """(n,) inverse propensity terms ``w_i r_i``, ``w_i = min(pi(a_i|x_i) / p_i, clip)``; IPS is their mean."""
    acts, r, p, probs = _check_log(actions, rewards, propensities, target_probs, clip)
    return importance_weights(acts, p, probs, clip) * r


def snips(actions, rewards, propensities, target_probs, clip: float | None = None) -> float:
    """Self-normalised IPS, ``sum_i w_i r_i / sum_i w_i``; NaN when the target gives every logged model
    probability 0 (no logged query tells anything about it)."""
    acts, r, p, probs = _check_log(actions, rewards, propensities, target_probs, clip)
    w = importance_weights(acts, p, probs, clip)
    total = w.sum()
    return float((w * r).sum() / total) if total > 0 else float("nan")


def dm_terms(target_probs, q_hat) -> np.ndarray:
    """(n,) direct-method terms ``sum_m pi(m|x_i) q_hat[i, m]``: the reward model's value of the target."""
    probs = _probs(target_probs)
    return (probs * _q_hat(q_hat, probs.shape)).sum(axis=1)


def dr_terms(actions, rewards, propensities, target_probs, q_hat, clip: float | None = None) -> np.ndarray:
    """(n,) doubly robust terms ``sum_m pi(m|x_i) q_hat[i, m] + w_i (r_i - q_hat[i, a_i])``."""
    acts, r, p, probs = _check_log(actions, rewards, propensities, target_probs, clip)
    q = _q_hat(q_hat, probs.shape)
    rows = np.arange(len(acts))
    return (probs * q).sum(axis=1) + importance_weights(acts, p, probs, clip) * (r - q[rows, acts])


def off_policy_estimates(actions, rewards, propensities, target_probs, q_hat=None,
                         clip: float | None = None, n_boot: int = 1000, level: float = 0.95,
                         seed=0) -> dict[str, Estimate]:
    """IPS, SNIPS and, given ``q_hat`` (n, m) predicted rewards, DR and DM, each with a ``level``
    percentile-bootstrap interval over queries.

    All estimators share the same ``n_boot`` resamples of the queries (SNIPS resampled as the ratio
    of its two sums), drawn from ``np.random.default_rng(seed)``: the same inputs and seed give the
    same intervals. ``n_boot=0`` skips the bootstrap (bounds NaN). A resample in which SNIPS is
    undefined (all weights 0) is left out of its interval.
    """
    acts, r, p, probs = _check_log(actions, rewards, propensities, target_probs, clip)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    n = len(acts)
    w = importance_weights(acts, p, probs, clip)
    # columns: sums the estimators are means or ratios of
    names = ["ips", "snips_num", "snips_den"]
    cols = [w * r, w * r, w]
    if q_hat is not None:
        q = _q_hat(q_hat, probs.shape)
        dm = (probs * q).sum(axis=1)
        names += ["dr", "dm"]
        cols += [dm + w * (r - q[np.arange(n), acts]), dm]
    table = np.column_stack(cols)

    def values(sums: np.ndarray) -> dict[str, np.ndarray]:  # sums (..., k) -> estimator values
        out = {"ips": sums[..., 0] / n}
        with np.errstate(divide="ignore", invalid="ignore"):
            out["snips"] = np.where(sums[..., 2] > 0, sums[..., 1] / sums[..., 2], np.nan)
        if q_hat is not None:
            out["dr"], out["dm"] = sums[..., 3] / n, sums[..., 4] / n
        return out

    point = values(table.sum(axis=0))
    boot = {key: np.empty(n_boot) for key in point}
    if n_boot:
        rng = np.random.default_rng(seed)
        batch = max(1, min(n_boot, _BOOT_CELLS // (n * table.shape[1])))
        for start in range(0, n_boot, batch):
            stop = min(n_boot, start + batch)
            idx = rng.integers(0, n, size=(stop - start, n))
            for key, val in values(table[idx].sum(axis=1)).items():
                boot[key][start:stop] = val
    alpha = (1.0 - level) / 2.0
    result = {}
    for key, value in point.items():
        draws = boot[key][np.isfinite(boot[key])]
        lo, hi = np.quantile(draws, [alpha, 1.0 - alpha]) if draws.size else (np.nan, np.nan)
        result[key] = Estimate(value=float(value), lower=float(lo), upper=float(hi), n=n)
    return result


# ------------------------------------------------------------------ held-out values on bandit rows
def reward_model(X: np.ndarray, data: RoutingData):
    """``q_hat``: a ridge reward model of every model's score fitted on ``data`` (bandit rows count as the
    logged model's score; alpha chosen by its CV on the IPS value of the routing)."""
    return fit_scored(RidgeRouter(), X, data.scores, data.costs, data.mask, propensities=data.propensities)


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
