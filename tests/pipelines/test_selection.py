"""Selection on the training split (pipelines.selection), on the bundled sample's real scores and costs:
the out-of-fold winner, ties, a model scored only on held-out queries, and the cap on the queries the folds
run over."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.selection import select
from router.data.labels import best_model_labels
from router.routers import make_router

CANDIDATES = {
    "best_single": functools.partial(make_router, "best_single"),
    "ridge": functools.partial(make_router, "ridge", cv=3),
    "knn": functools.partial(make_router, "knn", cv=3, n_neighbors=(10, 30)),
}


POINT = SimpleNamespace(lam=0.0, bias=None)  # quality only: no cost weight, no share bias


def _train(nq):
    return nq.subset(np.arange(350))


def test_selection_picks_best_single_when_every_learned_router_loses(nq):
    """On features that carry no information about the query, routers that fit them closely lose to
    always calling the best model out of fold, and selection says so."""
    train = _train(nq)
    X = np.random.default_rng(0).normal(size=(train.n_queries, 16)).astype(np.float32)
    overfitting = {
        "best_single": CANDIDATES["best_single"],
        "random": functools.partial(make_router, "random"),
        "knn": functools.partial(make_router, "knn", n_neighbors=1, weighting="uniform", prior_weight=0.0),
        "ridge": functools.partial(make_router, "ridge", alpha=1e-3),
    }
    sel = select(overfitting, X, train, dict.fromkeys(overfitting, POINT), quality_only=False, n_folds=5, seed=0)
    assert sel.label == "best_single" and sel.folds == 5
    assert list(sel.oof) == list(overfitting)  # candidate order kept
    assert all(sel.oof["best_single"] > sel.oof[k] for k in ("random", "knn", "ridge"))
    assert sel.ranking()[0] == "best_single"


def test_selection_ties_go_to_the_earlier_candidate(nq):
    train = _train(nq)
    X = np.zeros((train.n_queries, 4), dtype=np.float32)  # every router predicts the training means
    twins = {"best_single": CANDIDATES["best_single"], "ridge": functools.partial(make_router, "ridge", alpha=1.0)}
    sel = select(twins, X, train, dict.fromkeys(twins, POINT), quality_only=False, n_folds=3, seed=0)
    assert sel.oof["ridge"] == pytest.approx(sel.oof["best_single"]) and sel.label == "best_single"


def test_selection_picks_a_learned_router_when_the_features_carry_the_answer(nq):
    """Features that reveal each query's best model: every learned router beats best single out of
    fold, and the selected one has the best out-of-fold objective."""
    train = _train(nq)
    best = best_model_labels(train.scores, train.mask, train.costs)
    X = np.eye(train.n_models, dtype=np.float32)[best] + 0.01 * np.random.default_rng(1).normal(
        size=(train.n_queries, train.n_models)).astype(np.float32)
    lams = dict.fromkeys(CANDIDATES, POINT)
    sel = select(CANDIDATES, X, train, lams, quality_only=False, n_folds=5, seed=0)
    assert sel.label != "best_single" and sel.oof[sel.label] == max(sel.oof.values())
    assert sel.oof[sel.label] > sel.oof["best_single"] + 0.05


def test_a_model_scored_only_on_held_out_queries_is_named(nq, nq_X):
    """Not "models at columns [0] have no observed score" from inside a fit: the model, by name."""
    from dataclasses import replace

    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment, split_data

    job = JobConfig(routers=[{"family": "knn"}])
    split = split_data(nq, job)
    scores, mask = nq.scores.copy(), nq.mask.copy()
    scores[split.train, 2], mask[split.train, 2] = np.nan, False
    data = replace(nq, scores=scores, mask=mask)
    with pytest.raises(ValueError, match=f"'{nq.models[2]}' has no score on any of the "
                                         f"{len(split.train):,} training queries"):
        run_experiment(data, nq_X, job, split=split)


def test_selection_and_operating_points_run_on_a_capped_sample(nq, nq_X):
    """``selection.max_queries``: the folds run over a seeded sample of the training queries (the final
    fits over all of them); at or above the training size nothing changes."""
    from pipelines.config import JobConfig, SelectionConfig
    from pipelines.experiment import run_experiment

    base = dict(routers=[{"family": "knn", "params": {"cv": 3}}, {"family": "ridge", "params": {"cv": 3}}],
                export_router="auto")
    capped = run_experiment(nq, nq_X, JobConfig(**base, selection=SelectionConfig(max_queries=150)))
    assert capped.selection.n_queries == 150 < capped.train.n_queries
    assert f"on 150 of {capped.train.n_queries} queries" in capped.outcome_lines(JobConfig())[0]
    assert capped.fitted["knn"].router.X_.shape[0] == capped.train.n_queries  # the final fit saw every query
    full = run_experiment(nq, nq_X, JobConfig(**base, selection=SelectionConfig(max_queries=None)))
    same = run_experiment(nq, nq_X, JobConfig(**base, selection=SelectionConfig(max_queries=10_000)))
    assert full.selection.oof == same.selection.oof and full.selection.n_queries == full.train.n_queries


def test_above_the_cap_the_final_fit_takes_the_hyper_parameters_searched_on_the_sample(nq, nq_X):
    """Above ``selection.max_queries`` every family searches its grid on the sample and the final fit on all
    training queries is a single fit with those values; an ensemble's members are frozen too."""
    from pipelines.config import JobConfig, SelectionConfig
    from pipelines.experiment import run_experiment

    job = JobConfig(routers=[{"family": "ridge", "params": {"cv": 3}},
                             {"family": "ensemble", "params": {"cv": 3}}], selection=SelectionConfig(max_queries=150))
    exp = run_experiment(nq, nq_X, job)
    ridge = exp.fitted["ridge"].router
    assert isinstance(ridge.alpha, float) and ridge.cv_results_ == {}  # one alpha given: no search at full size
    ens = exp.fitted["ensemble"].router
    assert len(ens.weights_) == len(ens.routers) and ens.cv_results_ == {}
    for _, member in ens.routers:  # members frozen: single values, not grids
        assert not any(isinstance(v, tuple) and k not in ("weights",) for k, v in member.get_params(deep=False).items()
                       if k in ("alpha", "n_neighbors", "weighting", "temperature", "prior_weight"))


