"""Exploration at serving time: which model serves each prompt, and with what probability.

With exploration off the served model is the ranking's first (``RouterService.ranked``, the evaluated
rule) and its propensity is 1. With it on, the served model is drawn from ``policy_probabilities`` at
the request's operating point, by one generator per app (behind a lock: routing runs in worker
threads), and the fallbacks after it are the rest of the ranking. The decision log keeps the
propensity: what off-policy evaluation of the logs needs.

A new model the router does not route to yet (the job holds it back below ``min_answers``, or it joined after
the router was trained) can be given a fixed share of the traffic (``new``: ``router serve --explore-new
NAME:0.05``): with that probability it serves the prompt, the router's ranking as its fallbacks, and its
answers reach the next job's logs with their propensity. Once a router that lists it is loaded (the job trusted
its answers), its share stops.
"""

from __future__ import annotations

import threading

import numpy as np

from router.policy.exploration import Exploration, sample_choices


class Explorer:
    """The serving policy of one app: ``draw(service, prompts, tasks, point)`` -> scores, order, propensities.

    ``seed``: of the generator (None: fresh entropy); a seeded app answers a sequence of requests the same way.
    """

    def __init__(self, exploration: Exploration | str | None = None, seed: int | None = None,
                 new: dict[str, float] | None = None) -> None:
        self.exploration = Exploration.parse(exploration)
        self.new = check_new(new or {})
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        """Whether the router's pick is drawn (``exploration``; new models' shares are the chat's alone)."""
        return self.exploration.mode != "off"

    @property
    def policy(self) -> str:
        """The policy as the decision log names it: ``off``, ``epsilon:0.05``, ``softmax:0.1``."""
        return str(self.exploration)

    @property
    def chat_policy(self) -> str:
        """The chat endpoint's policy: ``policy`` followed by ``+new:NAME:0.05`` per new model explored."""
        return self.policy + "".join(f"+new:{m}:{s!r}" for m, s in self.new.items())

    def with_new(self, order: list[str], propensity: float) -> tuple[list[str], float]:
        """``order`` (model names, the served one first) and its propensity after the new models' draw: with
        probability ``share`` a new model that is not among the router's models (``order``) is served first,
        with propensity ``share``; else ``order`` stays, its first model's propensity times what is left."""
        active = {m: s for m, s in self.new.items() if m not in order}  # the router routes to the others
        if not active:
            return order, propensity
        with self._lock:
            u = float(self._rng.random())
        edge = 0.0
        for model, share in active.items():
            edge += share
            if u < edge:
                return [model, *order], share
        return order, propensity * (1.0 - sum(active.values()))

    def draw(self, service, prompts: list[str], tasks, point) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embedding + head + decision, the blocking part (run it in a worker thread).

        Returns ``scores`` (n, m), ``order`` (n, m) model indices (the served model first, then the
        fallbacks in ranking order) and ``propensities`` (n,), the probability of each served model.
        """
        scores = service.scores(prompts, tasks)
        ranked = service.ranked(scores, point)
        if not self.on:
            return scores, ranked, np.ones(len(ranked))
        probs = service.probabilities(scores, point, self.exploration)
        with self._lock:  # numpy's Generator is not thread-safe
            picks, propensities = sample_choices(probs, self._rng)
        return scores, first(ranked, picks), propensities


MAX_NEW_SHARE = 0.5  # new models never take more than this share of the traffic together


def check_new(new: dict[str, float]) -> dict[str, float]:
    """``new`` (model -> share of the traffic), checked: shares in (0, 1), summing to at most ``MAX_NEW_SHARE``."""
    for model, share in new.items():
        if not isinstance(model, str) or not model or isinstance(share, bool) or \
                not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ValueError(f"explore_new: expected model name -> share in (0, 1), got {model!r}: {share!r}")
    if sum(new.values()) > MAX_NEW_SHARE:
        raise ValueError(f"explore_new: the new models' shares sum to {sum(new.values()):g}; at most "
                         f"{MAX_NEW_SHARE:g} of the traffic goes to models the router does not route to")
    return {m: float(s) for m, s in new.items()}


def parse_new(text: str | None) -> dict[str, float]:
    """``NAME:SHARE[,NAME:SHARE...]`` (the CLI form; a name may hold colons: the last one splits) -> dict."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        model, sep, share = part.strip().rpartition(":")
        try:
            out[model.strip()] = float(share) if sep else float("nan")
        except ValueError:
            raise ValueError(f"explore_new: {part.strip()!r} is not NAME:SHARE (e.g. my-new-model:0.05)") from None
        if not sep or not model.strip():
            raise ValueError(f"explore_new: {part.strip()!r} is not NAME:SHARE (e.g. my-new-model:0.05)")
    return check_new(out)


def first(ranked: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``ranked`` (n, m) with each row's ``picks`` moved to the front, the others keeping their order."""
    n, m = ranked.shape
    rest = ranked[ranked != picks[:, None]].reshape(n, m - 1)  # each row holds its pick exactly once
    return np.column_stack([picks, rest]).astype(ranked.dtype, copy=False)
