"""The serving-time decision rule and its calibration.

A router predicts a score per model; the choice is ``argmax(pred - lam * cost)`` where ``lam``
is the willingness to pay (quality units per $). With ties going to the cheaper model, the cost
of each query's choice can only fall as ``lam`` grows, so spend is monotone in ``lam`` and a
budget can be met by bisection. ``calibrate`` turns a user's target (a $ budget per query, or a
share of calls to one model) into a ``lam`` on held-out queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BISECT_STEPS = 60  # halvings between two grid points: far below any meaningful lambda change


def _check(pred_scores, model_costs) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred_scores, dtype=np.float64)
    costs = np.asarray(model_costs, dtype=np.float64)
    if pred.ndim != 2:
        raise ValueError(f"pred_scores must be (n_queries, n_models), got shape {pred.shape}")
    if costs.shape != (pred.shape[1],):
        raise ValueError(f"model_costs must have shape ({pred.shape[1]},), got {costs.shape}")
    if not np.isfinite(pred).all():
        raise ValueError("pred_scores contains NaN or infinite values")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ValueError(f"model_costs must be finite and >= 0, got {costs.tolist()}")
    return pred, costs


def _utility(pred: np.ndarray, costs: np.ndarray, lam: float, bias: np.ndarray | None) -> np.ndarray:
    """``pred - lam * cost + bias``: what the decision rule maximises."""
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    util = pred - lam * costs
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != costs.shape or not np.isfinite(bias).all():
            raise ValueError(f"bias must be {costs.shape[0]} finite numbers, got {bias.tolist()}")
        util = util + bias
    return util


def choose(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float = 0.0,
           allowed: np.ndarray | None = None, bias: np.ndarray | None = None) -> np.ndarray:
    """Index of the chosen model per query: argmax of ``pred - lam * cost + bias``.

    Exact ties go to the cheaper model (then the lower index): at a breakpoint both are equally
    good, and preferring the cheaper one keeps spend non-increasing in ``lam``. ``allowed``
    (n_queries, n_models) bool, optional: only these models compete (their scores must be
    finite, the others are ignored); every query needs at least one. ``bias`` (n_models,),
    optional: a per-model offset, the knob that sets a model's share of calls (``share_bias``).
    """
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=bool)
        if allowed.shape != np.shape(pred_scores):
            raise ValueError(f"allowed must have the shape of pred_scores {np.shape(pred_scores)}, "
                             f"got {allowed.shape}")
        pred_scores = np.where(allowed, pred_scores, 0.0)  # scores of excluded models may be NaN
    pred, costs = _check(pred_scores, model_costs)
    if allowed is not None and not allowed.any(axis=1).all():
        raise ValueError("allowed leaves some queries without any model")
    util = _utility(pred, costs, lam, bias)
    if allowed is not None:
        util[~allowed] = -np.inf
    tied = util >= util.max(axis=1, keepdims=True)
    return np.where(tied, costs, np.inf).argmin(axis=1)


def rank(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float = 0.0,
         bias: np.ndarray | None = None) -> np.ndarray:
    """(n_queries, n_models) model indices per query, best first, under ``choose``'s utility and tie
    rule (higher ``pred - lam * cost + bias``; exact ties to the cheaper model, then the lower index).

    Column 0 is ``choose(pred, costs, lam, bias=bias)``; the next columns are the fallbacks a gateway
    tries when the chosen model's upstream fails.
    """
    pred, costs = _check(pred_scores, model_costs)
    util = _utility(pred, costs, lam, bias)
    # lexsort's last key is the primary one, and it is stable: equal (util, cost) keep index order
    cost_key = np.broadcast_to(costs, util.shape)
    return np.lexsort((cost_key, -util), axis=1)


def lambda_grid(pred_scores: np.ndarray, model_costs: np.ndarray, n: int = 50) -> np.ndarray:
    """Sorted lambdas: 0, then ``n - 1`` geometrically spaced values up to the point where the
    cheapest model wins every query.

    The low end is the first lambda at which any query's choice changes, so no grid point is
    wasted where nothing moves. Returns ``[0.0]`` when the costs cannot change a choice (all
    equal, or the cheapest model already wins everywhere).
    """
    pred, costs = _check(pred_scores, model_costs)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    c_min = costs.min()
    dearer = costs > c_min
    if not dearer.any() or len(pred) == 0:
        return np.array([0.0])
    cheap_best = pred[:, ~dearer].max(axis=1, keepdims=True)
    # lambda at which the best cheapest model catches up with each dearer model, per query
    catch_up = (pred[:, dearer] - cheap_best) / (costs[dearer] - c_min)
    hi = float(catch_up.max())
    if hi <= 0:
        return np.array([0.0])
    hi *= 1 + 1e-9  # past the last breakpoint despite rounding
    start = choose(pred, costs, 0.0)
    c_start = costs[start]
    # First switch per query: to a cheaper model j at (pred_start - pred_j) / (c_start - c_j).
    gap_c = c_start[:, None] - costs[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        switch = np.where(gap_c > 0, (pred[np.arange(len(pred)), start][:, None] - pred) / gap_c, np.inf)
    positive = switch[switch > 0]
    lo = float(positive.min()) if positive.size else hi
    lo = min(max(lo, hi * 1e-9), hi)
    if lo >= hi:
        return np.array([0.0, hi])
    return np.concatenate([[0.0], np.geomspace(lo, hi, n - 1)])


@dataclass(frozen=True)
class Calibration:
    """A calibrated lambda and what it achieves on the calibration queries.

    ``cost`` is the mean model cost of the choices ($ per query, from ``model_costs``);
    ``shares`` the share of calls per model; ``share`` the share of the targeted model (None for
    a budget target); ``reachable`` the range the target could take on these queries.
    """

    lam: float
    cost: float
    shares: tuple[float, ...]
    share: float | None
    target: str
    reachable: tuple[float, float]


def calibrate(
    pred_scores: np.ndarray,
    model_costs: np.ndarray,
    *,
    budget: float | None = None,
    model: int | None = None,
    share: float | None = None,
    n_grid: int = 50,
) -> Calibration:
    """Find lambda on calibration queries for a $ budget per query, or a share of calls to ``model``.

    - ``budget``: the smallest lambda (hence the highest predicted quality) whose mean spend
      (``model_costs`` of the choices) is <= budget. Spend is non-increasing in lambda, so the
      first grid point within budget and the point before it bracket the answer, and bisection
      pins it down.
    - ``model`` + ``share``: the lambda whose share of calls to model index ``model`` is closest
      to ``share`` (ties to the smaller lambda), searched at the first grid interval that
      brackets the target. Share is monotone for the dearest and the cheapest model; for a model
      in between it can rise then fall, and the first crossing is returned.

    Raises ValueError naming the reachable range when the target cannot be met.
    """
    pred, costs = _check(pred_scores, model_costs)
    if len(pred) == 0:
        raise ValueError("calibration needs at least one query")
    if (budget is None) == (share is None):
        raise ValueError("give exactly one target: budget=, or model= with share=")
    grid = lambda_grid(pred, costs, n_grid)

    def result(lam: float, target: str, reachable: tuple[float, float]) -> Calibration:
        picks = choose(pred, costs, lam)
        shares = np.bincount(picks, minlength=len(costs)) / len(picks)
        return Calibration(
            lam=float(lam), cost=float(costs[picks].mean()), shares=tuple(float(s) for s in shares),
            share=None if model is None else float(shares[model]), target=target, reachable=reachable,
        )

    if budget is not None:
        if model is not None:
            raise ValueError("model= is for a share target; a budget target takes no model")
        def spend(lam: float) -> float:
            return float(costs[choose(pred, costs, lam)].mean())

        values = np.array([spend(lam) for lam in grid])
        reachable = (float(values[-1]), float(values[0]))
        target = f"spend <= {budget:.6g} $/query"
        if budget < values[-1]:
            raise ValueError(f"budget {budget:.6g} $/query is unreachable: spend on these queries ranges "
                             f"over [{reachable[0]:.6g}, {reachable[1]:.6g}] $/query")
        if values[0] <= budget:
            return result(0.0, target, reachable)
        i = int(np.flatnonzero(values <= budget)[0])  # first grid point within budget
        lo, hi = grid[i - 1], grid[i]  # spend(lo) > budget >= spend(hi)
        for _ in range(_BISECT_STEPS):
            mid = 0.5 * (lo + hi)
            if spend(mid) <= budget:
                hi = mid
            else:
                lo = mid
        return result(hi, target, reachable)

    if model is None or not 0 <= int(model) < len(costs):
        raise ValueError(f"model must be a model index in [0, {len(costs) - 1}], got {model!r}")
    model = int(model)
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    def share_at(lam: float) -> float:
        return float((choose(pred, costs, lam) == model).mean())

    values = np.array([share_at(lam) for lam in grid])
    reachable = (float(values.min()), float(values.max()))
    target = f"share of model {model} = {share:.6g}"
    if not reachable[0] <= share <= reachable[1]:
        raise ValueError(f"a share of {share:.6g} for model {model} is unreachable: over lambda its "
                         f"share ranges over [{reachable[0]:.6g}, {reachable[1]:.6g}]")
    side = np.sign(values - share)
    if side[0] == 0:
        return result(0.0, target, reachable)
    i = int(np.flatnonzero(side != side[0])[0])  # first grid point on or past the target
    lo, hi = grid[i - 1], grid[i]
    for _ in range(_BISECT_STEPS):  # keep lo on the starting side of the target, hi past it
        mid = 0.5 * (lo + hi)
        if np.sign(share_at(mid) - share) == side[0]:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda lam: (abs(share_at(lam) - share), lam))
    return result(best, target, reachable)


# ------------------------------------------------------------------- share of calls to a model

SHARE_LEVELS = np.linspace(0.0, 1.0, 101)  # the quantiles of the margins kept for serving


def margin_quantiles(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float) -> np.ndarray:
    """(n_models, len(SHARE_LEVELS)): per model, quantiles over the queries of its *margin*, how much its
    utility must rise to win the query (max of the others' utility minus its own; <= 0 where it wins).

    A bias ``b`` on one model routes to it exactly the queries whose margin is below ``b``, so the
    margins' ``s``-quantile is the bias giving it a share ``s`` of the calls, costs or no costs (RouteLLM's
    threshold, for any number of models). Kept with an exported router, they answer ``share=`` per call.
    """
    pred, costs = _check(pred_scores, model_costs)
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


# ------------------------------------------------------------------- exploration (logging policies)

EXPLORATION_MODES = ("off", "epsilon", "softmax")


def _positive_real(name: str, value, upper: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not (np.isfinite(value) and value > 0 and (upper is None or value <= upper)):
        bound = f"in (0, {upper:g}]" if upper is not None else "finite and > 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


@dataclass(frozen=True)
class Exploration:
    """How the serving policy departs from the greedy ``choose`` pick, so that logs of its own traffic
    carry the propensities off-policy evaluation needs (``router.evaluation.ope``).

    - ``off``: always the ``choose`` pick (propensity 1; the logs then say nothing about other models);
    - ``epsilon``: the ``choose`` pick with probability ``1 - epsilon``, else a uniformly random model
      (the pick included), so every model has probability >= ``epsilon / m``;
    - ``softmax``: model ``j`` with probability proportional to ``exp(utility_j / temperature)``, the
      utility being ``choose``'s (``pred - lam * cost + bias``); in quality units, so a temperature of
      0.05 on a 0-1 score keeps models within a few hundredths of the best in play.

    ``parse`` reads the CLI/config forms ``off``, ``epsilon:0.05``, ``softmax:0.1``; ``str`` writes them.
    """

    mode: str = "off"
    epsilon: float = 0.05
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in EXPLORATION_MODES:
            raise ValueError(f"exploration mode must be one of {', '.join(EXPLORATION_MODES)}, got {self.mode!r}")
        object.__setattr__(self, "epsilon", _positive_real("exploration epsilon", self.epsilon, upper=1.0))
        object.__setattr__(self, "temperature", _positive_real("exploration temperature", self.temperature))

    @classmethod
    def parse(cls, text: "str | Exploration | None") -> "Exploration":
        """``"off"``, ``"epsilon:<0 < e <= 1>"`` or ``"softmax:<temperature > 0>"`` (a bare ``"epsilon"`` or
        ``"softmax"`` takes the default value); None means off, an ``Exploration`` is returned as is."""
        if text is None:
            return cls()
        if isinstance(text, cls):
            return text
        forms = "expected 'off', 'epsilon:<e in (0, 1]>' or 'softmax:<temperature > 0>', e.g. 'epsilon:0.05'"
        if not isinstance(text, str):
            raise ValueError(f"exploration must be a string, {forms}; got {text!r}")
        mode, sep, arg = text.strip().partition(":")
        mode, arg = mode.strip().lower(), arg.strip()
        if mode not in EXPLORATION_MODES or (mode == "off" and sep) or (sep and not arg):
            raise ValueError(f"bad exploration {text!r}: {forms}")
        if mode == "off" or not sep:
            return cls(mode)
        try:
            value = float(arg)
        except ValueError:
            raise ValueError(f"bad exploration {text!r}: {arg!r} is not a number; {forms}") from None
        return cls(mode, epsilon=value) if mode == "epsilon" else cls(mode, temperature=value)

    def __str__(self) -> str:
        if self.mode == "epsilon":
            return f"epsilon:{self.epsilon!r}"
        if self.mode == "softmax":
            return f"softmax:{self.temperature!r}"
        return "off"


def policy_probabilities(pred_scores: np.ndarray, model_costs: np.ndarray, lam: float = 0.0,
                         bias: np.ndarray | None = None,
                         exploration: Exploration | str = Exploration()) -> np.ndarray:
    """(n_queries, n_models) float64 probabilities of each model under ``exploration``; rows sum to 1.

    ``off`` is one-hot at ``choose(pred, costs, lam, bias=bias)``; ``epsilon`` puts ``1 - epsilon`` on
    that pick and ``epsilon / m`` on every model; ``softmax`` is ``softmax(utility / temperature)`` of
    ``choose``'s utility (max-shifted, so it never overflows). The greedy pick is always ``choose``'s:
    its probability is the row's maximum (shared only with models tied with it, in utility or after
    rounding at a tiny temperature), so take the greedy pick from ``choose``, not from an argmax here.
    """
    exploration = Exploration.parse(exploration)
    pred, costs = _check(pred_scores, model_costs)
    n, m = pred.shape
    if m == 0:
        raise ValueError("policy_probabilities needs at least one model")
    pick = choose(pred, costs, lam, bias=bias)
    rows = np.arange(n)
    if exploration.mode == "softmax":
        util = _utility(pred, costs, lam, bias)
        z = (util - util[rows, pick][:, None]) / exploration.temperature  # the pick holds the max: z <= 0
        probs = np.exp(z)
        return probs / probs.sum(axis=1, keepdims=True)
    if exploration.mode == "epsilon":
        probs = np.full((n, m), exploration.epsilon / m)
        probs[rows, pick] += 1.0 - exploration.epsilon
        return probs / probs.sum(axis=1, keepdims=True)  # exact sums despite rounding
    probs = np.zeros((n, m))
    probs[rows, pick] = 1.0
    return probs


def sample_choices(probs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One model per row drawn from ``probs`` (n, m): ``(indices (n,), propensities (n,))``.

    Inverse CDF on the row's cumulative sums, renormalised so the last one is exactly 1: a uniform
    draw in [0, 1) always lands on a model, and never on one of probability 0. The propensity is
    ``probs[row, pick]``, what the decision log must keep for off-policy evaluation.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"probs must be (n_queries, n_models) with n_models >= 1, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and >= 0")
    totals = p.sum(axis=1)
    if not np.allclose(totals, 1.0, rtol=0.0, atol=1e-6):
        raise ValueError(f"probs rows must sum to 1, got sums in [{totals.min():.6g}, {totals.max():.6g}]")
    cum = np.cumsum(p, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(p))
    idx = np.minimum((cum <= u[:, None]).sum(axis=1), p.shape[1] - 1)  # first model whose cum sum exceeds u
    return idx, p[np.arange(len(p)), idx]