def test_a_frozen_ensemble_without_its_zero_weight_members_still_calibrates(nq, nq_X):
    """Members an ensemble gives no weight are dropped with their weight when it is frozen above the cap; its
    operating point is found on the frozen form (the member and weight counts must agree)."""
    from pipelines.config import JobConfig, SelectionConfig
    from pipelines.experiment import run_experiment

    job = JobConfig(routers=[{"family": "ensemble", "params": {"cv": 3, "weights": [1.0, 0.0, 0.0]}}],
                    export_router="ensemble", selection=SelectionConfig(max_queries=150))
    ens = run_experiment(nq, nq_X, job).fitted["ensemble"].router
    assert [name for name, _ in ens.routers] == ["knn"] and tuple(ens.weights_) == (1.0,)


def test_above_the_cap_selection_grades_the_operating_point_folds_instead_of_refitting(nq, nq_X):
    """Above ``selection.max_queries`` selection reuses the operating-point folds' predictions (hyper-parameters
    fixed on the sample): the same ranking as refitting those frozen routers in every fold, and it says so."""
    import functools

    from pipelines.config import JobConfig, SelectionConfig
    from pipelines.experiment import run_experiment
    from pipelines.selection import frozen_params, selection_sample
    from pipelines.selection import select
    from router.routers import make_router

    # quality at lam 0: the folds' model costs (each fold's means) then decide nothing, so both ways grade alike
    job = JobConfig(routers=[{"family": "knn", "params": {"cv": 3}}, {"family": "ridge", "params": {"cv": 3}}],
                    selection=SelectionConfig(max_queries=150, folds=3), objective="quality")
    exp = run_experiment(nq, nq_X, job)
    assert not exp.selection.nested and "hyper-parameters searched once on them" in exp.outcome_lines(job)[0]
    train_rows = exp.split.train
    sample = selection_sample(len(train_rows), 150, job.split.seed)
    X_sel, sel = nq_X[train_rows][sample], exp.train.subset(sample)
    makers = {}
    for spec in job.candidates():
        searched = make_router(spec.family, **spec.params).fit(X_sel, sel.scores, sel.costs, sel.mask)
        makers[spec.label] = functools.partial(make_router, spec.family, **frozen_params(spec, searched))
    refit = select(makers, X_sel, sel, {k: f.point for k, f in exp.fitted.items()}, exp.quality_only, 3,
                   job.split.seed, goal=exp.goal, reference=exp.reference)
    assert refit.nested and refit.oof == pytest.approx(exp.selection.oof) and refit.label == exp.selection.label
