"""Task-aware router: infer the query's task from its embedding, route by each model's shrunk mean on that task.

Logs often carry a task tag (MMLU-Pro's category, ZeroEval's gsm / math / crux, TheoremQA's field),
and knowing only the task often closes as much of the routing gap as a learned router. A service
does not get the tag with a prompt, so the task is inferred: a multinomial logistic regression on
the embedding (stored as arrays; prediction is numpy), whose probabilities mix the per-task score
table. The tags are needed at fit time only: ``fit(X, Y, C, mask, tasks=...)``.
"""

from __future__ import annotations

import warnings
from itertools import product

import numpy as np

from router.routers._common import (as_grid, check_choice, column_means, group_stats, shrunk_means, standardise,
                                    standardise_stats)
from router.routers.base import BaseRouter
from router.routers.search import cv_search

ASSIGNMENTS = ("soft", "hard")


class TaskRouter(BaseRouter):
    """P(task | x) from a logistic regression on the embedding, times each model's mean score per task.

    The score of model m on task t is (sum of observed scores on t + shrink * mean_m) / (observed
    count on t + shrink). ``assignment``: "soft" mixes the task rows by P(task | x); "hard" takes the
    most likely task's row. ``C`` (inverse L2 strength of the task classifier), ``shrink`` and
    ``assignment`` each take one value or a tuple, chosen by ``cv``-fold routing quality.
    ``predict_scores(X, tasks=...)`` routes a query with a known tag by its task's row (the task
    oracle of the training split) and infers the others.
    ``needs_tasks``: the job passes the logs' task column to ``fit``, and leaves this family out of
    the candidates when the logs have none (without ``tasks`` it would only predict each model's mean).
    """

    needs_tasks = True

    def __init__(
        self,
        C: float | tuple[float, ...] = (0.1, 1.0, 10.0),
        shrink: float | tuple[float, ...] = (1.0, 10.0),
        assignment: str | tuple[str, ...] = ("soft", "hard"),
        cv: int = 5,
        random_state: int = 0,
    ):
        self.C = C
        self.shrink = shrink
        self.assignment = assignment
        self.cv = cv
        self.random_state = random_state

    def _grid(self) -> list[tuple[float, float, str]]:
        cs, ss, assigns = as_grid(self.C), as_grid(self.shrink), as_grid(self.assignment)
        for a in assigns:
            check_choice("assignment", a, ASSIGNMENTS)
        if not all(np.isfinite(c) and c > 0 for c in cs) or not all(np.isfinite(s) and s >= 0 for s in ss):
            raise ValueError(f"need C > 0 and shrink >= 0, got C={self.C!r}, shrink={self.shrink!r}")
        return [(float(c), float(s), a) for c, s, a in product(cs, ss, assigns)]

    def _fit(self, X, Y, C, mask, tasks=None) -> None:
        # Without labels every query is one task: the router then predicts each model's mean (best single).
        tasks = np.zeros(len(X), dtype=int) if tasks is None else np.asarray(tasks)
        if len(tasks) != len(X):
            raise ValueError(f"tasks has {len(tasks)} labels for {len(X)} queries")
        grid = self._grid()
        names, codes = np.unique(tasks.astype(str), return_inverse=True)
        Yz = np.where(mask, Y, 0.0)

        def fold_predictions(tr, va):
            prior = column_means(Y[tr], mask[tr])
            sums, counts = group_stats(codes[tr], Yz[tr], mask[tr], len(names))
            for c in dict.fromkeys(g[0] for g in grid):
                P = _proba(*self._classifier(X[tr], codes[tr], c, len(names)), X[va])
                for _, s, a in (g for g in grid if g[0] == c):
                    yield _weights(P, a) @ shrunk_means(sums, counts, prior, s)

        best, self.cv_results_ = cv_search(grid, fold_predictions, Y, mask, self.cv, self.random_state)
        self.best_params_ = dict(zip(("C", "shrink", "assignment"), best))
        _, self.shrink_, self.assignment_ = best
        self.tasks_ = names.tolist()
        self.mean_, self.scale_, self.coef_, self.intercept_ = self._classifier(X, codes, best[0], len(names))
        self.prior_ = column_means(Y, mask)
        sums, counts = group_stats(codes, Yz, mask, len(names))
        self.task_scores_ = shrunk_means(sums, counts, self.prior_, self.shrink_)

    def _classifier(self, X, codes, c: float, n_tasks: int):
        """(mean, scale, coef (n_tasks, d), intercept (n_tasks,)) of a multinomial logistic regression."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        mean, scale = standardise_stats(X)
        d = X.shape[1]
        present = np.unique(codes)
        coef, intercept = np.zeros((n_tasks, d)), np.full(n_tasks, -np.inf)
        if len(present) == 1:  # one task in this fold: it is always the answer
            intercept[present[0]] = 0.0
            return mean, scale, coef, intercept
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr = LogisticRegression(C=c, max_iter=300, random_state=self.random_state)
            lr.fit(standardise(X, mean, scale), codes)
        if len(present) == 2:  # sklearn's binary form: one row for the second class
            coef[present[1]], intercept[present[1]] = lr.coef_[0], lr.intercept_[0]
            intercept[present[0]] = 0.0
        else:
            coef[present], intercept[present] = lr.coef_, lr.intercept_
        return mean, scale, coef, intercept

    def predict_scores(self, X, tasks=None) -> np.ndarray:
        """(n, m) predicted scores. ``tasks``: each query's task tag when the caller knows it (None, or
        a tag not seen in training, for a query whose task is to be inferred from its embedding)."""
        S = super().predict_scores(X)
        if tasks is None:
            return S
        tasks = np.asarray(tasks, dtype=object)
        if tasks.shape != (len(S),):
            raise ValueError(f"tasks must hold one tag per query ({len(S)}), got shape {tasks.shape}")
        index = {t: i for i, t in enumerate(self.tasks_)}
        rows = np.array([index.get(None if t is None else str(t), -1) for t in tasks], dtype=np.int64)
        known = rows >= 0
        S[known] = self.task_scores_[rows[known]]
        return S

    def _predict_scores(self, X) -> np.ndarray:
        P = _proba(self.mean_, self.scale_, self.coef_, self.intercept_, X)
        return _weights(P, self.assignment_) @ self.task_scores_


def _proba(mean, scale, coef, intercept, X) -> np.ndarray:
    """Softmax over tasks of the classifier's logits; a task absent from training gets probability 0."""
    logits = standardise(np.asarray(X, dtype=np.float64), mean, scale) @ coef.T + intercept
    logits -= logits.max(axis=1, keepdims=True)
    P = np.exp(logits)
    return P / P.sum(axis=1, keepdims=True)


def _weights(P: np.ndarray, assignment: str) -> np.ndarray:
    if assignment == "soft":
        return P
    W = np.zeros_like(P)
    W[np.arange(len(P)), P.argmax(axis=1)] = 1.0
    return W
