"""Operating points (router.policy.operating_point): calibration to a budget or a share, the spend curve
and resolving a setting, against hand-computed values and real costs."""

from __future__ import annotations

import numpy as np
import pytest

from router.evaluation.metrics import mean_model_costs
from router.policy.curve import CURVE_POINTS, OperatingCurve
from router.policy.operating_point import Calibration, Setting, calibrate, resolve
from router.policy.rule import choose, lambda_grid

# Two models, costs 1 and 3 (cost gap 2). Predicted advantage of the dear model per query:
# 0.8, 0.4, 0.2, -0.1 -> query i goes dear while advantage > 2 * lam.
PRED = np.array([[0.0, 0.8], [0.0, 0.4], [0.0, 0.2], [0.1, 0.0]])
COSTS = np.array([1.0, 3.0])
MODELS = ["cheap", "dear"]


def test_calibrate_hits_a_budget_by_hand():
    # spend at lam=0: 3 dear + 1 cheap = (9 + 1) / 4 = 2.5; budget 2.0 allows 2 dear calls, which
    # needs 2 * lam >= 0.2 (the tie at exactly 0.1 goes to the cheap model).
    cal = calibrate(PRED, COSTS, MODELS, budget=2.0)
    lam = cal.default.lam
    assert lam == pytest.approx(0.1, rel=1e-6) and lam >= 0.1
    picks = choose(PRED, COSTS, lam)
    assert COSTS[picks].mean() == 2.0 and np.bincount(picks, minlength=2).tolist() == [2, 2]
    assert cal.default.bias is None and cal.default.target == "budget 2 $/query"
    assert cal.curve.reachable == (1.0, 2.5)
    assert calibrate(PRED, COSTS, MODELS, budget=3.0).default.lam == 0.0  # lam=0 already fits
    assert calibrate(PRED, COSTS, MODELS, budget=1.0).default.lam == pytest.approx(0.4, rel=1e-6)
    with pytest.raises(ValueError, match=r"unreachable.*\[1, 2.5\]"):
        calibrate(PRED, COSTS, MODELS, budget=0.5)


def test_the_spend_curve_holds_every_step_and_the_spend_choose_has_there():
    curve = OperatingCurve.measure(PRED, COSTS)
    # the dear model loses each query at lam = its advantage / 2: 0.1, 0.2, 0.4
    assert curve.lam[0] == 0.0 and np.allclose(curve.lam[1:], [0.1, 0.2, 0.4], rtol=1e-6)
    assert curve.cost == (2.5, 2.0, 1.5, 1.0)
    for lam, cost in zip(curve.lam, curve.cost):
        assert COSTS[choose(PRED, COSTS, lam)].mean() == cost
    assert curve.lam_for(1.7) == (curve.lam[2], True) and curve.lam_for(0.9) == (curve.lam[-1], False)


def test_a_share_resolves_to_a_bias_at_the_calibrated_lambda():
    cal = calibrate(PRED, COSTS, MODELS, share=("dear", 0.25))
    assert cal.default.lam == 0.0 and cal.default.bias[0] == 0.0 and "share 0.25 of calls to dear" in cal.default.target
    assert np.mean(choose(PRED, COSTS, 0.0, bias=cal.default.bias) == 1) == 0.25
    for value in (0.0, 0.5, 1.0):  # any share, 0 and 1 included (a lambda alone reaches at most 0.75)
        point = resolve(Setting(share={"dear": value}), cal)
        assert np.mean(choose(PRED, COSTS, point.lam, bias=point.bias) == 1) == value
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        resolve(Setting(share={"nope": 0.3}), cal)
    with pytest.raises(ValueError, match="pass share alone"):
        Setting(budget=1.0, share={"dear": 0.5})


def test_calibrate_budget_on_real_costs(nq):
    # predicted scores: the logged scores plus noise, costs: mean $ per model from the logs
    rng = np.random.default_rng(0)
    pred = nq.scores + rng.normal(0, 0.3, nq.scores.shape)
    costs = mean_model_costs(nq)
    spends = [costs[choose(pred, costs, lam)].mean() for lam in lambda_grid(pred, costs)]
    assert (np.diff(spends) <= 1e-15).all()  # monotone: what makes one smallest lambda per budget
    budget = 0.5 * (spends[0] + spends[-1])
    cal = calibrate(pred, costs, list(nq.models), budget=budget)
    lam = cal.default.lam
    assert costs[choose(pred, costs, lam)].mean() <= budget
    # the smallest such lambda: a little less and the budget is exceeded
    assert costs[choose(pred, costs, lam * (1 - 1e-6))].mean() > budget
    assert cal.curve.reachable == pytest.approx((spends[-1], spends[0]))
    # every point of the (thinned) curve holds the spend the rule has there, and serving reads the same lambda
    for point_lam, cost in zip(cal.curve.lam, cal.curve.cost):
        assert costs[choose(pred, costs, point_lam)].mean() == cost
    assert len(cal.curve.lam) <= CURVE_POINTS + 3
    assert resolve(Setting(budget=budget), cal).lam == lam


