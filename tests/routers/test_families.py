"""Router families: one shared suite over every registered family (shapes, fitting, cloning, pickling, the
tuned parameters, beating random routing, masked cells), the registry, and blocked prediction."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from router.routers import ROUTERS, make_router
from router.routers._common import routing_quality
from router.routers.knn import KNNRouter
from tests.routers.conftest import FAST, fit

FAMILIES = sorted(ROUTERS)
LEARNED = [f for f in FAMILIES if f != "random"]


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


# ------------------------------------------------------------------------- registry & blocked prediction


def test_make_router_names_valid_choices():
    with pytest.raises(ValueError, match="valid names: .*'knn'.*'ridge'"):
        make_router("nearest")
    with pytest.raises(ValueError, match="no parameter.*'k'.*valid: .*n_neighbors"):
        make_router("knn", k=5)
    assert make_router("ridge", alpha=2.0).alpha == 2.0


def test_prediction_in_chunks_equals_one_block(nq_split, monkeypatch):
    """Above ``ROW_BLOCK`` rows a head predicts a block at a time (bounded temporaries), same scores."""
    import router.routers._common as common

    d, X, tr, te = nq_split
    router = KNNRouter(n_neighbors=10, weighting="kernel", cv=3).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    whole = router.predict_scores(X[te])
    monkeypatch.setattr(common, "ROW_BLOCK", 7)
    np.testing.assert_allclose(router.predict_scores(X[te]), whole, rtol=0, atol=1e-12)
