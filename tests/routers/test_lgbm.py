"""The LightGBM family (router.routers.lgbm): early stopping, the thread limit, and boosters on a sample."""

from __future__ import annotations

import numpy as np
import pytest

from tests.routers.conftest import fit


def test_lgbm_early_stopping_and_thread_limit(mmlu):
    d, X, tr, _ = mmlu
    router = fit("lgbm", d, X, tr, n_estimators=400, early_stopping_rounds=5)
    assert max(router.best_iterations_) < 400
    with pytest.raises(ValueError, match="num_threads"):
        fit("lgbm", d, X, tr, num_threads=0)


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
