"""Routing quality (router.routers._common) and the cross-validated grid search (router.routers.search)."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers._common import routing_quality
from router.routers.search import cv_search, folds


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
