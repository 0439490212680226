"""Router families: one shared suite over every registered family, then focused tests."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.optimize
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge

from router.routers import ROUTERS, make_router
from router.routers._common import routing_quality
from router.routers.features import TaskOneHot
from router.routers.knn import KNNRouter
from router.routers.linear import ridge_path
from router.routers.mf import MFRouter
from router.routers.search import cv_search, folds

# Small settings per family so the whole file runs in well under two minutes on 2 cores.
FAST = {
    "best_single": {},
    "random": {"random_state": 3},
    "knn": {"cv": 3},
    "ridge": {"cv": 3},
    "logistic": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "lgbm": {"n_estimators": 40, "n_components": 16, "min_child_samples": 10},
    "classifier": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "mf": {"dim": 8, "alpha": 0.03, "max_iter": 60},
    "cluster": {"n_clusters": (4, 16), "shrink": (1.0, 5.0), "temperature": (0.0, 0.05), "cv": 3},
    "irt": {"rank": (1, 4), "l2": (0.01, 0.1), "cv": 3, "max_iter": 100},
    "task": {"C": (0.1, 1.0), "shrink": (1.0, 10.0), "cv": 3},
    "ensemble": {"routers": [("ridge", make_router("ridge", alpha=30.0)),
                             ("knn", make_router("knn", n_neighbors=20, weighting="uniform", prior_weight=1.0))],
                 "cv": 3},
}
FAMILIES = sorted(ROUTERS)
LEARNED = [f for f in FAMILIES if f != "random"]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # A 2-thread OpenBLAS on a loaded 2-core machine is 10-40x slower than one thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def split(n: int, seed: int = 0, train: float = 0.7):
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(train * n)
    return np.sort(perm[:cut]), np.sort(perm[cut:])


@pytest.fixture(scope="module")
def mmlu(mmlu_small, mmlu_small_X):
    tr, te = split(mmlu_small.n_queries)
    return mmlu_small, mmlu_small_X, tr, te


@pytest.fixture(scope="module")
def nq_split(nq, nq_X):
    tr, te = split(nq.n_queries)
    return nq, nq_X, tr, te


def fit(name, d, X, rows, **override):
    return make_router(name, **(FAST[name] | override)).fit(X[rows], d.scores[rows], d.costs[rows], d.mask[rows])


def test_every_family_has_fast_settings():
    assert set(FAST) == set(ROUTERS)


# ------------------------------------------------------------------------- shared suite


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_predict_shapes(name, mmlu):
    d, X, tr, te = mmlu
    router = make_router(name, **FAST[name])
    assert router.fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr]) is router
    S = router.predict_scores(X[te])
    assert S.shape == (len(te), d.n_models) and S.dtype == np.float64
    assert np.isfinite(S).all()
    picks = router.route(X[te])
    assert picks.shape == (len(te),) and picks.min() >= 0 and picks.max() < d.n_models
    with pytest.raises(ValueError, match="features"):
        router.predict_scores(X[te][:, :10])


@pytest.mark.parametrize("name", FAMILIES)
def test_not_fitted_error(name, mmlu):
    _, X, _, te = mmlu
    with pytest.raises(NotFittedError):
        make_router(name, **FAST[name]).predict_scores(X[te])


@pytest.mark.parametrize("name", FAMILIES)
def test_clone_pickle_and_seed_determinism(name, mmlu):
    d, X, tr, te = mmlu
    router = fit(name, d, X, tr)
    S = router.predict_scores(X[te])
    refit = clone(router).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    np.testing.assert_array_equal(refit.predict_scores(X[te]), S)
    restored = pickle.loads(pickle.dumps(router))
    np.testing.assert_array_equal(restored.predict_scores(X[te]), S)
    # Predictions of a query do not depend on the batch it comes in.
    np.testing.assert_allclose(router.predict_scores(X[te][5:6]), S[5:6], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", FAMILIES)
def test_best_params_reproduce_the_tuned_router(name, mmlu):
    """``best_params_`` (what CV chose) refitted without a search gives the same router: the
    ensemble relies on this to skip nested CV."""
    d, X, tr, te = mmlu
    router = fit(name, d, X, tr)
    frozen = clone(router).set_params(**getattr(router, "best_params_", {}))
    frozen.fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    assert not getattr(frozen, "cv_results_", {})
    np.testing.assert_allclose(frozen.predict_scores(X[te]), router.predict_scores(X[te]), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("data", ["mmlu", "nq_split"])
def test_beats_random_router(name, data, request):
    d, X, tr, te = request.getfixturevalue(data)
    random_q = routing_quality(d.scores[te], d.mask[te], fit("random", d, X, tr).predict_scores(X[te]))
    q = routing_quality(d.scores[te], d.mask[te], fit(name, d, X, tr).predict_scores(X[te]))
    assert q > random_q + 0.03, f"{name} test quality {q:.3f} vs random {random_q:.3f}"


@pytest.mark.parametrize("name", FAMILIES)
def test_masked_cells_are_ignored(name, nq_split):
    """Cells masked out must not matter: NaN there, or garbage hidden by ``mask``, fit the same."""
    d, X, tr, te = nq_split
    Y = d.scores[tr].copy()
    hidden = np.random.default_rng(1).random(Y.shape) < 0.2
    nan_Y = np.where(hidden, np.nan, Y)
    garbage_Y = np.where(hidden, 100.0, Y)
    a = make_router(name, **FAST[name]).fit(X[tr], nan_Y, d.costs[tr])
    b = make_router(name, **FAST[name]).fit(X[tr], garbage_Y, d.costs[tr], mask=~hidden)
    Sa = a.predict_scores(X[te])
    assert np.isfinite(Sa).all()
    np.testing.assert_allclose(b.predict_scores(X[te]), Sa, rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------------- registry & baselines


def test_make_router_names_valid_choices():
    with pytest.raises(ValueError, match="valid names: .*'knn'.*'ridge'"):
        make_router("nearest")
    with pytest.raises(ValueError, match="no parameter.*'k'.*valid: .*n_neighbors"):
        make_router("knn", k=5)
    assert make_router("ridge", alpha=2.0).alpha == 2.0


def test_best_single_predicts_training_means(mmlu):
    d, X, tr, te = mmlu
    S = fit("best_single", d, X, tr).predict_scores(X[te])
    means = np.nanmean(np.where(d.mask[tr], d.scores[tr], np.nan), axis=0)
    np.testing.assert_allclose(S, np.broadcast_to(means, S.shape))


def test_random_router_is_seeded(mmlu):
    d, X, tr, te = mmlu
    S3 = fit("random", d, X, tr).predict_scores(X[te])
    S4 = fit("random", d, X, tr, random_state=4).predict_scores(X[te])
    assert not np.allclose(S3, S4)
    assert ((0 <= S3) & (S3 < 1)).all()


# ------------------------------------------------------------------------- routing quality & CV search


def test_routing_quality_grades_only_observed_choices_with_ties_to_the_lower_index():
    Y = np.array([[1.0, 0.0, np.nan], [0.0, 1.0, 1.0], [np.nan, np.nan, np.nan]])
    mask = ~np.isnan(Y)
    # Row 0: the unobserved model scores highest (NaN in row 2 is never looked at); row 1: a tie.
    S = np.array([[0.0, 0.0, 9.0], [0.5, 0.5, 0.2], [np.nan, 1.0, 2.0]])
    assert routing_quality(Y, mask, S) == 0.5  # picks model 0 in both graded rows
    assert np.isnan(routing_quality(Y[2:], mask[2:], S[2:]))


def _toy_search_data(n=60, m=3, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.random((n, m))
    mask = rng.random((n, m)) > 0.2
    mask[:, 0] = True
    return Y, mask, rng.random((n, m))


def test_cv_search_averages_folds_and_keeps_the_first_of_tied_grid_points():
    Y, mask, noise = _toy_search_data()
    calls = []

    def fold_predictions(tr, va):  # "oracle" twice (a tie), noise in between
        calls.append(va)
        yield Y[va]
        yield noise[va]
        yield Y[va]

    best, results = cv_search(["oracle", "noise", "oracle too"], fold_predictions, Y, mask, 4, 0)
    assert len(calls) == 4 and list(results) == ["oracle", "noise", "oracle too"]
    assert best == "oracle" and results["oracle"] == results["oracle too"]
    manual = [routing_quality(Y[va], mask[va], noise[va]) for _, va in folds(len(Y), 4, 0)]
    assert results["noise"] == pytest.approx(np.mean(manual))


def test_cv_search_pooled_scores_all_out_of_fold_predictions_at_once():
    Y, mask, noise = _toy_search_data()
    _, results = cv_search([0.5, 2.0], lambda tr, va: (noise[va] ** p for p in (0.5, 2.0)), Y, mask, 3, 1,
                           pooled=True)
    for p in (0.5, 2.0):
        assert results[p] == routing_quality(Y, mask, noise ** p)


def test_cv_search_with_one_candidate_skips_cv():
    def never(tr, va):
        raise AssertionError("no fold may be fitted for a single candidate")

    Y, mask, _ = _toy_search_data()
    assert cv_search([(3, "uniform")], never, Y, mask, 5, 0) == ((3, "uniform"), {})


# ------------------------------------------------------------------------- kNN


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


# ------------------------------------------------------------------------- linear


def test_ridge_path_matches_sklearn_per_model_on_observed_rows():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    Y = X @ rng.normal(size=(6, 3)) + rng.normal(size=(120, 3))
    mask = rng.random(Y.shape) > 0.25
    coef, icpt = ridge_path(X, np.where(mask, Y, np.nan), mask, np.array([0.5, 5.0]))
    for a, alpha in enumerate([0.5, 5.0]):
        for j in range(3):
            ref = Ridge(alpha=alpha).fit(X[mask[:, j]], Y[mask[:, j], j])
            np.testing.assert_allclose(coef[a][:, j], ref.coef_, rtol=1e-8)
            assert icpt[a, j] == pytest.approx(ref.intercept_)


def test_ridge_cv_chooses_alpha_from_grid_by_routing_quality(mmlu):
    d, X, tr, _ = mmlu
    router = fit("ridge", d, X, tr, alpha=(0.01, 30.0, 1e4))
    assert set(router.cv_results_) == {0.01, 30.0, 1e4}
    assert router.alpha_[0] == max(router.cv_results_, key=router.cv_results_.get)
    per_model = fit("ridge", d, X, tr, alpha=(0.01, 30.0, 1e4), alpha_per_model=True, target="centred")
    assert per_model.alpha_.shape == (d.n_models,) and set(per_model.alpha_) <= {0.01, 30.0, 1e4}


def test_logistic_maps_non_unit_scores_back_to_their_scale():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    Y = np.clip(np.round(5 + 3 * X[:, :2] + rng.normal(size=(200, 2))), 1, 10)  # 1-10 ratings
    S = make_router("logistic", alpha=0.01).fit(X, Y).predict_scores(X)
    assert 0.0 <= S.min() and S.max() <= 10.0
    assert np.corrcoef(S[:, 0], Y[:, 0])[0, 1] > 0.8


# ------------------------------------------------------------------------- classifier, lgbm, mf, ensemble


def test_classifier_gives_zero_probability_to_models_never_best():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    Y = np.zeros((150, 3))
    Y[np.arange(150), (X[:, 0] > 0).astype(int)] = 1.0  # model 2 is never best
    for label in ("hard", "soft"):
        P = make_router("classifier", alpha=0.01, label=label).fit(X, Y).predict_scores(X)
        np.testing.assert_allclose(P.sum(axis=1), 1.0)
        assert (P[:, 2] == 0).all() and (np.argmax(P, axis=1) == Y.argmax(axis=1)).mean() > 0.9


def test_classifier_hard_label_breaks_ties_by_cost():
    X = np.random.default_rng(0).normal(size=(60, 3))
    Y = np.ones((60, 2))  # always a tie; model 1 is cheaper
    C = np.tile([2.0, 1.0], (60, 1))
    P = make_router("classifier", alpha=0.01, label="hard").fit(X, Y, C).predict_scores(X)
    assert (P[:, 1] == 1.0).all()


def test_lgbm_early_stopping_and_thread_limit(mmlu):
    d, X, tr, _ = mmlu
    router = fit("lgbm", d, X, tr, n_estimators=400, early_stopping_rounds=5)
    assert max(router.best_iterations_) < 400
    with pytest.raises(ValueError, match="num_threads"):
        fit("lgbm", d, X, tr, num_threads=0)


def test_mf_learns_a_model_that_wins_on_one_side_of_the_space():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    # Model 1 wins when x0 > 0, model 0 otherwise; model 2 always loses.
    Y = np.stack([X[:, 0] <= 0, X[:, 0] > 0, np.zeros(300, bool)], axis=1).astype(float)
    router = MFRouter(dim=4, alpha=0.001, max_iter=200).fit(X, Y)
    assert (router.route(X) == Y.argmax(axis=1)).mean() > 0.9


def test_mf_gradient_matches_finite_differences(monkeypatch):
    """The hand-written pairwise gradient is what L-BFGS relies on: check it numerically."""
    import router.routers.mf as mf

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 5)), rng.random((30, 4))
    captured = {}

    def capture(fun, x0, **_):  # stands in for the optimiser: keep the objective, return x0
        captured["fun"], captured["x0"] = fun, x0
        return SimpleNamespace(x=x0, nit=0)

    monkeypatch.setattr(scipy.optimize, "minimize", capture)  # fit imports it when it runs
    MFRouter(dim=3, alpha=0.1).fit(X, Y)
    fun = captured["fun"]
    w = captured["x0"] + 0.1 * rng.normal(size=captured["x0"].shape)
    eps = 1e-3  # the loss is evaluated in float32: central differences with a moderate step
    numeric = np.array([(fun(w + eps * e)[0] - fun(w - eps * e)[0]) / (2 * eps) for e in np.eye(len(w))])
    np.testing.assert_allclose(fun(w)[1], numeric, atol=1e-3 * np.abs(numeric).max())


def test_ensemble_weights_and_normalisation(mmlu):
    d, X, tr, te = mmlu
    members = FAST["ensemble"]["routers"]
    plain = make_router("ensemble", routers=members, normalise="none", weights=(3.0, 1.0), shrink=0.0)
    plain.fit(X[tr], d.scores[tr], mask=d.mask[tr])
    parts = [r.predict_scores(X[te]) for _, r in plain.routers_]
    np.testing.assert_allclose(plain.predict_scores(X[te]), 0.75 * parts[0] + 0.25 * parts[1])
    with pytest.raises(ValueError, match="weights has 1 entries for 2 routers"):
        make_router("ensemble", routers=members, weights=(1.0,)).fit(X[tr], d.scores[tr])
    with pytest.raises(ValueError, match="weights='best' is not valid"):
        make_router("ensemble", routers=members, weights="best").fit(X[tr], d.scores[tr])
    with pytest.raises(ValueError, match="normalise='softmax' is not valid"):
        make_router("ensemble", routers=members, normalise="softmax").fit(X[tr], d.scores[tr])


def test_task_one_hot_appends_known_tasks_and_zeros_for_new_ones():
    enc = TaskOneHot(scale=0.5).fit(["law", "math", "law"])
    Z = enc.transform(np.zeros((3, 2)), ["math", "law", "poetry"])
    np.testing.assert_array_equal(Z[:, 2:], [[0, 0.5], [0.5, 0], [0, 0]])


def test_ensemble_cv_drops_a_noise_member_and_shrinks_on_noise():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6))
    # Model 1 wins where x0 > 0, model 0 elsewhere; model 2 is a weak third.
    p = np.stack([np.where(X[:, 0] > 0, 0.3, 0.8), np.where(X[:, 0] > 0, 0.8, 0.3), np.full(600, 0.4)], axis=1)
    Y = (rng.random(p.shape) < p).astype(float)
    members = [("ridge", make_router("ridge", alpha=1.0)), ("random", make_router("random"))]
    router = make_router("ensemble", routers=members, cv=3).fit(X, Y)
    assert router.weights_[1] == 0 and router.routers_[1][1] is None  # not kept for serving
    assert router.shrink_ < 0.5
    assert (router.route(X) == np.argmax(p, axis=1)).mean() > 0.9
    # Pure noise: the out-of-fold choice falls back towards the training means.
    Y_noise = (rng.random((600, 3)) < [0.7, 0.5, 0.5]).astype(float)
    noise = make_router("ensemble", routers=members, cv=3, shrink=(0.0, 1.0)).fit(X, Y_noise)
    assert noise.shrink_ == 1.0


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


def test_cluster_with_kmeans_on_a_sample_routes_like_the_exact_fit(nq_split):
    """``max_kmeans_queries``: below the cap nothing changes; with centroids found on 40% of the training
    queries every query still counts in its cluster, and most test queries route as the exact fit does."""
    from router.routers.cluster import ClusterRouter

    d, X, tr, te = nq_split
    X_tr, Y_tr, C_tr, M_tr = X[tr], d.scores[tr], d.costs[tr], d.mask[tr]
    X_te, Y_te = X[te], d.scores[te]
    params = dict(n_clusters=(4, 8), shrink=5.0, temperature=0.0, cv=3)
    exact = ClusterRouter(max_kmeans_queries=None, **params).fit(X_tr, Y_tr, C_tr, M_tr)
    under = ClusterRouter(max_kmeans_queries=len(X_tr), **params).fit(X_tr, Y_tr, C_tr, M_tr)
    np.testing.assert_array_equal(exact.predict_scores(X_te), under.predict_scores(X_te))
    capped = ClusterRouter(max_kmeans_queries=int(0.4 * len(X_tr)), **params).fit(X_tr, Y_tr, C_tr, M_tr)
    assert capped.cluster_counts_.sum() == M_tr.sum()  # every training answer counted
    agree = (capped.route(X_te) == exact.route(X_te)).mean()
    quality = lambda r: Y_te[np.arange(len(Y_te)), r.route(X_te)].mean()  # noqa: E731
    assert agree >= 0.7 and abs(quality(capped) - quality(exact)) <= 0.05, (agree, quality(capped), quality(exact))
    with pytest.raises(ValueError, match="max_kmeans_queries"):
        ClusterRouter(max_kmeans_queries=0, **params).fit(X_tr, Y_tr, C_tr, M_tr)


def test_prediction_in_chunks_equals_one_block(nq_split, monkeypatch):
    """Above ``ROW_BLOCK`` rows a head predicts a block at a time (bounded temporaries), same scores."""
    import router.routers._common as common

    d, X, tr, te = nq_split
    router = KNNRouter(n_neighbors=10, weighting="kernel", cv=3).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    whole = router.predict_scores(X[te])
    monkeypatch.setattr(common, "ROW_BLOCK", 7)
    np.testing.assert_allclose(router.predict_scores(X[te]), whole, rtol=0, atol=1e-12)


def test_lgbm_on_a_sample_of_queries_routes_like_the_exact_fit(nq_split):
    """``max_train_queries``: below the cap nothing changes; boosters trained on 60% of the training queries
    route most test queries as the boosters trained on all of them, with about the same quality."""
    from router.routers.lgbm import LGBMRouter

    d, X, tr, te = nq_split
    X_tr, Y_tr, C_tr, M_tr = X[tr], d.scores[tr], d.costs[tr], d.mask[tr]
    X_te, Y_te = X[te], d.scores[te]
    params = dict(n_estimators=60, n_components=16, min_child_samples=10)
    exact = LGBMRouter(max_train_queries=None, **params).fit(X_tr, Y_tr, C_tr, M_tr)
    under = LGBMRouter(max_train_queries=len(X_tr), **params).fit(X_tr, Y_tr, C_tr, M_tr)
    np.testing.assert_array_equal(exact.predict_scores(X_te), under.predict_scores(X_te))
    capped = LGBMRouter(max_train_queries=int(0.6 * len(X_tr)), **params).fit(X_tr, Y_tr, C_tr, M_tr)
    agree = (capped.route(X_te) == exact.route(X_te)).mean()
    quality = lambda r: Y_te[np.arange(len(Y_te)), r.route(X_te)].mean()  # noqa: E731
    assert agree >= 0.6 and abs(quality(capped) - quality(exact)) <= 0.05, (agree, quality(capped), quality(exact))
    with pytest.raises(ValueError, match="max_train_queries"):
        LGBMRouter(max_train_queries=0, **params).fit(X_tr, Y_tr, C_tr, M_tr)
