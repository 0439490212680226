"""The curve functions of ``router.evaluation.curves`` on small curves computed by hand: matched spend,
the area under the hull (AIQ), APGR and CPT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router.evaluation import curves as C
from router.evaluation.curves import cost_at_quality, quality_at_cost, single_model_hull_quality

# (cost, quality): sorted by cost (1, .5), (2, .7), (3, .6), (4, .8). (3, .6) lies under the segment
# (2, .7)-(4, .8); (2, .7) lies above the segment (1, .5)-(4, .8) (.6 at cost 2), so the hull is
# (1, .5), (2, .7), (4, .8): slope .2 per $ then .05 per $.
COSTS = [1.0, 2.0, 4.0, 3.0]
QUALS = [0.5, 0.7, 0.8, 0.6]


@pytest.mark.parametrize("budget, expected", [
    (1.0, 0.5),    # the cheapest point itself
    (1.5, 0.6),    # half-way between (1, .5) and (2, .7)
    (2.0, 0.7),
    (3.0, 0.75),   # mix of (2, .7) and (4, .8), not the dominated point (3, .6)
    (4.0, 0.8),
    (10.0, 0.8),   # flat past the best point: spending less is allowed
])
def test_quality_at_cost(budget, expected):
    assert quality_at_cost(COSTS, QUALS, budget) == pytest.approx(expected)


def test_quality_at_cost_below_the_cheapest_point_is_nan():
    assert math.isnan(quality_at_cost(COSTS, QUALS, 0.5))
    assert math.isnan(quality_at_cost(COSTS, QUALS, math.nan))


def test_quality_at_cost_rounding_at_the_cheapest_point_is_not_nan():
    assert quality_at_cost([0.1 + 0.2, 1.0], [0.4, 0.6], 0.3) == pytest.approx(0.4)


@pytest.mark.parametrize("target, expected", [
    (0.4, 1.0),    # the cheapest point already reaches it
    (0.5, 1.0),
    (0.6, 1.5),
    (0.7, 2.0),
    (0.75, 3.0),
    (0.8, 4.0),
])
def test_cost_at_quality(target, expected):
    assert cost_at_quality(COSTS, QUALS, target) == pytest.approx(expected)


def test_cost_at_quality_unreachable_is_nan():
    assert math.isnan(cost_at_quality(COSTS, QUALS, 0.81))
    assert math.isnan(cost_at_quality(COSTS, QUALS, math.nan))


def test_a_curve_that_falls_is_cut_at_its_best_point():
    # (1, .4), (2, .9), (3, .6): spending 3 can still buy .9 by staying at cost 2
    costs, quals = [1.0, 2.0, 3.0], [0.4, 0.9, 0.6]
    assert quality_at_cost(costs, quals, 3.0) == pytest.approx(0.9)
    assert quality_at_cost(costs, quals, 1.2) == pytest.approx(0.5)  # .4 + .2 * .5
    assert cost_at_quality(costs, quals, 0.9) == pytest.approx(2.0)
    assert cost_at_quality(costs, quals, 0.65) == pytest.approx(1.5)


def test_equal_costs_keep_the_better_point():
    costs, quals = [1.0, 1.0, 2.0], [0.3, 0.5, 0.6]
    assert quality_at_cost(costs, quals, 1.0) == pytest.approx(0.5)
    assert cost_at_quality(costs, quals, 0.4) == pytest.approx(1.0)
    assert cost_at_quality(costs, quals, 0.55) == pytest.approx(1.5)


def test_a_single_point():
    assert quality_at_cost([2.0], [0.7], 2.0) == pytest.approx(0.7)
    assert quality_at_cost([2.0], [0.7], 3.0) == pytest.approx(0.7)
    assert math.isnan(quality_at_cost([2.0], [0.7], 1.9))
    assert cost_at_quality([2.0], [0.7], 0.5) == pytest.approx(2.0)
    assert math.isnan(cost_at_quality([2.0], [0.7], 0.71))


def test_cost_and_quality_are_inverse_on_the_hull():
    for budget in (1.0, 1.25, 2.0, 2.5, 3.9):
        q = quality_at_cost(COSTS, QUALS, budget)
        assert cost_at_quality(COSTS, QUALS, q) == pytest.approx(budget)


# Single models A (1, .6), C (2, .62), B (3, .7), D (4, .69). C lies under the segment A-B (.65 at
# cost 2); D costs more than B and scores less. The hull is A-B: slope .05 per $.
SINGLE_COSTS = [1.0, 3.0, 2.0, 4.0]
SINGLE_QUALS = [0.6, 0.7, 0.62, 0.69]


@pytest.mark.parametrize("budget, expected", [
    (1.0, 0.6),    # only A is affordable
    (2.0, 0.65),   # A on half the queries, B on the other half beats always calling C (.62)
    (2.5, 0.675),
    (3.0, 0.7),
    (4.0, 0.7),    # D is never worth its price
])
def test_single_model_hull_quality(budget, expected):
    assert single_model_hull_quality(SINGLE_COSTS, SINGLE_QUALS, budget) == pytest.approx(expected)


def test_single_model_hull_quality_below_the_cheapest_model_is_nan():
    assert math.isnan(single_model_hull_quality(SINGLE_COSTS, SINGLE_QUALS, 0.99))


def test_bad_curves_are_rejected():
    with pytest.raises(ValueError):
        quality_at_cost([1.0, 2.0], [0.5], 1.0)
    with pytest.raises(ValueError):
        cost_at_quality([1.0, math.nan], [0.5, 0.6], 0.5)


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
