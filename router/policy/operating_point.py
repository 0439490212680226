"""Operating points: where a router runs the decision rule, and the one resolver from a user's setting.

A user asks for a ``Setting``: a cost weight ``lam``, a ``budget`` ($ per query) or a ``share`` of the
calls to one model (or nothing: the router's default). ``resolve`` turns it into an ``OperatingPoint``
(lambda, per-model bias, and what it was calibrated for) from a ``Calibration``: measurements of the
router's out-of-fold predictions on training queries, made once by ``calibrate`` and stored in the
export as data. The job, ``router.load(...).route(...)``, the MLflow pyfunc and the gateway all call
``resolve`` on the same ``Calibration``, so a budget gives the same lambda wherever it is asked.

- budget: the smallest lambda on the ``SpendCurve`` whose spend is within it (the best quality that
  fits); the curve holds the exact lambdas where the spend steps down, thinned to ``CURVE_POINTS`` even
  steps of spend plus the job's own budget, with the spend the rule really has there;
- share: a bias ``b`` on one model sends it exactly the queries whose *margin* (the best other utility
  minus its own) is below ``b``, so the margins' ``s``-quantile sends it a share ``s`` (RouteLLM's
  threshold, for any number of models, costs or none); measured at the calibration's own lambda.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from router.policy.rule import check_scores, choose, switch_points

SHARE_LEVELS = np.linspace(0.0, 1.0, 101)  # the quantiles of the margins kept for serving
CURVE_POINTS = 200  # even steps of spend kept on a curve (plus its ends and the calibrated budget)


@dataclass(frozen=True)
class Setting:
    """What a user asks of the rule: at most one of ``lam``, ``budget`` ($/query) or ``share``
    (``{model: fraction}``); none of them means the router's calibrated default."""

    lam: float | None = None
    budget: float | None = None
    share: dict[str, float] | None = None

    def __post_init__(self) -> None:
        given = [name for name in ("lam", "budget", "share") if getattr(self, name) is not None]
        if len(given) > 1 and "share" in given:
            raise ValueError("share is calibrated at the router's default lambda: pass share alone, "
                             "without lam or budget")
        if len(given) > 1:
            raise ValueError(f"give at most one of lam, budget, share; got {' and '.join(given)}")
        for name in ("lam", "budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.share is not None:
            if not isinstance(self.share, dict) or len(self.share) != 1:
                raise ValueError(f"share takes one {{model: fraction}} pair, got {self.share!r}")
            (_, value), = self.share.items()
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"share must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class OperatingPoint:
    """The rule's knobs for a call: ``lam``, an optional per-model ``bias`` (non-zero for a share), and
    ``target``: what it was calibrated for, in words (``"lam 0"``, ``"budget 0.002 $/query"``, ...)."""

    lam: float = 0.0
    bias: tuple[float, ...] | None = None
    target: str = "lam 0"

    def to_dict(self) -> dict:
        return {"lam": self.lam, "bias": None if self.bias is None else list(self.bias), "target": self.target}

    @classmethod
    def from_dict(cls, raw: dict) -> OperatingPoint:
        bias = raw.get("bias")
        return cls(lam=float(raw["lam"]), bias=None if not bias else tuple(float(b) for b in bias),
                   target=str(raw.get("target", "")))


@dataclass(frozen=True)
class SpendCurve:
    """Mean $ per query of the rule's choices as lambda grows, on calibration queries: ``cost[k]`` is the
    spend at ``lam[k]`` (``lam`` increasing from 0; spend never rises with lambda)."""

    lam: tuple[float, ...]
    cost: tuple[float, ...]

    @classmethod
    def measure(cls, pred_scores, model_costs, budget: float | None = None,
                points: int = CURVE_POINTS) -> SpendCurve:
        """The curve of ``pred_scores`` under ``model_costs``: the exact lambdas where the spend steps down
        (``rule.switch_points``), thinned to ``points`` even steps of spend, the first step within
        ``budget`` kept; each point's spend is then measured with ``choose`` itself."""
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
        measured = [float(costs[choose(pred, costs, lam)].mean()) for lam in kept]
        return cls(lam=tuple(float(x) for x in kept), cost=tuple(measured))

    @property
    def reachable(self) -> tuple[float, float]:
        """The lowest and highest spend on the curve."""
        return min(self.cost), max(self.cost)

    def lam_for(self, budget: float) -> tuple[float, bool]:
        """``(lambda, met)``: the smallest lambda whose spend is within ``budget``; when none is, the
        largest lambda (the cheapest routing) and ``met=False``."""
        within = [lam for lam, cost in zip(self.lam, self.cost) if cost <= budget]
        return (min(within), True) if within else (max(self.lam), False)

    def to_dict(self) -> dict:
        return {"lam": list(self.lam), "cost": list(self.cost)}

    @classmethod
    def from_dict(cls, raw: dict) -> SpendCurve:
        return cls(lam=tuple(float(x) for x in raw["lam"]), cost=tuple(float(x) for x in raw["cost"]))


def margin_quantiles(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float) -> np.ndarray:
    """(n_models, len(SHARE_LEVELS)): per model, quantiles over the queries of its *margin*, how much its
    utility must rise to win the query (max of the others' utility minus its own; <= 0 where it wins)."""
    pred, costs = check_scores(pred_scores, model_costs)
    if pred.shape[1] < 2 or len(pred) == 0:
        raise ValueError("share calibration needs at least 2 models and 1 query")
    util = pred - lam * costs
    out = np.empty((util.shape[1], len(SHARE_LEVELS)))
    for j in range(util.shape[1]):
        margin = np.delete(util, j, axis=1).max(axis=1) - util[:, j]
        out[j] = np.quantile(margin, SHARE_LEVELS)
    return out


def share_bias(quantiles: np.ndarray, model: int, share: float) -> np.ndarray:
    """The bias vector (zero but for ``model``) that sends it about ``share`` of the calls, from
    ``margin_quantiles``. 0 and 1 step just past the extreme margins, so they mean none and all."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    row = np.asarray(quantiles, dtype=np.float64)[model]
    step = 1e-9 * (1.0 + np.abs(row).max())
    b = row[0] - step if share <= 0 else row[-1] + step if share >= 1 else float(np.interp(share, SHARE_LEVELS, row))
    bias = np.zeros(len(quantiles))
    bias[model] = b
    return bias


@dataclass(frozen=True, eq=False)
class Calibration:
    """What ``resolve`` reads, measured on a router's out-of-fold training predictions: its ``default``
    operating point, the ``curve`` a budget is read from (None: not measured, as in early exports), and
    the margin quantiles a share is read from (at ``margins_lam``; None: not measured)."""

    models: tuple[str, ...]
    default: OperatingPoint = field(default_factory=OperatingPoint)
    curve: SpendCurve | None = None
    margins_lam: float = 0.0
    margins: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {"default": self.default.to_dict(), "curve": None if self.curve is None else self.curve.to_dict(),
                "margins_lam": self.margins_lam, "margins": None if self.margins is None else self.margins.tolist()}

    @classmethod
    def from_dict(cls, models: Sequence[str], raw: dict) -> Calibration:
        margins = raw.get("margins")
        return cls(models=tuple(models), default=OperatingPoint.from_dict(raw["default"]),
                   curve=None if raw.get("curve") is None else SpendCurve.from_dict(raw["curve"]),
                   margins_lam=float(raw.get("margins_lam", 0.0)),
                   margins=None if not margins else np.asarray(margins, dtype=np.float64))


def calibrate(pred_scores: np.ndarray, model_costs: np.ndarray, models: Sequence[str], *, lam: float = 0.0,
              budget: float | None = None, share: tuple[str, float] | None = None) -> Calibration:
    """The ``Calibration`` of a router from its out-of-fold predictions on training queries.

    Its default point is the job's setting resolved on it: ``budget`` (the lambda meeting it; an
    unreachable budget raises ValueError naming the reachable range), else ``lam``; with ``share``
    (``(model, fraction)``) a bias at that lambda. The margins are measured at the default lambda.
    """
    pred, costs = check_scores(pred_scores, model_costs)
    curve = SpendCurve.measure(pred, costs, budget)
    base = Calibration(models=tuple(models), curve=curve)
    default = resolve(Setting(budget=budget), base, strict=True) if budget is not None else \
        OperatingPoint(lam=float(lam), target=f"lam {lam:g}")
    margins = margin_quantiles(pred, costs, default.lam) if pred.shape[1] >= 2 else None
    cal = replace(base, default=default, margins_lam=default.lam, margins=margins)
    if share is not None:
        cal = replace(cal, default=resolve(Setting(share={share[0]: share[1]}), cal))
    return cal


def resolve(setting: Setting, calibration: Calibration, *, strict: bool = False) -> OperatingPoint:
    """The operating point for ``setting`` on a router calibrated as ``calibration``.

    A budget below every spend on the curve gives the cheapest routing (``strict``: a ValueError
    naming the reachable range instead); a share routes at the calibration's own lambda.
    """
    if setting.lam is not None:
        return OperatingPoint(lam=float(setting.lam), target=f"lam {setting.lam:g}")
    if setting.budget is not None:
        curve = calibration.curve
        if curve is None:
            raise ValueError("this router was exported without a cost curve: pass lam instead of budget")
        lam, met = curve.lam_for(setting.budget)
        low, high = curve.reachable
        if not met and strict:
            raise ValueError(f"budget {setting.budget:.6g} $/query is unreachable: spend on these queries ranges "
                             f"over [{low:.6g}, {high:.6g}] $/query")
        met_text = "" if met else f", unreachable: the cheapest routing spends {low:.6g}"
        return OperatingPoint(lam=lam, target=f"budget {setting.budget:.6g} $/query{met_text}")
    if setting.share is not None:
        (model, value), = setting.share.items()
        if model not in calibration.models:
            raise ValueError(f"share: unknown model {model!r}; this router routes to {list(calibration.models)}")
        if calibration.margins is None:
            raise ValueError("this router was exported without share margins: retrain it with this release")
        bias = share_bias(calibration.margins, calibration.models.index(model), float(value))
        return OperatingPoint(lam=calibration.margins_lam, bias=tuple(float(b) for b in bias),
                              target=f"share {value:.6g} of calls to {model}")
    return calibration.default
