"""The kNN family (router.routers.knn): CV on training folds only, k chosen by the structure, the prior where
no neighbour saw a model, and a capped set of references."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers._common import routing_quality
from router.routers.knn import KNNRouter
from router.routers.search import folds


def test_knn_cv_scores_come_from_training_folds_only(mmlu):
    """Each CV score equals a fixed-k kNN refitted on the training folds and scored on the held-out fold."""
    d, X, tr, _ = mmlu
    Xt, Yt, Mt = X[tr], d.scores[tr], d.mask[tr]
    router = KNNRouter(n_neighbors=(5, 30), weighting=("uniform", "similarity"), prior_weight=1.0, cv=3)
    router.fit(Xt, Yt, mask=Mt)
    assert {g[:2] for g in router.cv_results_} == {(k, w) for k in (5, 30) for w in ("uniform", "similarity")}
    for k, w in [(5, "similarity"), (30, "uniform")]:
        manual = np.mean([
            routing_quality(Yt[va], Mt[va], KNNRouter(n_neighbors=k, weighting=w, prior_weight=1.0)
                            .fit(Xt[f], Yt[f], mask=Mt[f]).predict_scores(Xt[va]))
            for f, va in folds(len(tr), 3, 0)
        ])
        assert router.cv_results_[(k, w, router.temperature_, 1.0)] == pytest.approx(manual)
    assert (router.n_neighbors_, router.weighting_) == max(router.cv_results_, key=router.cv_results_.get)[:2]


def test_knn_cv_picks_small_k_for_local_structure_and_large_k_for_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16))
    cluster = rng.integers(0, 40, 800)
    X = centres[cluster] + 0.05 * rng.normal(size=(800, 16))
    # Local: each tight cluster has its own winning model among 4.
    Y_local = (np.arange(4)[None, :] == (cluster % 4)[:, None]).astype(float)
    local = KNNRouter(n_neighbors=(5, 200), weighting="uniform", prior_weight=1.0, cv=3).fit(X, Y_local)
    # Noise: model 0 is best everywhere (p=0.7 vs 0.5), nothing local to learn.
    Y_noise = (rng.random((800, 4)) < np.array([0.7, 0.5, 0.5, 0.5])).astype(float)
    noise = KNNRouter(n_neighbors=(5, 200), weighting="uniform", prior_weight=1.0, cv=3).fit(X, Y_noise)
    assert local.n_neighbors_ == 5 and noise.n_neighbors_ == 200


def test_knn_falls_back_to_prior_where_no_neighbour_saw_a_model():
    X = np.eye(4)
    Y = np.array([[1.0, np.nan], [0.0, np.nan], [1.0, 1.0], [1.0, 0.0]])
    router = KNNRouter(n_neighbors=1, weighting="uniform", prior_weight=0.0).fit(X, Y)
    S = router.predict_scores(X[:2])
    np.testing.assert_allclose(S[:, 1], [0.5, 0.5])  # model 1's training mean
    np.testing.assert_allclose(S[:, 0], [1.0, 0.0])


def test_knn_with_capped_references_routes_like_the_exact_search(nq_split):
    """``max_references``: below the cap nothing changes; with a cap at 40% of the training queries the
    head keeps that many references and routes most test queries as the exact search does."""
    d, X, tr, te = nq_split
    X_tr, Y_tr, C_tr, M_tr = X[tr], d.scores[tr], d.costs[tr], d.mask[tr]
    X_te, Y_te = X[te], d.scores[te]
    params = dict(n_neighbors=(10, 30), weighting="uniform", prior_weight=3.0, cv=3)
    exact = KNNRouter(max_references=None, **params).fit(X_tr, Y_tr, C_tr, M_tr)
    under = KNNRouter(max_references=len(X_tr), **params).fit(X_tr, Y_tr, C_tr, M_tr)
    np.testing.assert_array_equal(exact.predict_scores(X_te), under.predict_scores(X_te))
    cap = int(0.4 * len(X_tr))
    capped = KNNRouter(max_references=cap, **params).fit(X_tr, Y_tr, C_tr, M_tr)
    assert capped.X_.shape[0] == cap and capped.mask_.shape[0] == cap
    agree = (capped.route(X_te) == exact.route(X_te)).mean()
    quality = lambda r: Y_te[np.arange(len(Y_te)), r.route(X_te)].mean()  # noqa: E731
    assert agree >= 0.7 and abs(quality(capped) - quality(exact)) <= 0.05, (agree, quality(capped), quality(exact))
