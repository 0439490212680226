"""A router's operating curve on its calibration queries: spend and quality of the rule's choices as lambda grows.

The exact lambdas where the spend steps down come from ``rule.switch_points``; they are thinned to
``CURVE_POINTS`` even steps of spend (plus a given budget's own step), and each kept point is measured
with ``choose`` itself: its mean $ per query and, given the queries' true scores, its mean quality and
the standard error of its per-query gain over a reference model (the best single model). A budget reads
the smallest lambda within it (``lam_for``); a savings target the cheapest point whose quality, less
``z`` standard errors, stays within a margin of the reference's (``cheapest_within``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from router.policy.rule import check_scores, choose, switch_points

CURVE_POINTS = 200  # even steps of spend kept on a curve (plus its ends and the calibrated budget)


@dataclass(frozen=True)
class OperatingCurve:
    """``cost[k]``: the mean $ per query at ``lam[k]`` (``lam`` increasing from 0; spend never rises with it);
    ``quality[k]``: the mean true score of the choices on the calibration queries scored by every model, and
    ``gain_se[k]`` the standard error of their per-query gain over the reference model (None: not measured)."""

    lam: tuple[float, ...]
    cost: tuple[float, ...]
    quality: tuple[float, ...] | None = None
    gain_se: tuple[float, ...] | None = None

    @classmethod
    def measure(cls, pred_scores, model_costs, budget: float | None = None, points: int = CURVE_POINTS,
                scores: np.ndarray | None = None, reference: int | None = None) -> OperatingCurve:
        """The curve of ``pred_scores`` under ``model_costs``; with the queries' true ``scores`` (NaN where
        unscored) and a ``reference`` model index, its quality and gain over the reference too."""
        pred, costs = check_scores(pred_scores, model_costs)
        if not len(pred):
            raise ValueError("calibration needs at least one query")
        lams, deltas = switch_points(pred, costs)
        order = np.argsort(lams, kind="stable")
        lams = np.concatenate([[0.0], lams[order]])
        spend = costs[choose(pred, costs, 0.0)].mean() + np.concatenate([[0.0], np.cumsum(deltas[order])]) / len(pred)
        levels = np.linspace(spend[0], spend[-1], points)
        keep = {0, len(lams) - 1, *np.searchsorted(-spend, -levels, side="left").tolist()}
        if budget is not None and (spend <= budget).any():
            keep.add(int(np.flatnonzero(spend <= budget)[0]))
        kept = np.unique(lams[sorted(i for i in keep if i < len(lams))])
        # A switch sits exactly where two utilities tie; a hair past it the cheaper model wins for sure.
        kept = np.where(kept > 0, kept * (1 + 1e-9), 0.0)
        picks = [choose(pred, costs, lam) for lam in kept]
        curve = cls(lam=tuple(float(x) for x in kept), cost=tuple(float(costs[c].mean()) for c in picks))
        if scores is None or reference is None:
            return curve
        return curve._with_quality(picks, np.asarray(scores, dtype=np.float64), reference)

    def _with_quality(self, picks: list[np.ndarray], scores: np.ndarray, reference: int) -> OperatingCurve:
        rows = np.flatnonzero(np.isfinite(scores).all(axis=1))  # quality is graded where every model was scored
        if not len(rows):
            return self
        quality, gain_se = [], []
        for c in picks:
            got = scores[rows, c[rows]]
            gain = got - scores[rows, reference]
            quality.append(float(got.mean()))
            gain_se.append(float(gain.std(ddof=1) / math.sqrt(len(rows))) if len(rows) > 1 else math.inf)
        return OperatingCurve(self.lam, self.cost, tuple(quality), tuple(gain_se))

    @property
    def reachable(self) -> tuple[float, float]:
        """The lowest and highest spend on the curve."""
        return min(self.cost), max(self.cost)

    def lam_for(self, budget: float) -> tuple[float, bool]:
        """``(lambda, met)``: the smallest lambda whose spend is within ``budget``; when none is, the
        largest lambda (the cheapest routing) and ``met=False``."""
        within = [lam for lam, cost in zip(self.lam, self.cost) if cost <= budget]
        return (min(within), True) if within else (max(self.lam), False)

    def cheapest_within(self, reference_quality: float, margin: float, z: float) -> int | None:
        """Index of the cheapest point whose quality less ``z`` standard errors of its gain is at least the
        reference's less ``margin`` of it (ties: the smaller lambda); None when no point is, or unmeasured."""
        if self.quality is None or self.gain_se is None:
            return None
        floor = reference_quality - margin * abs(reference_quality)
        ok = [k for k in range(len(self.lam)) if self.quality[k] - z * self.gain_se[k] >= floor]
        return min(ok, key=lambda k: (self.cost[k], self.lam[k])) if ok else None

    def to_dict(self) -> dict:
        out = {"lam": list(self.lam), "cost": list(self.cost)}
        if self.quality is not None:
            out.update(quality=list(self.quality), gain_se=[x if math.isfinite(x) else None for x in self.gain_se])
        return out

    @classmethod
    def from_dict(cls, raw: dict) -> OperatingCurve:
        floats = lambda key: None if raw.get(key) is None else tuple(  # noqa: E731
            math.inf if x is None else float(x) for x in raw[key])
        return cls(lam=floats("lam"), cost=floats("cost"), quality=floats("quality"), gain_se=floats("gain_se"))
