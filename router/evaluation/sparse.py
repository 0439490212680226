"""Models that answered only part of the queries (a new model's probe answers): their missing scores estimated by
borrowing strength, and how much evidence each has.

A sparse model's score on a query is predicted by ridge regressions (alpha by leave-one-out), fitted on the
queries it answered, from two kinds of feature:

- the other models' scores on that query: how hard the query is (the item-response view: a query most models
  miss is one a new model likely misses too); the logs hold them for every query;
- the query's embedding: what it is about (its neighbours among the queries the model answered), fitted to
  what the scores leave unexplained.

Ridge shrinks both towards the model's mean score. Training queries get the estimate where the answer is
missing (``fill_estimates``: a direct estimate the routers learn from). Held-out queries get doubly robust
values (``dr_estimates``): the estimate, plus the residual of each answered query weighted by the inverse of
the share answered. The evaluation of a router that sends queries to the model then stays unbiased when the
answered queries are a uniform sample (``router probe``'s stratified sample, proportional in every stratum, is
one), and its variance, hence the gate's interval, grows as the answers get fewer.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from router.data.labels import RoutingData, model_means

SPARSE_SHARE = 0.5  # a model scored on fewer of the logged queries than this share is a sparse model
ALPHAS = np.logspace(-2, 4, 13)


def logged_rows(data: RoutingData) -> np.ndarray:
    """(n,) bool: the queries logged for several models, not the router's own traffic (one scored model, with
    or without its propensity): a model's share of answers is counted on them, and probes drawn from them."""
    return ~data.is_bandit & (data.mask.sum(axis=1) >= 2)


def _full_share(data: RoutingData) -> np.ndarray | None:
    """Per model, the share of the ``logged_rows`` it is scored on; None without such queries, or when no model
    is scored on ``SPARSE_SHARE`` of them (no pool to measure a new model against)."""
    full = logged_rows(data)
    if not full.any():
        return None
    share = data.mask[full].mean(axis=0)
    return share if share.max() >= SPARSE_SHARE else None


def partial_models(data: RoutingData) -> np.ndarray:
    """Indices of the models with an answer, scored on under ``SPARSE_SHARE`` of the ``logged_rows``: the
    sparse models, and those scored only in the router's own traffic (a new model served a share of it). None
    on logs of the router's own traffic alone (every model there is partial: that is the off-policy path)."""
    share = _full_share(data)
    if share is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((share < SPARSE_SHARE) & data.mask.any(axis=0))


def sparse_models(data: RoutingData) -> np.ndarray:
    """Indices of the models scored on some, but under ``SPARSE_SHARE``, of the ``logged_rows`` (models with a
    few missing answers stay as they are: their incomplete queries are left out)."""
    share = _full_share(data)
    if share is None:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((share > 0) & (share < SPARSE_SHARE))


MIN_HELD_OUT = 20  # a sparse model's answers in the held-out split below which its evaluation checks nothing


def held_back(train: RoutingData, test: RoutingData, min_answers: int) -> dict[str, str]:
    """The partial models the job must not route to, each with why: under ``min_answers`` answers in the training
    split (answers on ``logged_rows``, the probes; a model without any counts the router's own traffic), or a
    sparse model with under ``MIN_HELD_OUT`` answers in the held-out split (its doubly robust values would be
    the estimate alone)."""
    cols = partial_models(train)
    probes = (train.mask & logged_rows(train)[:, None]).sum(axis=0)
    served = train.mask.sum(axis=0)
    checked = (test.mask & logged_rows(test)[:, None]).sum(axis=0)
    out = {}
    for j in cols:
        name = train.models[j]
        probe = f"log more of its answers (router probe LOGS --model {name} picks which queries)"
        if probes[j] and probes[j] < min_answers:
            out[name] = (f"answered {probes[j]:,} training queries, under the {min_answers:,} the job trusts "
                         f"(min_answers): {probe}")
        elif not probes[j] and served[j] < min_answers:
            out[name] = (f"answered {served[j]:,} training queries of the router's own traffic, under the "
                         f"{min_answers:,} the job trusts (min_answers): serve it longer (router serve "
                         f"--explore-new {name}:0.05), or {probe}")
        elif probes[j] and checked[j] < MIN_HELD_OUT:
            out[name] = (f"has {checked[j]:,} answers in the held-out split, under the {MIN_HELD_OUT} its "
                         f"evaluation needs: {probe}")
    return out


@dataclass(frozen=True)
class Imputer:
    """Per sparse model (``columns``), two fitted ridges: its score on the other models' scores, then the residual
    on the embedding.

    ``answers``: its scored queries in the fitting data; ``mean``/``se``: its mean score and that mean's standard
    error; ``rmse``: the leave-one-out error of the per-query estimate (of the second stage)."""

    columns: np.ndarray
    features: np.ndarray  # the models whose scores are features (the others than the sparse ones)
    fill: np.ndarray  # per feature model, the value of a missing score (its mean)
    fits: tuple  # per sparse model, (ridge on the scores or None, ridge on the embedding)
    answers: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    rmse: np.ndarray

    def scores_of(self, data: RoutingData) -> np.ndarray:
        """The feature models' scores on ``data``'s queries, a missing one at that model's mean."""
        return np.where(data.mask[:, self.features], data.scores[:, self.features], self.fill)

    def predict(self, data: RoutingData, X: np.ndarray) -> np.ndarray:
        """(n_queries, len(columns)) estimated scores of the sparse models on ``data``'s queries."""
        F = self.scores_of(data)
        return np.column_stack([(0.0 if first is None else first.predict(F)) + second.predict(X)
                                for first, second in self.fits]) if len(self.columns) else np.zeros((len(F), 0))


