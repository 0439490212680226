"""Exploration: how the serving policy departs from the rule's greedy pick, and with what probability.

Logs of a router's own traffic say something about other models only if it sometimes serves them, and
off-policy evaluation needs the probability each served model had (its propensity). ``Exploration``
names the policy, ``policy_probabilities`` gives every model's probability at an operating point, and
``sample_choices`` draws from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.policy.rule import check_scores, choose, utility

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
    carry the propensities off-policy evaluation needs (``router.evaluation.offpolicy``).

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
    pred, costs = check_scores(pred_scores, model_costs)
    n, m = pred.shape
    if m == 0:
        raise ValueError("policy_probabilities needs at least one model")
    pick = choose(pred, costs, lam, bias=bias)
    rows = np.arange(n)
    if exploration.mode == "softmax":
        util = utility(pred, costs, lam, bias)
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
