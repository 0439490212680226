"""Shared fixtures of the evaluation tests: routers evaluated on the bundled NQ sample's real logs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from router.data.labels import model_means
from router.evaluation import metrics as E
from router.evaluation.splits import split_queries


@pytest.fixture(scope="package")
def nq_results(nq, nq_X):
    """A ridge router on real embeddings and costs, plus a perfect and a constant predictor."""
    split = split_queries(nq, test_size=0.3, seed=0)
    train, test = nq.subset(split.train), nq.subset(split.test)
    ridge = Ridge(alpha=1.0).fit(nq_X[split.train], train.scores)
    costs = E.mean_model_costs(train)
    results = {
        "ridge": E.evaluate_router(ridge.predict(nq_X[split.test]), test, train, costs),
        "perfect": E.evaluate_router(test.scores, test, train, costs),
        "train-means": E.evaluate_router(np.tile(model_means(train.scores, train.mask), (test.n_queries, 1)),
                                         test, train, costs),
    }
    return results, train, test, split
