"""The cluster-prior (``cluster``) and item-response (``irt``) router families: the estimator contract,
real behaviour on synthetic and real logs, partial masks, safe artifacts and parameter validation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.optimize
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from router.routers import ROUTERS, ClusterRouter, IRTRouter, make_router
from router.routers._common import column_means, routing_quality
from router.serve.artifact import load_head, save_head
# The fast settings of the family suite; its fixtures (one BLAS thread, seeded 70/30 splits) are in conftest.py.
from tests.routers.conftest import FAST as _FAMILY_FAST
from tests.routers.conftest import two_cluster_data

FAST = {k: _FAMILY_FAST[k] for k in ("cluster", "irt")}
NEW = sorted(FAST)


@pytest.fixture(scope="module")
def fitted(mmlu):
    """name -> router with FAST settings fitted on the mmlu training rows (once per module)."""
    d, X, tr, _ = mmlu
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make_router(name, **FAST[name]).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
        return cache[name]

    return get


# ------------------------------------------------------------------------- the contract


def test_registered():
    assert ROUTERS["cluster"] is ClusterRouter and ROUTERS["irt"] is IRTRouter


@pytest.mark.parametrize("name", NEW)
def test_fit_predict_shapes_and_not_fitted(name, mmlu, fitted):
    d, X, _, te = mmlu
    with pytest.raises(NotFittedError):
        make_router(name, **FAST[name]).predict_scores(X[te])
    router = fitted(name)
    S = router.predict_scores(X[te])
    assert S.shape == (len(te), d.n_models) and S.dtype == np.float64 and np.isfinite(S).all()
    assert ((0 <= S) & (S <= 1)).all()  # 0/1 scores: a probability (irt), a shrunk mean (cluster)
    picks = router.route(X[te])
    assert picks.shape == (len(te),) and 0 <= picks.min() and picks.max() < d.n_models
    with pytest.raises(ValueError, match="features"):
        router.predict_scores(X[te][:, :10])


@pytest.mark.parametrize("name", NEW)
def test_deterministic_batch_independent_and_best_params_reproduce(name, mmlu, fitted):
    d, X, tr, te = mmlu
    router = fitted(name)
    S = router.predict_scores(X[te])
    np.testing.assert_array_equal(clone(router).fit(X[tr], d.scores[tr], mask=d.mask[tr]).predict_scores(X[te]), S)
    np.testing.assert_allclose(router.predict_scores(X[te][5:6]), S[5:6], rtol=1e-9, atol=1e-12)
    # CV picked a grid point, the best one, and refitting it without the search gives the same router.
    assert set(router.cv_results_) and max(router.cv_results_, key=router.cv_results_.get) == \
        tuple(router.best_params_.values())
    frozen = clone(router).set_params(**router.best_params_).fit(X[tr], d.scores[tr], mask=d.mask[tr])
    assert frozen.cv_results_ == {}
    np.testing.assert_allclose(frozen.predict_scores(X[te]), S, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NEW)
def test_masked_cells_are_ignored(name, nq_split):
    """NaN in hidden cells, or garbage hidden by ``mask``, fit the same (nq: continuous scores)."""
    d, X, tr, te = nq_split
    Y = d.scores[tr]
    hidden = np.random.default_rng(1).random(Y.shape) < 0.2
    a = make_router(name, **FAST[name]).fit(X[tr], np.where(hidden, np.nan, Y))
    b = make_router(name, **FAST[name]).fit(X[tr], np.where(hidden, 100.0, Y), mask=~hidden)
    Sa = a.predict_scores(X[te])
    assert np.isfinite(Sa).all()
    np.testing.assert_allclose(b.predict_scores(X[te]), Sa, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", NEW)
def test_artifact_round_trip_is_exact_and_arrays_only(name, mmlu, fitted, tmp_path):
    _, X, _, te = mmlu
    router = fitted(name)
    loaded = load_head(save_head(router, tmp_path / "head"))
    assert type(loaded) is type(router) and repr(loaded) == repr(router)
    np.testing.assert_array_equal(loaded.predict_scores(X[te]), router.predict_scores(X[te]))
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["arrays.npz", "head.json"]
    state = {k: v for k, v in vars(loaded).items() if k.endswith("_")}
    assert all(isinstance(v, (np.ndarray, int, float, str, tuple)) for v in state.values()), state


# ------------------------------------------------------------------------- real behaviour


@pytest.mark.parametrize("name", NEW)
def test_routes_the_right_model_per_cluster(name):
    X, Y, blob = two_cluster_data()
    tr, te = slice(0, 400), slice(400, None)
    router = make_router(name, **FAST[name]).fit(X[tr], Y[tr])
    assert (router.route(X[te]) == blob[te]).mean() > 0.9


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("data", ["mmlu", "nq_split"])
def test_beats_random_router(name, data, request):
    d, X, tr, te = request.getfixturevalue(data)
    random_q = routing_quality(d.scores[te], d.mask[te], make_router("random", random_state=3)
                               .fit(X[tr], d.scores[tr]).predict_scores(X[te]))
    q = routing_quality(d.scores[te], d.mask[te], make_router(name, **FAST[name])
                        .fit(X[tr], d.scores[tr], mask=d.mask[tr]).predict_scores(X[te]))
    assert q > random_q + 0.03, f"{name} test quality {q:.3f} vs random {random_q:.3f}"


@pytest.mark.parametrize("name", NEW)
def test_held_out_quality_close_to_best_single_on_mmlu(name, mmlu, fitted):
    """On 300 MMLU-Pro questions x 31 models nothing routes much better than the best model, but the
    CV choice must not route much worse on the held-out queries either."""
    d, X, tr, te = mmlu
    best = int(np.argmax(column_means(d.scores[tr], d.mask[tr])))
    single = routing_quality(d.scores[te], d.mask[te], np.eye(d.n_models)[np.full(len(te), best)])
    q = routing_quality(d.scores[te], d.mask[te], fitted(name).predict_scores(X[te]))
    assert q >= single - 0.03, f"{name} {q:.3f} vs best single {single:.3f}"


@pytest.mark.parametrize("name", NEW)
def test_partial_masks(name, mmlu):
    """30% of cells unobserved and one model seen on only 10 queries: fits, finite, still routes well."""
    d, X, tr, te = mmlu
    rng = np.random.default_rng(2)
    mask = d.mask[tr] & (rng.random(d.mask[tr].shape) > 0.3)
    mask[10:, 0] = False
    router = make_router(name, **FAST[name]).fit(X[tr], d.scores[tr], mask=mask)
    S = router.predict_scores(X[te])
    assert np.isfinite(S).all() and S.shape == (len(te), d.n_models)
    q = routing_quality(d.scores[te], d.mask[te], S)
    rand = routing_quality(d.scores[te], d.mask[te], rng.random(S.shape))
    assert q > rand + 0.03


# ------------------------------------------------------------------------- cluster specifics


def test_cluster_scores_are_shrunk_means_of_nearest_centroid_members(mmlu):
    d, X, tr, te = mmlu
    mask = d.mask[tr] & (np.random.default_rng(0).random(d.mask[tr].shape) > 0.2)
    Y = d.scores[tr]
    router = ClusterRouter(n_clusters=8, shrink=5.0, temperature=0.0).fit(X[tr], Y, mask=mask)
    assert router.centroids_.shape == (8, X.shape[1]) and isinstance(router.centroids_, np.ndarray)
    Xn = X[tr] / np.linalg.norm(X[tr], axis=1, keepdims=True)
    labels = ((Xn[:, None, :] - router.centroids_[None]) ** 2).sum(axis=2).argmin(axis=1)
    prior = column_means(Y, mask)
    for c in range(8):
        rows = labels == c
        s = np.where(mask[rows], Y[rows], 0).sum(axis=0)
        n = mask[rows].sum(axis=0)
        np.testing.assert_allclose(router.cluster_scores_[c], (s + 5.0 * prior) / (n + 5.0))
        np.testing.assert_array_equal(router.cluster_counts_[c], n)
    # Hard assignment: each held-out query gets its nearest cluster's row.
    Xt = X[te] / np.linalg.norm(X[te], axis=1, keepdims=True)
    near = ((Xt[:, None, :] - router.centroids_[None]) ** 2).sum(axis=2).argmin(axis=1)
    np.testing.assert_allclose(router.predict_scores(X[te]), router.cluster_scores_[near])


def test_cluster_soft_assignment_mixes_clusters_and_tends_to_hard(mmlu):
    d, X, tr, te = mmlu
    hard = ClusterRouter(n_clusters=8, shrink=5.0, temperature=0.0).fit(X[tr], d.scores[tr], mask=d.mask[tr])
    soft = clone(hard).set_params(temperature=0.1).fit(X[tr], d.scores[tr], mask=d.mask[tr])
    cold = clone(hard).set_params(temperature=1e-6).fit(X[tr], d.scores[tr], mask=d.mask[tr])
    Sh, Ss = hard.predict_scores(X[te]), soft.predict_scores(X[te])
    table = hard.cluster_scores_
    assert ((Ss >= table.min(axis=0) - 1e-12) & (Ss <= table.max(axis=0) + 1e-12)).all()  # convex mixes
    assert not np.allclose(Ss, Sh)
    np.testing.assert_allclose(cold.predict_scores(X[te]), Sh, atol=1e-6)


def test_cluster_caps_n_clusters_and_falls_back_to_the_prior():
    X = np.eye(4) + 0.01
    Y = np.array([[1.0, np.nan], [0.0, np.nan], [1.0, 1.0], [1.0, 0.0]])
    router = ClusterRouter(n_clusters=10, shrink=0.0, temperature=0.0).fit(X, Y)
    assert router.n_clusters_ == 4
    S = router.predict_scores(X)
    np.testing.assert_allclose(S[:, 0], [1.0, 0.0, 1.0, 1.0])  # shrink 0: the cluster's own score
    np.testing.assert_allclose(S[:2, 1], [0.5, 0.5])  # model 1 unseen in those clusters: its global mean


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


# ------------------------------------------------------------------------- irt specifics


def test_irt_maps_ratings_back_and_uses_the_right_loss():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    Y = np.clip(np.round(5 + 2 * np.stack([X[:, 0], -X[:, 0]], axis=1) + rng.normal(size=(300, 2))), 1, 10)
    router = IRTRouter(rank=2, l2=1e-3).fit(X, Y)
    assert router.loss_ == "squared" and router.score_range_ == (0.0, 10.0)
    S = router.predict_scores(X)
    assert 0.0 <= S.min() and S.max() <= 10.0
    assert np.corrcoef(S[:, 0], Y[:, 0])[0, 1] > 0.8
    assert IRTRouter(rank=1, l2=0.1).fit(X, (Y > 5).astype(float)).loss_ == "bce"
    assert IRTRouter(rank=1, l2=0.1, loss="bce").fit(X, Y).loss_ == "bce"


@pytest.mark.parametrize("loss", ["bce", "squared"])
def test_irt_gradient_matches_finite_differences(loss, monkeypatch):
    import router.routers.irt as irt

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 5)), rng.random((30, 4))
    mask = rng.random(Y.shape) > 0.3
    captured = {}

    def capture(fun, x0, **_):  # stands in for the optimiser: keep the objective, return x0
        captured["fun"], captured["x0"] = fun, x0
        return SimpleNamespace(x=x0, nit=0)

    monkeypatch.setattr(scipy.optimize, "minimize", capture)  # fit imports it when it runs
    IRTRouter(rank=2, l2=0.1, loss=loss).fit(X, Y, mask=mask)
    fun = captured["fun"]
    w = captured["x0"] + 0.3 * rng.normal(size=captured["x0"].shape)
    eps = 1e-3  # float32 products inside: central differences with a moderate step
    numeric = np.array([(fun(w + eps * e)[0] - fun(w - eps * e)[0]) / (2 * eps) for e in np.eye(len(w))])
    np.testing.assert_allclose(fun(w)[1], numeric, atol=2e-3 * np.abs(numeric).max())


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name, params, message", [
    ("cluster", {"n_clusters": 0}, "n_clusters must be integers >= 1, got 0"),
    ("cluster", {"n_clusters": (8, 2.5)}, r"n_clusters must be integers >= 1, got \(8, 2.5\)"),
    ("cluster", {"shrink": -1.0}, "shrink must be finite and >= 0, got -1.0"),
    ("cluster", {"temperature": (0.0, -0.1)}, r"temperature must be finite and >= 0 .*got \(0.0, -0.1\)"),
    ("cluster", {"n_init": 0}, "n_init must be an integer >= 1, got 0"),
    ("cluster", {"n_clusters": ()}, "empty tuple of candidates"),
    ("cluster", {"cv": 1}, "cv must be >= 2 folds, got 1"),
    ("irt", {"rank": 0}, "rank must be integers >= 1, got 0"),
    ("irt", {"l2": (0.1, float("nan"))}, r"l2 must be finite and >= 0, got \(0.1, nan\)"),
    ("irt", {"loss": "hinge"}, r"loss='hinge' is not valid; choose one of \['auto', 'bce', 'squared'\]"),
    ("irt", {"max_iter": 0}, "max_iter must be an integer >= 1, got 0"),
])
def test_invalid_parameters_are_named(name, params, message):
    X, Y, _ = two_cluster_data(n=40)
    with pytest.raises(ValueError, match=message):
        make_router(name, **params).fit(X, Y)
