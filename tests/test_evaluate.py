"""Metrics against hand-computed values, and the report on real logs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from router.evaluation import curves as C
from router.evaluation import metrics as E
from router.evaluation.report import build_report
from router.data.labels import RoutingData, model_means
from router.evaluation.splits import split_queries


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
    assert r.per_task == {
        "a": {"n": 2, "router": 1.0, "best_single": 0.5, "oracle": 1.0},
        "b": {"n": 2, "router": 0.5, "best_single": 0.5, "oracle": 1.0},
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


def test_aiq_three_points_with_one_under_the_hull():
    costs, quals = [0.0, 1.0, 2.0], [0.5, 0.6, 0.9]
    # (1, 0.6) is under the segment (0, 0.5)-(2, 0.9), whose height at 1 is 0.7
    hc, hq = C.nondecreasing_hull(costs, quals)
    assert hc.tolist() == [0.0, 2.0] and hq.tolist() == [0.5, 0.9]
    assert C.aiq(costs, quals) == pytest.approx(0.7)  # trapezoid area 1.4 over range 2
    # a dearer but worse point: the hull stays flat at 0.9 up to it -> (1.4 + 0.9) / 3
    assert C.aiq(costs + [3.0], quals + [0.8]) == pytest.approx(2.3 / 3)
    # a common range wider than the router's: flat to the right -> (1.4 + 2 * 0.9) / 4
    assert C.aiq(costs, quals, cost_range=(0.0, 4.0)) == pytest.approx(0.8)
    assert C.aiq([1.0, 1.0], [0.2, 0.4]) == 0.4  # one cost: its best quality
    with pytest.raises(ValueError, match="cheapest point"):
        C.aiq(costs, quals, cost_range=(-1.0, 2.0))


def test_apgr_and_cpt_on_a_two_model_example():
    # columns weak, strong; router advantage (strong - weak) per query
    weak, strong = np.array([1, 0, 0, 1.0]), np.array([1, 1, 1, 0.0])
    adv = np.array([0.1, 0.9, 0.5, -0.5])
    shares, quals = C.strong_share_curve(adv, strong, weak)
    # strong in order q1, q2, q0, q3 with gains 1, 1, 0, -1 over weak's mean 0.5
    assert shares.tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert quals.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]
    # PGR = (q - 0.5) / 0.25 = 0, 1, 2, 2, 1 -> trapezoid 0.25 * (0/2 + 1 + 2 + 2 + 1/2)
    assert C.apgr(shares, quals, 0.5, 0.75) == pytest.approx(1.375)
    assert C.cpt(shares, quals, 0.5, 0.75, 0.5) == pytest.approx(0.125)
    assert C.cpt(shares, quals, 0.5, 0.75, 0.8) == pytest.approx(0.2)
    # a router that cannot tell queries apart is a random router: the straight line
    shares, quals = C.strong_share_curve(np.zeros(4), strong, weak)
    assert quals.tolist() == [0.5, 0.5625, 0.625, 0.6875, 0.75]
    assert C.apgr(shares, quals, 0.5, 0.75) == pytest.approx(0.5)
    assert C.cpt(shares, quals, 0.5, 0.75, 0.8) == pytest.approx(0.8)
    assert np.isnan(C.apgr(shares, quals, 0.5, 0.5))


def test_evaluate_router_two_model_pool_matches_hand_values():
    train = make_data([[0, 1], [1, 1], [0, 0]], costs=np.tile([1.0, 5.0], (3, 1)), models=("weak", "strong"))
    test = make_data([[1, 1], [0, 1], [0, 1], [1, 0]], costs=np.tile([1.0, 5.0], (4, 1)), models=("weak", "strong"))
    pred = np.column_stack([np.zeros(4), [0.1, 0.9, 0.5, -0.5]])
    r = E.evaluate_router(pred, test, train, n_boot=100)
    assert (r.strong_model, r.weak_model) == ("strong", "weak")
    assert r.apgr == pytest.approx(1.375) and r.cpt50 == pytest.approx(0.125) and r.cpt80 == pytest.approx(0.2)
    d = r.to_dict()
    assert {"apgr", "cpt50", "cpt80", "aiq"} <= set(d)


@pytest.fixture(scope="module")
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


def test_report_to_dict_round_trips_through_json(nq_results):
    results, train, test, split = nq_results
    report = build_report(results, train, test, split=split.how)
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert {"best_single", "oracle", "random", "n_train", "n_test", "n_dropped_incomplete", "routers"} <= set(d)
    assert (d["n_train"], d["n_test"], d["n_dropped_incomplete"]) == (len(split.train), len(split.test), 0)
    assert set(d["best_single"]) == {"name", "quality", "cost"} and d["best_single"]["cost"] > 0
    assert set(d["oracle"]) == {"quality", "cost"}
    assert list(d["routers"]) == ["ridge", "perfect", "train-means"]
    ridge = d["routers"]["ridge"]
    assert {"quality", "cost", "gap_closed", "aiq", "ci", "routing_share", "per_task", "curve"} <= set(ridge)
    assert "apgr" not in ridge  # six models: not a two-model pool
    assert sum(ridge["routing_share"].values()) == pytest.approx(1.0)
    assert len(ridge["curve"]["cost"]) == len(ridge["curve"]["quality"]) == len(ridge["curve"]["lam"])
    md = report.to_markdown()
    for label in ("**ridge**", "**perfect**", "best single (train)", "oracle", "random", "AIQ",
                  f"{len(split.test)} evaluated"):
        assert label in md


def test_incomplete_queries_dropped_and_no_cost_report(mmlu_small):
    split = split_queries(mmlu_small, test_size=0.4, seed=1)
    train, test = mmlu_small.subset(split.train), mmlu_small.subset(split.test)
    incomplete = int((~test.mask.all(axis=1)).sum())
    assert incomplete > 0
    rng = np.random.default_rng(0)
    pred = np.tile(np.nan_to_num(model_means(train.scores, train.mask)), (test.n_queries, 1))
    r = E.evaluate_router(pred + rng.normal(0, 0.05, pred.shape), test, train, n_boot=200)
    report = build_report({"noisy-means": r}, train, test)
    d = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert d["n_dropped_incomplete"] == incomplete and d["n_eval"] == test.n_queries - incomplete
    assert "aiq" not in d["routers"]["noisy-means"] and d["oracle"]["cost"] is None
    assert sum(v["n"] for v in r.per_task.values()) == d["n_eval"]
    assert set(r.per_task) == set(test.tasks[test.mask.all(axis=1)])
    assert "### Quality per task" in report.to_markdown()
    only_incomplete = np.flatnonzero(~test.mask.all(axis=1))
    with pytest.raises(ValueError, match=f"none of the {incomplete} test queries"):
        E.evaluate_router(pred[only_incomplete], test.subset(only_incomplete), train)


def test_matched_spend_and_budget_baseline(nq_results):
    """At equal spend: a router that knows the answers beats the best single model at its cost and
    reaches its quality for less; under a budget the best single model is the best one that fits it."""
    results, train, test, split = nq_results
    report = build_report(results, train, test, split=split.how)
    b = report.baselines
    assert b.reference == b.best_single  # no budget: the same model
    ms = report.matched_spend()
    assert set(ms) == set(results)
    q0 = b.single_quality[b.reference]
    assert ms["perfect"]["quality_at_spend"] > q0 and ms["perfect"]["cost_share_for_100pct"] < 1.0
    assert ms["perfect"]["gain_over_single_model_mix"] > 0
    assert "Matched spend" in report.to_markdown() and report.headline().startswith(b.models[b.reference])
    assert json.loads(json.dumps(report.to_dict()))["matched_spend"]["perfect"]["quality_at_spend"] > q0

    costs = E.mean_model_costs(train)
    budget = float(np.sort(costs)[1]) * 1.001  # two models fit
    fitting = np.flatnonzero(costs <= budget)
    tight = build_report(results, train, test, split=split.how, budget=budget)
    tb = tight.baselines
    assert tb.best_single in fitting and tb.reference == b.best_single
    means = model_means(train.scores, train.mask)
    assert tb.best_single == fitting[np.argmax(means[fitting])]
    assert f"Budget ${budget:.3g}/query" in tight.to_markdown()
    none_fit = E.best_single_index(train, costs, budget=float(costs.min()) / 2)
    assert none_fit == int(np.argmin(costs))  # nothing fits: the cheapest model
