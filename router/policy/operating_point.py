"""Operating points: where a router runs the decision rule, and the one resolver from a user's setting.

A user asks for a ``Setting``: a cost weight ``lam``, a ``budget`` ($ per query), a ``share`` of the
calls to one model, or a savings ``margin`` (the cheapest routing whose quality stays within that
fraction of the best single model's); or nothing: the router's default. ``resolve`` turns it into an
``OperatingPoint`` (lambda, per-model bias, and what it was calibrated for) from a ``Calibration``:
measurements of the router's out-of-fold predictions on training queries, made once by ``calibrate``
and stored in the export as data. The job, ``router.load(...).route(...)``, the MLflow pyfunc and the
gateway all call ``resolve`` on the same ``Calibration``, so a setting gives the same lambda wherever
it is asked.

- budget: the smallest lambda on the ``OperatingCurve`` whose spend is within it (the best quality
  that fits);
- margin: the cheapest point of the curve whose quality, less ``2 z`` standard errors of its gain over
  the reference model (``z`` the one-sided normal quantile of the calibration's confidence), is at least
  ``1 - margin`` of the reference's: non-inferior with room for the noise of the calibration queries and
  for the gate's own bound on new queries (with ``z`` alone the point sits where the gate passes half the
  time; ``benchmarks/bench_gate.py``);
- share: the bias from the shortfall quantiles (``share.share_bias``), at the calibration's own lambda.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np

from router.policy.curve import OperatingCurve
from router.policy.rule import check_scores
from router.policy.share import share_bias, shortfall_quantiles

_SETTINGS = ("lam", "budget", "share", "margin")


@dataclass(frozen=True)
class Setting:
    """What a user asks of the rule: at most one of ``lam``, ``budget`` ($/query), ``share``
    (``{model: fraction}``) or ``margin`` (savings within that fraction of the best single model's
    quality); none of them means the router's calibrated default."""

    lam: float | None = None
    budget: float | None = None
    share: dict[str, float] | None = None
    margin: float | None = None

    def __post_init__(self) -> None:
        given = [name for name in _SETTINGS if getattr(self, name) is not None]
        if len(given) > 1 and "share" in given:
            raise ValueError("share is calibrated at the router's default lambda: pass share alone, "
                             "without lam, budget or margin")
        if len(given) > 1:
            raise ValueError(f"give at most one of lam, budget, margin, share; got {' and '.join(given)}")
        for name in ("lam", "budget"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.margin is not None and not (isinstance(self.margin, (int, float)) and 0.0 <= self.margin < 1.0):
            raise ValueError(f"margin must be in [0, 1) (0.01: within 1% of the best single model), "
                             f"got {self.margin!r}")
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


@dataclass(frozen=True, eq=False)
class Calibration:
    """What ``resolve`` reads, measured on a router's out-of-fold training predictions: its ``default``
    operating point; the ``curve`` a budget or a margin is read from (None: not measured); the shortfall
    quantiles a share is read from (at ``shortfalls_lam``); the ``reference`` model (the best single
    model, an index) with its quality and mean cost on the calibration queries; and the one-sided
    ``confidence`` a margin is resolved at."""

    models: tuple[str, ...]
    default: OperatingPoint = field(default_factory=OperatingPoint)
    curve: OperatingCurve | None = None
    shortfalls_lam: float = 0.0
    shortfalls: np.ndarray | None = None
    reference: int | None = None
    reference_quality: float | None = None
    reference_cost: float | None = None
    confidence: float = 0.9

    def to_dict(self) -> dict:
        return {"default": self.default.to_dict(), "curve": None if self.curve is None else self.curve.to_dict(),
                "shortfalls_lam": self.shortfalls_lam,
                "shortfalls": None if self.shortfalls is None else self.shortfalls.tolist(),
                "reference": self.reference, "reference_quality": self.reference_quality,
                "reference_cost": self.reference_cost, "confidence": self.confidence}

    @classmethod
    def from_dict(cls, models: Sequence[str], raw: dict) -> Calibration:
        shortfalls = raw.get("shortfalls")
        optional = lambda key, kind: None if raw.get(key) is None else kind(raw[key])  # noqa: E731
        return cls(models=tuple(models), default=OperatingPoint.from_dict(raw["default"]),
                   curve=optional("curve", OperatingCurve.from_dict),
                   shortfalls_lam=float(raw.get("shortfalls_lam", 0.0)),
                   shortfalls=None if not shortfalls else np.asarray(shortfalls, dtype=np.float64),
                   reference=optional("reference", int), reference_quality=optional("reference_quality", float),
                   reference_cost=optional("reference_cost", float), confidence=float(raw.get("confidence", 0.9)))


def calibrate(pred_scores: np.ndarray, model_costs: np.ndarray, models: Sequence[str], *, lam: float = 0.0,
              budget: float | None = None, share: tuple[str, float] | None = None, margin: float | None = None,
              scores: np.ndarray | None = None, reference: int | None = None,
              confidence: float = 0.9) -> Calibration:
    """The ``Calibration`` of a router from its out-of-fold predictions on training queries.

    ``scores`` (the queries' true scores, NaN where unscored) and ``reference`` (the best single model's
    index) let the curve carry quality, which a ``margin`` needs. The default point is the job's setting
    resolved on it: ``budget`` (an unreachable budget raises ValueError naming the reachable range), else
    ``margin``, else ``lam``; with ``share`` (``(model, fraction)``) a bias at that lambda. The shortfall
    quantiles are measured at the default lambda.
    """
    pred, costs = check_scores(pred_scores, model_costs)
    curve = OperatingCurve.measure(pred, costs, budget, scores=scores, reference=reference)
    ref_quality = None
    if scores is not None and reference is not None:
        complete = np.isfinite(scores).all(axis=1)
        ref_quality = float(np.asarray(scores)[complete, reference].mean()) if complete.any() else None
    base = Calibration(models=tuple(models), curve=curve, reference=reference, reference_quality=ref_quality,
                       reference_cost=None if reference is None else float(costs[reference]), confidence=confidence)
    if budget is not None:
        default = resolve(Setting(budget=budget), base, strict=True)
    elif margin is not None and ref_quality is None:  # no query scored by every model (a router's own traffic)
        default = OperatingPoint(lam=0.0, target=f"savings within {margin:g}: quality not measurable on the "
                                                 "calibration queries (none scored by every model), lam 0")
    elif margin is not None:
        default = resolve(Setting(margin=margin), base, strict=True)
    else:
        default = OperatingPoint(lam=float(lam), target=f"lam {lam:g}")
    shortfalls = shortfall_quantiles(pred, costs, default.lam) if pred.shape[1] >= 2 else None
    cal = replace(base, default=default, shortfalls_lam=default.lam, shortfalls=shortfalls)
    if share is not None:
        cal = replace(cal, default=resolve(Setting(share={share[0]: share[1]}), cal))
    return cal


def resolve(setting: Setting, calibration: Calibration, *, strict: bool = False) -> OperatingPoint:
    """The operating point for ``setting`` on a router calibrated as ``calibration``.

    A budget below every spend on the curve gives the cheapest routing (``strict``: a ValueError naming
    the reachable range instead); a margin no point meets gives lambda 0 (the best quality), its target
    saying so; a share routes at the calibration's own lambda.
    """
    if setting.lam is not None:
        return OperatingPoint(lam=float(setting.lam), target=f"lam {setting.lam:g}")
    if setting.budget is not None:
        return _resolve_budget(setting.budget, calibration, strict)
    if setting.margin is not None:
        return _resolve_margin(setting.margin, calibration)
    if setting.share is not None:
        (model, value), = setting.share.items()
        if model not in calibration.models:
            raise ValueError(f"share: unknown model {model!r}; this router routes to {list(calibration.models)}")
        if calibration.shortfalls is None:
            raise ValueError("this router was exported without share quantiles: retrain it with this release")
        bias = share_bias(calibration.shortfalls, calibration.models.index(model), float(value))
        return OperatingPoint(lam=calibration.shortfalls_lam, bias=tuple(float(b) for b in bias),
                              target=f"share {value:.6g} of calls to {model}")
    return calibration.default


def _resolve_budget(budget: float, calibration: Calibration, strict: bool) -> OperatingPoint:
    curve = calibration.curve
    if curve is None:
        raise ValueError("this router was exported without a cost curve: pass lam instead of budget")
    lam, met = curve.lam_for(budget)
    low, high = curve.reachable
    if not met and strict:
        raise ValueError(f"budget {budget:.6g} $/query is unreachable: spend on these queries ranges "
                         f"over [{low:.6g}, {high:.6g}] $/query")
    met_text = "" if met else f", unreachable: the cheapest routing spends {low:.6g}"
    return OperatingPoint(lam=lam, target=f"budget {budget:.6g} $/query{met_text}")


def _resolve_margin(margin: float, calibration: Calibration) -> OperatingPoint:
    curve, ref = calibration.curve, calibration.reference
    if curve is None or curve.quality is None or ref is None or calibration.reference_quality is None:
        raise ValueError("this router was exported without quality on its calibration curve: pass lam or "
                         "budget, or retrain it with this release")
    name = calibration.models[ref]
    z = 2.0 * NormalDist().inv_cdf(calibration.confidence)  # the noise here, and the gate's bound to come
    k = curve.cheapest_within(calibration.reference_quality, margin, z)
    if k is None:
        return OperatingPoint(lam=0.0, target=f"savings within {margin:g} of {name}: no point is non-inferior "
                                              "on the calibration queries (lam 0)")
    share = curve.cost[k] / calibration.reference_cost if calibration.reference_cost else math.nan
    return OperatingPoint(lam=curve.lam[k], target=f"savings within {margin:g} of {name}'s quality: "
                                                  f"{share:.0%} of its cost on the calibration queries")
