"""The report (router.evaluation.report) on real logs: its dict round-trips through JSON, incomplete queries
are dropped and counted, logs without costs, and the matched-spend and budget baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from router.evaluation import metrics as E
from router.evaluation.report import build_report
from router.data.labels import model_means
from router.evaluation.splits import split_queries


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