def fit_imputer(data: RoutingData, X: np.ndarray) -> Imputer:
    """The ``Imputer`` of ``data``'s sparse models, fitted on the queries each answered (never bandit rows).

    Two stages, each with its own penalty (alpha by leave-one-out): the few other models' scores first, the
    embedding's hundreds of coordinates on what they leave. One penalty for both blocks made the informative
    few pay for the many: on the NQ sample and RouterBench with 150 answers, the one-stage fit was barely
    better than the model's mean, the two-stage one as good as the scores alone or better."""
    from sklearn.linear_model import RidgeCV

    cols = sparse_models(data)
    features = np.setdiff1d(np.arange(data.n_models), cols)
    full = logged_rows(data)
    fill = np.nan_to_num(model_means(data.scores[full][:, features], data.mask[full][:, features]), nan=0.0)
    imp = Imputer(cols, features, fill, (), np.zeros(0, int), np.zeros(0), np.zeros(0), np.zeros(0))
    F, X = imp.scores_of(data), np.asarray(X, dtype=np.float64)
    fits, answers, mean, se, rmse = [], [], [], [], []
    for j in cols:
        rows = np.flatnonzero(full & data.mask[:, j])
        y = data.scores[rows, j]
        first = RidgeCV(alphas=ALPHAS).fit(F[rows], y) if len(features) else None
        rest = y - (first.predict(F[rows]) if first is not None else 0.0)
        second = RidgeCV(alphas=ALPHAS).fit(X[rows], rest)
        fits.append((first, second))
        answers.append(len(rows))
        mean.append(float(y.mean()))
        se.append(float(y.std(ddof=1) / np.sqrt(len(y))) if len(y) > 1 else float("nan"))
        rmse.append(float(np.sqrt(max(-second.best_score_, 0.0))))  # RidgeCV's leave-one-out mean squared error
    return replace(imp, fits=tuple(fits), answers=np.array(answers, dtype=np.int64), mean=np.array(mean),
                   se=np.array(se), rmse=np.array(rmse))


def versus_best_other(data: RoutingData, j: int, confidence: float) -> tuple[str, float, float, int] | None:
    """Model ``j`` against the best of the models that are not sparse (by mean), on the ``logged_rows``
    both answered: ``(that model, mean gain, its one-sided lower bound at confidence, queries)``; None when
    there is no such model or fewer than two such queries."""
    from statistics import NormalDist

    others = np.setdiff1d(np.arange(data.n_models), sparse_models(data))
    others = others[others != j]
    if not len(others):
        return None
    best = int(others[np.nanargmax(model_means(data.scores[:, others], data.mask[:, others]))])
    rows = logged_rows(data) & data.mask[:, j] & data.mask[:, best]
    if rows.sum() < 2:
        return None
    diff = data.scores[rows, j] - data.scores[rows, best]
    lower = diff.mean() - NormalDist().inv_cdf(confidence) * diff.std(ddof=1) / np.sqrt(rows.sum())
    return data.models[best], float(diff.mean()), float(lower), int(rows.sum())


def _flag(data: RoutingData, rows: np.ndarray) -> np.ndarray:
    return rows if data.estimated is None else data.estimated | rows


def fill_estimates(data: RoutingData, q_hat: np.ndarray, columns: np.ndarray) -> RoutingData:
    """``data`` with the missing scores of ``columns`` (on the ``logged_rows``) set to ``q_hat``
    (n, len(columns)), clipped to the model's observed range, marked scored; those rows are flagged
    ``estimated``. The direct estimate: for the routers to learn from."""
    if not len(columns):
        return data
    full = logged_rows(data)
    scores, mask = data.scores.copy(), data.mask.copy()
    touched = np.zeros(data.n_queries, dtype=bool)
    for k, j in enumerate(columns):
        missing = full & ~mask[:, j]
        seen = scores[mask[:, j], j]
        scores[missing, j] = np.clip(q_hat[missing, k], seen.min(), seen.max())
        mask[missing, j] = True
        touched |= missing
    return replace(data, scores=scores, mask=mask, estimated=_flag(data, touched))


def dr_estimates(data: RoutingData, q_hat: np.ndarray, columns: np.ndarray) -> RoutingData:
    """``data`` with every score of ``columns`` set to its doubly robust value ``q + answered / share * (score -
    q)`` on the rows evaluation scores (``logged_rows`` every other model answered), ``share`` the share of
    those the model answered; marked scored, the rows flagged ``estimated``. Unbiased when the answered rows
    are a uniform sample of them, whatever the estimate's error. The caller makes sure ``share > 0``."""
    if not len(columns):
        return data
    dense = np.setdiff1d(np.arange(data.n_models), columns)
    rows = logged_rows(data) & data.mask[:, dense].all(axis=1)
    scores, mask = data.scores.copy(), data.mask.copy()
    for k, j in enumerate(columns):
        seen = rows & mask[:, j]
        share = seen.sum() / max(rows.sum(), 1)
        q = q_hat[:, k]
        resid = np.where(seen, np.nan_to_num(scores[:, j] - q), 0.0)
        value = q + resid / share if share > 0 else q
        scores[rows, j], mask[rows, j] = value[rows], True
    return replace(data, scores=scores, mask=mask, estimated=_flag(data, rows))
