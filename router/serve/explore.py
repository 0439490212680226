"""Exploration at serving time: which model serves each prompt, and with what probability.

With exploration off the served model is the ranking's first (``RouterService.ranked``, the evaluated
rule) and its propensity is 1. With it on, the served model is drawn from ``policy_probabilities`` at
the request's operating point, by one generator per app (behind a lock: routing runs in worker
threads), and the fallbacks after it are the rest of the ranking. The decision log keeps the
propensity: what off-policy evaluation of the logs needs.
"""

from __future__ import annotations

import threading

import numpy as np

from router.policy.exploration import Exploration, sample_choices


class Explorer:
    """The serving policy of one app: ``draw(service, prompts, tasks, point)`` -> scores, order, propensities.

    ``seed``: of the generator (None: fresh entropy); a seeded app answers a sequence of requests the same way.
    """

    def __init__(self, exploration: Exploration | str | None = None, seed: int | None = None) -> None:
        self.exploration = Exploration.parse(exploration)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.exploration.mode != "off"

    @property
    def policy(self) -> str:
        """The policy as the decision log names it: ``off``, ``epsilon:0.05``, ``softmax:0.1``."""
        return str(self.exploration)

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


def first(ranked: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """``ranked`` (n, m) with each row's ``picks`` moved to the front, the others keeping their order."""
    n, m = ranked.shape
    rest = ranked[ranked != picks[:, None]].reshape(n, m - 1)  # each row holds its pick exactly once
    return np.column_stack([picks, rest]).astype(ranked.dtype, copy=False)
