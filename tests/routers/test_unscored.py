"""Fits where some model has no scored answer (router.routers.unscored): a fold of a little-explored log."""

from __future__ import annotations

import copy
import pickle

import numpy as np

from router.routers import KNNRouter, RidgeRouter
from router.routers.unscored import Unscored, fit_scored


def test_a_model_without_answers_is_predicted_never_to_win(nq, nq_X):
    mask = nq.mask.copy()
    mask[:, 2] = False  # model 2 has no scored answer here
    fitted = fit_scored(RidgeRouter(alpha=10.0), nq_X, nq.scores, nq.costs, mask)
    assert isinstance(fitted, Unscored) and fitted.n_models_ == nq.n_models
    pred = fitted.predict_scores(nq_X[:50])
    assert np.isfinite(pred).all()
    np.testing.assert_allclose(pred[:, 2], np.delete(pred, 2, axis=1).min(axis=1) - 1.0)
    assert fitted.model_costs_[2] == fitted.model_costs_.max()  # no evidence is never cheap either
    picks = fitted.route(nq_X[:50], lam=0.0)  # indices over every model, never the unscored one
    assert picks.max() < nq.n_models and (picks != 2).all()
    assert fitted.alpha == 10.0  # the fitted router's own state shows through
    again = pickle.loads(pickle.dumps(copy.deepcopy(fitted)))
    np.testing.assert_array_equal(again.predict_scores(nq_X[:50]), pred)


def test_every_model_scored_is_an_ordinary_fit(nq, nq_X):
    fitted = fit_scored(KNNRouter(n_neighbors=5), nq_X, nq.scores, nq.costs, nq.mask)
    assert isinstance(fitted, KNNRouter)
