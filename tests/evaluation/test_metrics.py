"""Metrics (router.evaluation.metrics) against hand-computed values, and a router evaluated on real logs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router.evaluation import metrics as E
from router.data.labels import RoutingData


def make_data(scores, costs=None, tasks=None, models=None) -> RoutingData:
    scores = np.asarray(scores, dtype=float)
    n, m = scores.shape
    return RoutingData(
        query_ids=np.array([f"q{i}" for i in range(n)], dtype=object),
        prompts=np.array([f"prompt {i}" for i in range(n)], dtype=object),
        models=tuple(models or (f"m{j}" for j in range(m))),
        scores=scores, mask=~np.isnan(scores),
        costs=np.full((n, m), np.nan) if costs is None else np.asarray(costs, dtype=float),
        tasks=None if tasks is None else np.array(tasks, dtype=object),
    )


# Train: model means 1/3, 2/3, 1/3 -> best single = m1. Costs 1, 2, 3 $ per answer.
TRAIN = make_data([[0, 1, 0], [0, 1, 1], [1, 0, 0]], costs=np.tile([1.0, 2.0, 3.0], (3, 1)))
# Test: 4 complete queries (tasks a, a, b, b) and one query m2 never answered.
TEST = make_data(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, np.nan]],
    costs=np.tile([1.0, 2.0, 3.0], (5, 1)), tasks=["a", "a", "b", "b", "b"],
)
# A router whose predictions pick m0, m1, m0, m1 on the complete queries.
PRED = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=float)


def test_baselines_by_hand():
    b = E.baselines(TRAIN, TEST)
    assert (b.n_train, b.n_test, b.n_eval, b.n_dropped_incomplete) == (3, 5, 4, 1)
    assert b.best_single == 1 and b.single_quality.tolist() == [0.5, 0.5, 0.25]
    assert b.hindsight_best == 0  # tied with m1 on test; m0 is cheaper
    # oracle: every query has a 1; ties go to the cheaper model -> costs 1, 2, 3, 1
    assert b.oracle_quality == 1.0 and b.oracle_cost == pytest.approx(1.75)
    assert b.random_quality == pytest.approx(5 / 12) and b.random_cost == pytest.approx(2.0)
    assert b.single_cost.tolist() == [1.0, 2.0, 3.0]


def test_router_quality_cost_gap_share_per_task_by_hand():
    r = E.evaluate_router(PRED, TEST, TRAIN, lam=0.0, n_boot=200)
    assert r.choices.tolist() == [0, 1, 0, 1]
    assert r.quality == 0.75 and r.cost == 1.5
    assert r.gap_closed == pytest.approx((0.75 - 0.5) / (1.0 - 0.5))
    assert r.routing_share.tolist() == [0.5, 0.5, 0.0]
    # each task: one query to m0, one to m1 (a tie names the first model)
    assert r.per_task == {
        "a": {"n": 2, "router": 1.0, "best_single": 0.5, "oracle": 1.0, "routed_to": "m0", "routed_share": 0.5},
        "b": {"n": 2, "router": 0.5, "best_single": 0.5, "oracle": 1.0, "routed_to": "m0", "routed_share": 0.5},
    }
    lo, hi = r.ci["quality"]
    assert 0.0 <= lo <= r.quality <= hi <= 1.0
    assert r.apgr is None and r.aiq is not None


def test_small_metric_functions():
    assert math.isnan(E.gap_closed(0.6, 0.5, 0.5))  # the oracle is no better: nothing to close
    assert E.gap_closed(0.5, 0.4, 0.8) == pytest.approx(0.25)
    assert E.routing_share(np.array([2, 2, 0, 1]), 4).tolist() == [0.25, 0.25, 0.5, 0.0]
    costs = np.array([[np.nan, 5.0], [2.0, np.nan]])
    assert E.realised_costs(costs, np.array([1.0, 3.0])).tolist() == [[1.0, 5.0], [2.0, 3.0]]
    assert E.quality_cost(np.array([1, 0]), np.array([[0, 1], [0.5, 0]]), np.array([[1, 2], [3, 4]])) \
        == (0.75, 2.5)


def test_evaluate_router_two_model_pool_matches_hand_values():
    train = make_data([[0, 1], [1, 1], [0, 0]], costs=np.tile([1.0, 5.0], (3, 1)), models=("weak", "strong"))
    test = make_data([[1, 1], [0, 1], [0, 1], [1, 0]], costs=np.tile([1.0, 5.0], (4, 1)), models=("weak", "strong"))
    pred = np.column_stack([np.zeros(4), [0.1, 0.9, 0.5, -0.5]])
    r = E.evaluate_router(pred, test, train, n_boot=100)
    assert (r.strong_model, r.weak_model) == ("strong", "weak")
    assert r.apgr == pytest.approx(1.375) and r.cpt50 == pytest.approx(0.125) and r.cpt80 == pytest.approx(0.2)
    d = r.to_dict()
    assert {"apgr", "cpt50", "cpt80", "aiq"} <= set(d)


def test_router_on_real_logs(nq_results):
    results, train, test, _ = nq_results
    base = results["ridge"].baselines
    assert results["perfect"].quality == pytest.approx(base.oracle_quality)
    assert results["perfect"].gap_closed == pytest.approx(1.0)
    assert results["train-means"].gap_closed == pytest.approx(0.0, abs=1e-12)  # it always deploys the best single
    r = results["ridge"]
    assert base.random_quality < r.quality <= base.oracle_quality
    assert r.ci["quality"][0] <= r.quality <= r.ci["quality"][1]
    assert r.ci["gap_closed"][0] <= r.gap_closed <= r.ci["gap_closed"][1]
    # the curve starts at the operating point (lam=0) and ends with the cheapest model everywhere
    assert r.curve["quality"][0] == r.quality and r.curve["cost"][0] == r.cost
    cheapest = int(np.argmin(base.model_costs))
    assert r.curve["quality"][-1] == pytest.approx(base.single_quality[cheapest])
    assert r.curve["cost"][-1] == pytest.approx(base.single_cost[cheapest])
    assert min(r.curve["quality"]) <= r.aiq <= max(r.curve["quality"])
    # seeded bootstrap: the same seed gives the same interval
    again = E.evaluate_router(test.scores, test, train, base.model_costs, n_boot=1000, seed=0)
    assert again.ci == results["perfect"].ci
