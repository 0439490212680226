"""Sparse models (issue 25): a model with a few hundred answers on the NQ sample has its missing scores estimated
by borrowing strength, its held-out values doubly robust; the job holds back a model under min_answers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pipelines.config import JobConfig
from pipelines.evidence import cross_fitted
from pipelines.experiment import calibrate_router, sparse_values
from pipelines.gate import goal_for
from router.evaluation.sparse import dr_estimates, fill_estimates, fit_imputer, partial_models, sparse_models


def answered_only(data, j: int, rows: np.ndarray):
    """``data`` with model ``j`` scored on ``rows`` alone."""
    mask = data.mask.copy()
    mask[:, j] = False
    mask[rows, j] = True
    return replace(data, mask=mask, scores=np.where(mask, data.scores, np.nan))


def test_estimates_borrow_strength_from_the_other_models(nq, nq_X):
    """Over draws of 150 answers, the estimate of every unanswered score is nearer the truth than the model's
    mean over its answers (the other models' scores on a query say how hard it is)."""
    for j in range(nq.n_models):
        est, flat = [], []
        for seed in range(3):
            rows = np.random.default_rng(seed).choice(nq.n_queries, 150, replace=False)
            data = answered_only(nq, j, rows)
            imp = fit_imputer(data, nq_X)
            assert imp.columns.tolist() == [j] and imp.answers.tolist() == [150]
            missing = ~data.mask[:, j]
            truth = nq.scores[missing, j]
            est.append(np.mean((imp.predict(data, nq_X)[missing, 0] - truth) ** 2))
            flat.append(np.mean((nq.scores[rows, j].mean() - truth) ** 2))
            assert 0 < imp.se[0] < 0.1 and 0 < imp.rmse[0] < 1
        assert np.mean(est) < np.mean(flat), nq.models[j]


def test_training_gets_estimates_and_held_out_rows_doubly_robust_values(nq, nq_X):
    rows = np.random.default_rng(0).choice(nq.n_queries, 200, replace=False)
    data = answered_only(nq, 0, rows)
    imp = fit_imputer(data, nq_X)
    q = imp.predict(data, nq_X)
    filled = fill_estimates(data, q, imp.columns)
    missing = ~data.mask[:, 0]
    assert filled.mask.all() and (filled.estimated == missing).all()
    assert (filled.scores[rows, 0] == nq.scores[rows, 0]).all()  # answers kept as logged
    seen = nq.scores[rows, 0]
    assert seen.min() <= filled.scores[missing, 0].min() and filled.scores[missing, 0].max() <= seen.max()
    dr = dr_estimates(data, q, imp.columns)
    assert dr.mask.all() and dr.estimated.all()
    assert np.allclose(dr.scores[:, 1:], nq.scores[:, 1:])  # the other models untouched
    share = 200 / nq.n_queries
    assert np.allclose(dr.scores[rows, 0], q[rows, 0] + (nq.scores[rows, 0] - q[rows, 0]) / share)
    assert np.allclose(dr.scores[missing, 0], q[missing, 0])


def test_doubly_robust_means_are_unbiased_over_uniform_samples(nq, nq_X):
    """Whatever the estimate's error, the mean of the doubly robust column over uniform samples of answers is the
    model's true mean: the average over 40 draws is within 3 standard errors of it."""
    j, errors = 0, []
    for seed in range(40):
        rows = np.random.default_rng(seed).choice(nq.n_queries, 100, replace=False)
        data = answered_only(nq, j, rows)
        imp = fit_imputer(data, nq_X)
        errors.append(dr_estimates(data, imp.predict(data, nq_X), imp.columns).scores[:, j].mean()
                      - nq.scores[:, j].mean())
    errors = np.asarray(errors)
    assert abs(errors.mean()) < 3 * errors.std(ddof=1) / np.sqrt(len(errors))


def test_only_models_scored_on_under_half_the_queries_are_sparse(nq):
    data = answered_only(nq, 2, np.arange(300))  # 60%: a few missing answers, left as before
    assert not len(sparse_models(data)) and not len(partial_models(data))
    data = answered_only(nq, 2, np.arange(200))
    assert sparse_models(data).tolist() == partial_models(data).tolist() == [2]
    pair = answered_only(nq.select_models(nq.models[:3]), 2, np.arange(100))  # two incumbents and a new model
    assert sparse_models(pair).tolist() == [2]
    one_each = nq.mask & (np.arange(6)[None, :] == (np.arange(500) % 6)[:, None])  # traffic, no propensities
    assert not len(partial_models(replace(nq, mask=one_each, scores=np.where(one_each, nq.scores, np.nan))))


def test_the_job_holds_back_a_model_under_min_answers(nq, nq_X):
    data = answered_only(nq, 0, np.arange(0, 500, 5))  # 100 answers, about 70 in the training split
    train, test = data.subset(np.arange(350)), data.subset(np.arange(350, 500))
    kept, held_out, sparse = sparse_values(train, test, nq_X[:350], nq_X[350:], min_answers=100)
    assert nq.models[0] not in kept.models and nq.models[0] not in held_out.models
    assert list(sparse.held_back) == [nq.models[0]] and sparse.models == ()
    (line,) = sparse.lines(350)
    assert line.startswith(f"held back (it takes no traffic): {nq.models[0]} answered 70 training queries, under "
                           "the 100 the job trusts (min_answers): log more of its answers (router probe")
    kept, held_out, sparse = sparse_values(train, test, nq_X[:350], nq_X[350:], min_answers=50)
    assert kept.models == nq.models and sparse.models == (nq.models[0],) and not sparse.held_back
    assert kept.mask.all() and held_out.mask.all() and held_out.estimated.all()
    job = JobConfig(routers=[{"family": "ridge"}])
    assert cross_fitted({}, nq_X[:350], kept, job, goal_for(job, kept), calibrate_router) is None  # no gate evidence
    few = answered_only(nq, 0, np.r_[0:350:3, 350:500:30])  # 117 training answers, 5 held out
    kept, _, sparse = sparse_values(few.subset(np.arange(350)), few.subset(np.arange(350, 500)), nq_X[:350],
                                    nq_X[350:], min_answers=100)
    assert nq.models[0] not in kept.models
    assert sparse.held_back[nq.models[0]].startswith("has 5 answers in the held-out split, under the 20")


def test_a_new_model_served_a_share_is_held_back_until_it_has_enough_answers(nq, nq_X):
    """Five models fully logged; a sixth answered only the queries the gateway's --explore-new sent it."""
    mask = nq.mask.copy()
    mask[:, 5] = False
    served = np.arange(0, 500, 8)  # one scored model per served query, the sixth, drawn with propensity 0.1
    mask[served] = False
    mask[served, 5] = True
    propensities = np.full(mask.shape, np.nan)
    propensities[served, 5] = 0.1
    data = replace(nq, mask=mask, scores=np.where(mask, nq.scores, np.nan), propensities=propensities)
    assert partial_models(data).tolist() == [5] and not len(sparse_models(data))  # no fully logged answer
    train, test = data.subset(np.arange(350)), data.subset(np.arange(350, 500))
    kept, _, sparse = sparse_values(train, test, nq_X[:350], nq_X[350:], min_answers=100)
    n = int(mask[:350, 5].sum())
    assert nq.models[5] not in kept.models and sparse.held_back == {nq.models[5]: (
        f"answered {n} training queries of the router's own traffic, under the 100 the job trusts (min_answers): "
        f"serve it longer (router serve --explore-new {nq.models[5]}:0.05), or log more of its answers (router "
        f"probe LOGS --model {nq.models[5]} picks which queries)")}
    kept, _, sparse = sparse_values(train, test, nq_X[:350], nq_X[350:], min_answers=20)
    assert kept.models == nq.models and not sparse.held_back  # enough: the weighted families learn from it
    assert sparse.unproven == (nq.models[5],)  # but it is never the best single model on served answers alone


def test_a_sparse_model_is_the_best_single_model_only_when_its_answers_show_it(nq, nq_X):
    """On the queries it answered, the NQ sample's best model beats the next by a wide margin: it may be the
    best single model. Answers only where it scored the same as that model show nothing: it may not, and the
    best single router and index pass over it."""
    from pipelines.experiment import usable_candidates
    from router.evaluation.metrics import best_single_index
    from router.evaluation.sparse import versus_best_other
    from router.routers.baselines import BestSingleRouter

    j = int(np.argmax(nq.scores.mean(axis=0)))
    rows = np.random.default_rng(0).choice(nq.n_queries, 150, replace=False)
    best, gain, lower, n = versus_best_other(answered_only(nq, j, rows), j, 0.9)
    assert best != nq.models[j] and n == 150 and gain > lower > 0
    runner_up = nq.models.index(best)
    same = np.flatnonzero(nq.scores[:, j] == nq.scores[:, runner_up])[:150]
    _, gain, lower, _ = versus_best_other(answered_only(nq, j, same), j, 0.9)
    assert gain == 0 and lower <= 0
    specs = usable_candidates(nq, JobConfig(routers=[{"family": "best_single"}]), exclude=[j])
    assert specs["best_single"].params == {"exclude": [j]}
    picks = BestSingleRouter(exclude=[j]).fit(nq_X, nq.scores, nq.costs, nq.mask).route(nq_X)
    assert j not in picks and (BestSingleRouter().fit(nq_X, nq.scores, nq.costs, nq.mask).route(nq_X) == j).all()
    assert best_single_index(nq) == j and best_single_index(nq, exclude=[j]) == runner_up
    costs = np.nanmean(nq.costs, axis=0)
    cheapest = int(np.argmin(costs))
    only = float(np.sort(costs)[0] * 1.0001)  # a budget that only the cheapest model fits
    assert best_single_index(nq, budget=only) == cheapest and best_single_index(nq, budget=only, exclude=[cheapest])\
        != cheapest
