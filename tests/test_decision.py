"""Decision rule, lambda grid and calibration against hand-computed values and real costs."""

from __future__ import annotations

import numpy as np
import pytest

from router.evaluation.decision import calibrate, choose, lambda_grid
from router.evaluation.metrics import mean_model_costs

# Two models, costs 1 and 3 (cost gap 2). Predicted advantage of the dear model per query:
# 0.8, 0.4, 0.2, -0.1 -> query i goes dear while advantage > 2 * lam.
PRED = np.array([[0.0, 0.8], [0.0, 0.4], [0.0, 0.2], [0.1, 0.0]])
COSTS = np.array([1.0, 3.0])


def test_choose_argmax_of_utility_with_ties_to_the_cheaper_model():
    pred = np.array([[0.9, 0.5, 0.4]])
    costs = np.array([10.0, 2.0, 1.0])
    assert choose(pred, costs, 0.0).tolist() == [0]
    assert choose(pred, costs, 0.05).tolist() == [1]  # utilities 0.40, 0.40, 0.35: tie -> cheaper
    assert choose(pred, costs, 0.1).tolist() == [2]  # utilities -0.1, 0.3, 0.3: tie -> cheaper
    assert choose(np.array([[0.5, 0.5]]), np.array([2.0, 1.0])).tolist() == [1]
    with pytest.raises(ValueError, match="model_costs must have shape"):
        choose(pred, costs[:2])
    with pytest.raises(ValueError, match="lam must be"):
        choose(pred, costs, -1.0)


def test_lambda_grid_spans_first_switch_to_cheapest_everywhere():
    pred = np.array([[0.9, 0.5, 0.4]])
    costs = np.array([10.0, 2.0, 1.0])
    grid = lambda_grid(pred, costs, n=5)
    # first switch: 0 -> 1 at (0.9 - 0.5) / (10 - 2) = 0.05; cheapest wins from max(0.5/9, 0.1/1) = 0.1
    assert grid[0] == 0.0 and len(grid) == 5 and (np.diff(grid) > 0).all()
    assert grid[1] == pytest.approx(0.05) and grid[-1] == pytest.approx(0.1)
    assert np.allclose(grid[1:] / grid[1], np.geomspace(1, 2, 4))
    assert choose(pred, costs, grid[-1]).tolist() == [2]
    assert lambda_grid(pred, np.array([1.0, 1.0, 1.0])).tolist() == [0.0]


def test_calibrate_hits_a_budget_by_hand():
    # spend at lam=0: 3 dear + 1 cheap = (9 + 1) / 4 = 2.5; budget 2.0 allows 2 dear calls, which
    # needs 2 * lam >= 0.2 (the tie at exactly 0.1 goes to the cheap model).
    cal = calibrate(PRED, COSTS, budget=2.0)
    assert cal.lam == pytest.approx(0.1, rel=1e-6) and cal.lam >= 0.1
    assert cal.cost == 2.0 and cal.shares == (0.5, 0.5) and cal.share is None
    assert cal.reachable == (1.0, 2.5)
    assert calibrate(PRED, COSTS, budget=3.0).lam == 0.0  # lam=0 already fits
    assert calibrate(PRED, COSTS, budget=1.0).lam == pytest.approx(0.4, rel=1e-6)
    with pytest.raises(ValueError, match=r"unreachable.*\[1, 2.5\]"):
        calibrate(PRED, COSTS, budget=0.5)


def test_calibrate_hits_a_share_of_calls():
    cal = calibrate(PRED, COSTS, model=1, share=0.25)
    assert cal.share == 0.25 and cal.lam == pytest.approx(0.2, rel=1e-6)
    # 0.3 is not reachable exactly: 0.25 is the closest share
    assert calibrate(PRED, COSTS, model=1, share=0.3).share == 0.25
    assert calibrate(PRED, COSTS, model=0, share=1.0).shares == (1.0, 0.0)
    with pytest.raises(ValueError, match=r"unreachable.*\[0, 0.75\]"):
        calibrate(PRED, COSTS, model=1, share=1.0)
    with pytest.raises(ValueError, match="exactly one target"):
        calibrate(PRED, COSTS, budget=1.0, model=1, share=0.5)


def test_calibrate_budget_on_real_costs(nq):
    # predicted scores: the logged scores plus noise, costs: mean $ per model from the logs
    rng = np.random.default_rng(0)
    pred = nq.scores + rng.normal(0, 0.3, nq.scores.shape)
    costs = mean_model_costs(nq)
    spends = [costs[choose(pred, costs, lam)].mean() for lam in lambda_grid(pred, costs)]
    assert (np.diff(spends) <= 1e-15).all()  # monotone: what makes bisection valid
    budget = 0.5 * (spends[0] + spends[-1])
    cal = calibrate(pred, costs, budget=budget)
    assert cal.cost <= budget
    # the smallest such lambda: a little less and the budget is exceeded
    assert costs[choose(pred, costs, cal.lam * (1 - 1e-6))].mean() > budget
    assert cal.reachable == pytest.approx((spends[-1], spends[0]))
