"""The baseline gate (pipelines.gate): the objective, the paired gain over always calling the best model and
its lower bound, and the gate that keeps best single when routing does not pay."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.gate import gate, objective, paired_gain


def test_objective_is_utility_or_quality(nq):
    rows, choices = np.arange(4), np.array([0, 1, 2, 3])
    costs = np.nanmean(nq.costs, axis=0)
    util = objective(nq, rows, choices, 100.0, costs, quality_only=False)
    assert util == pytest.approx(nq.scores[rows, choices] - 100.0 * nq.costs[rows, choices])
    assert objective(nq, rows, choices, 100.0, costs, quality_only=True) == pytest.approx(nq.scores[rows, choices])


def test_paired_gain_and_its_lower_bound():
    base = np.array([0.0, 1.0, 0.0, 1.0] * 25)
    mean, lower = paired_gain(base + 0.1, base, confidence=0.9)
    assert mean == pytest.approx(0.1) and lower == pytest.approx(0.1)  # the same gain on every query
    noisy = base + np.random.default_rng(0).permutation(np.r_[np.ones(50), -np.ones(50)])
    mean, lower = paired_gain(noisy, base, confidence=0.9)
    assert mean == pytest.approx(0.0) and lower < -0.05  # a coin flip per query: no confident gain


def test_gate_keeps_best_single_when_the_lower_bound_is_below_the_threshold():
    base = np.zeros(200)
    better = np.r_[np.ones(30), np.zeros(170)]  # +0.15 on average, confidently
    passed = gate("knn", better, base, "gpt-4", min_gain=0.0, confidence=0.9)
    assert passed.passed and passed.gain == pytest.approx(0.15) and passed.lower > 0.1
    assert passed.reason.startswith("knn beats always calling gpt-4")
    strict = gate("knn", better, base, "gpt-4", min_gain=0.2, confidence=0.9)
    assert not strict.passed and strict.reason.startswith("routing does not pay on these logs: always call gpt-4")
    worse = gate("knn", -better, base, "gpt-4", min_gain=0.0, confidence=0.9)
    assert not worse.passed and worse.gain < 0


def test_paired_gain_draws_its_resamples_in_blocks_with_the_same_result(monkeypatch):
    """The bootstrap draws a block of resamples at a time (a million held-out queries x 2,000 resamples would
    be 16 GB at once); the blocks consume the same random stream, so the bound does not depend on them."""
    import pipelines.gate as gate_module

    rng = np.random.default_rng(3)
    challenger, baseline = rng.random(500), rng.random(500)
    whole = paired_gain(challenger, baseline, confidence=0.9)
    monkeypatch.setattr(gate_module, "_BOOT_CELLS", 1_700)  # 3 resamples per block, the last block partial
    assert paired_gain(challenger, baseline, confidence=0.9) == whole


def _outcomes(saving: float, loss: float, n: int = 2000, seed: int = 0):
    """The best single model right on 80% of n queries at $1; a router that pays ``1 - saving`` as much and
    is wrong on an extra ``loss`` of the queries (at random)."""
    from pipelines.gate import Outcomes

    rng = np.random.default_rng(seed)
    ref = (rng.random(n) < 0.8).astype(float)
    score = np.where(rng.random(n) < loss, 0.0, ref)
    cost = np.where(rng.random(n) < saving, 0.0, 1.0)  # the saving: calls sent to a free model
    return Outcomes(score=score, cost=cost, ref_score=ref, ref_cost=np.ones(n))


def test_savings_gate_ships_a_real_saving_at_equal_quality_and_says_what_it_saves():
    from pipelines.gate import Goal, savings_gate

    g = savings_gate("knn", _outcomes(saving=0.3, loss=0.0), "gpt-4", Goal("savings"))
    assert g.passed and g.gain == 0.0 and g.saving == pytest.approx(0.3, abs=0.03)
    assert g.saving_lower >= 0.05 and g.lower >= g.min_gain == pytest.approx(-0.008, abs=0.001)
    assert g.reason.startswith("ships knn: quality 0.") and "(always gpt-4) at 7" in g.reason
    lo, hi = g.saved_per_query[1:]
    assert f"saves ${g.saved_per_query[0] * 1000:.4g} per 1,000 queries (90% CI {lo * 1000:.4g}-{hi * 1000:.4g})" \
        in g.reason and lo < g.saved_per_query[0] < hi


def test_savings_gate_names_each_condition_that_failed():
    from pipelines.gate import Goal, savings_gate

    lossy = savings_gate("knn", _outcomes(saving=0.5, loss=0.05), "gpt-4", Goal("savings"))
    assert not lossy.passed and lossy.reason.startswith("routing does not pay on these logs: always call gpt-4 "
                                                        "(knn fails the quality condition: quality 0.")
    assert "lower bound of the difference" in lossy.reason and "% >= 5%" in lossy.reason  # both bounds, saving met
    stingy = savings_gate("knn", _outcomes(saving=0.03, loss=0.0), "gpt-4", Goal("savings"))
    assert not stingy.passed and "fails the saving condition" in stingy.reason and "% < 5%" in stingy.reason
    both = savings_gate("knn", _outcomes(saving=0.02, loss=0.1), "gpt-4", Goal("savings"))
    assert "fails the quality and saving conditions" in both.reason
    strict = savings_gate("knn", _outcomes(saving=0.3, loss=0.0), "gpt-4", Goal("savings", min_savings=0.5))
    assert not strict.passed  # a saving of 30% does not prove 50%


def test_the_goal_follows_the_config_and_the_logs(nq, mmlu_small):
    from pipelines.config import JobConfig
    from pipelines.gate import goal_for

    assert goal_for(JobConfig(), nq).kind == "savings"  # every model has a cost
    assert goal_for(JobConfig(), mmlu_small).kind == "quality"  # no costs
    assert goal_for(JobConfig(budget=1e-5), nq).kind == "budget"
    assert goal_for(JobConfig(share={"model": nq.models[0], "value": 0.3}), nq).kind == "share"
    goal = goal_for(JobConfig(objective="savings", margin=0.05, registry={"min_savings": 0.2}), nq)
    assert (goal.kind, goal.margin, goal.min_savings, goal.quality_only) == ("savings", 0.05, 0.2, True)
    assert not goal_for(JobConfig(objective="quality", lam=2.0), nq).quality_only
    with pytest.raises(ValueError, match="no cost is logged for"):
        goal_for(JobConfig(objective="savings"), mmlu_small)
    with pytest.raises(ValueError, match="objective budget needs a budget"):
        JobConfig(objective="budget")
    with pytest.raises(ValueError, match="a budget is set but the objective is savings"):
        JobConfig(objective="savings", budget=1e-5)