@pytest.mark.parametrize("target", [0.0, 0.1, 0.3, 0.5, 0.9, 1.0])
def test_share_calibration_without_costs_hits_its_target(nq, nq_X, target):
    """Logs without costs (lam can move nothing): a bias on the strong model sets its share of calls,
    calibrated on a slice of training queries, and the share realised on that slice is the target."""
    from router.policy.share import share_bias, shortfall_quantiles
    from router.routers import make_router

    cal = np.arange(350, 500)
    router = make_router("ridge", alpha=10.0).fit(nq_X[:350], nq.scores[:350])  # no costs given
    assert (router.model_costs_ == 0).all()
    pred = router.predict_scores(nq_X[cal])
    strong = int(np.argmax(np.nanmean(nq.scores[:350], axis=0)))
    bias = share_bias(shortfall_quantiles(pred, router.model_costs_, 0.0), strong, target)
    realised = np.mean(choose(pred, router.model_costs_, 0.0, bias=bias) == strong)
    assert abs(realised - target) <= 2 / len(cal)
    # more bias, more calls: the share is monotone in the target
    low = share_bias(shortfall_quantiles(pred, router.model_costs_, 0.0), strong, max(target - 0.2, 0.0))
    assert np.mean(choose(pred, router.model_costs_, 0.0, bias=low) == strong) <= realised


# The true scores of PRED's queries: the dear model (1) is right on all four, the cheap one (0) on the two
# where the dear model's predicted advantage is smallest (queries 2 and 3).
SCORES = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])


def test_a_savings_margin_resolves_to_the_cheapest_point_within_it_by_hand():
    cal = calibrate(PRED, COSTS, MODELS, margin=0.01, scores=SCORES, reference=1)
    assert cal.reference_quality == 1.0 and cal.reference_cost == 3.0
    # lam >= 0.1 sends query 2 to the cheap model, which is right there: same quality at 2.0 instead of 2.5
    assert cal.default.lam == pytest.approx(0.1, rel=1e-6) and "67% of its cost" in cal.default.target
    assert cal.curve.quality[:3] == (1.0, 1.0, 0.75) and cal.curve.gain_se[:2] == (0.0, 0.0)
    # past it query 1 goes cheap and is wrong: a loss of 0.25 +- 0.25 is not within 1%, nor within 30%
    assert resolve(Setting(margin=0.3), cal).lam == cal.default.lam
    # within 90%: query 1 to the cheap model too (a loss of 0.25, less 2 z standard errors: -0.89), not every
    # query (-0.5 less 2 z x 0.29 = -1.24): the bound leaves room for the gate's own
    loose = resolve(Setting(margin=0.9), cal)
    assert loose.lam == pytest.approx(0.2, rel=1e-6) and COSTS[choose(PRED, COSTS, loose.lam)].mean() == 1.5
    # the job's margin and the same margin asked per call give the same lambda
    assert resolve(Setting(margin=0.01), cal).lam == cal.default.lam


def test_a_margin_no_point_meets_routes_at_lambda_0_and_says_so():
    # the cheap model is never right, and PRED already sends query 3 to it at lam 0: no point is within 1%
    worse = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    cal = calibrate(PRED, COSTS, MODELS, margin=0.01, scores=worse, reference=1)
    assert cal.default.lam == 0.0 and "no point is non-inferior" in cal.default.target
    with pytest.raises(ValueError, match="without quality on its calibration curve"):
        resolve(Setting(margin=0.01), calibrate(PRED, COSTS, MODELS))  # no true scores: nothing to resolve on
    with pytest.raises(ValueError, match="margin must be in"):
        Setting(margin=1.5)
    with pytest.raises(ValueError, match="at most one of"):
        Setting(budget=1.0, margin=0.01)


def test_the_calibration_round_trips_through_json():
    import json

    cal = calibrate(PRED, COSTS, MODELS, margin=0.01, scores=SCORES, reference=1, share=("dear", 0.5))
    back = Calibration.from_dict(MODELS, json.loads(json.dumps(cal.to_dict())))
    assert back.default == cal.default and back.curve == cal.curve and back.reference == 1
    assert np.array_equal(back.shortfalls, cal.shortfalls) and back.reference_quality == cal.reference_quality
    for setting in (Setting(margin=0.3), Setting(budget=2.2), Setting(share={"cheap": 0.25}), Setting()):
        assert resolve(setting, back) == resolve(setting, cal)
