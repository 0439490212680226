"""Exploration policies (router.policy.exploration) against hand-computed values: parsing, the policy's
probabilities around the decision rule's pick, and sampling from them."""

from __future__ import annotations

import numpy as np
import pytest

from router.policy.exploration import EXPLORATION_MODES, Exploration, policy_probabilities, sample_choices
from router.policy.rule import choose

PRED = np.array([[0.30, 0.10, 0.50, 0.45],
                 [0.20, 0.20, 0.10, 0.00],   # tie between models 0 and 1: choose takes the cheaper (1)
                 [0.90, 0.80, 0.20, 0.85]])
COSTS = np.array([1.0, 0.5, 2.0, 0.2])
MODES = ["off", "epsilon:0.3", "softmax:0.1"]


def test_exploration_parse_str_round_trip_and_bad_inputs():
    assert EXPLORATION_MODES == ("off", "epsilon", "softmax")
    assert Exploration.parse("off") == Exploration()
    assert Exploration.parse("epsilon:0.05") == Exploration("epsilon", epsilon=0.05)
    assert Exploration.parse(" Softmax : 0.1 ") == Exploration("softmax", temperature=0.1)
    assert Exploration.parse("epsilon") == Exploration("epsilon")  # the default value
    assert Exploration.parse(None) == Exploration()
    for text in ["off", "epsilon:0.05", "epsilon:1.0", "softmax:0.1", "softmax:2.5e-05"]:
        assert str(Exploration.parse(text)) == text
        assert Exploration.parse(str(Exploration.parse(text))) == Exploration.parse(text)
    assert str(Exploration("epsilon", epsilon=1)) == "epsilon:1.0"
    for bad in ["greedy", "epsilon:", "epsilon:abc", "off:0.1", "", "softmax:0.1:2"]:
        with pytest.raises(ValueError, match="expected 'off', 'epsilon:"):
            Exploration.parse(bad)
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
        Exploration.parse("epsilon:1.5")
    with pytest.raises(ValueError, match=r"epsilon must be in \(0, 1\]"):
        Exploration("epsilon", epsilon=0.0)
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        Exploration.parse("softmax:-1")
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        Exploration("softmax", temperature=float("inf"))
    with pytest.raises(ValueError, match="mode must be one of off, epsilon, softmax"):
        Exploration("ucb")
    with pytest.raises(ValueError, match="epsilon must be a number"):
        Exploration("epsilon", epsilon="0.1")


@pytest.mark.parametrize("mode", MODES)
def test_policy_probabilities_are_distributions_with_the_choose_pick_on_top(mode):
    lam, bias = 0.05, np.array([0.0, 0.0, 0.0, 0.02])
    probs = policy_probabilities(PRED, COSTS, lam, bias, Exploration.parse(mode))
    pick = choose(PRED, COSTS, lam, bias=bias)
    assert probs.shape == PRED.shape and probs.dtype == np.float64
    assert (probs >= 0).all() and np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (probs[np.arange(3), pick] == probs.max(axis=1)).all()
    assert policy_probabilities(PRED, COSTS, lam, bias, mode).tolist() == probs.tolist()  # str accepted


def test_off_is_choose_exactly_and_epsilon_mixes_uniformly():
    pick = choose(PRED, COSTS, 0.1)
    off = policy_probabilities(PRED, COSTS, 0.1)
    assert off.tolist() == np.eye(4)[pick].tolist()
    eps = policy_probabilities(PRED, COSTS, 0.1, exploration=Exploration("epsilon", epsilon=0.2))
    assert np.allclose(eps, 0.05 + 0.8 * np.eye(4)[pick], rtol=0, atol=1e-15)
    assert (eps.argmax(axis=1) == pick).all()
    # the tie in row 1 (pred 0.2 / 0.2 at lam=0) goes to the cheaper model 1, as in choose
    assert policy_probabilities(PRED, COSTS, exploration="epsilon:0.5")[1].argmax() == 1


def test_softmax_matches_the_formula_and_concentrates_at_a_tiny_temperature():
    lam, t = 0.1, 0.2
    util = PRED - lam * COSTS
    expected = np.exp(util / t) / np.exp(util / t).sum(axis=1, keepdims=True)
    got = policy_probabilities(PRED, COSTS, lam, exploration=Exploration("softmax", temperature=t))
    assert np.allclose(got, expected, rtol=1e-12, atol=0)
    pick = choose(PRED, COSTS, lam)
    cold = policy_probabilities(PRED, COSTS, lam, exploration=Exploration("softmax", temperature=1e-6))
    assert np.allclose(cold, np.eye(4)[pick], rtol=0, atol=1e-12)
    # huge utilities at a tiny temperature: no overflow, no NaN
    big = policy_probabilities(PRED * 1e6, COSTS, exploration=Exploration("softmax", temperature=1e-9))
    assert np.isfinite(big).all() and np.allclose(big.sum(axis=1), 1.0)


def test_sample_choices_propensities_and_frequencies_match_the_policy():
    rng = np.random.default_rng(7)
    for mode in MODES:
        probs = policy_probabilities(PRED, COSTS, 0.05, exploration=mode)
        idx, prop = sample_choices(probs, rng)
        assert idx.shape == prop.shape == (3,)
        assert ((prop > 0) & (prop <= 1)).all()
        assert (prop == probs[np.arange(3), idx]).all()
    many = np.tile(PRED, (100, 1))  # off: always the choose pick, propensity 1
    idx, prop = sample_choices(policy_probabilities(many, COSTS), rng)
    assert (idx == choose(many, COSTS)).all() and (prop == 1).all()
    # 20k draws from one row per mode: a chi-square statistic (3 degrees of freedom; the 0.999
    # quantile is 16.27) on the counts
    n = 20_000
    for mode in MODES[1:]:
        row = policy_probabilities(PRED[:1], COSTS, 0.05, exploration=mode)[0]
        idx, prop = sample_choices(np.tile(row, (n, 1)), np.random.default_rng(11))
        counts = np.bincount(idx, minlength=4)
        chi2 = float(((counts - n * row) ** 2 / (n * row)).sum())
        assert chi2 < 16.27, (mode, counts, n * row)
        assert np.allclose(prop, row[idx])


class _EdgeRng:
    """A stand-in generator whose uniform draws are given."""

    def __init__(self, draws):
        self.draws = np.asarray(draws, dtype=np.float64)

    def random(self, size):
        return self.draws[:size]


def test_sample_choices_is_robust_to_rounding_and_never_picks_a_zero():
    just_below_one = np.nextafter(1.0, 0.0)
    probs = np.array([[0.1, 0.2, 0.7 - 1e-12, 0.0],  # sums to 1 - 1e-12, trailing zero
                      [0.0, 0.5, 0.5, 0.0],
                      [0.0, 0.5, 0.5, 0.0]])
    idx, prop = sample_choices(probs, _EdgeRng([just_below_one, 0.0, just_below_one]))
    assert idx.tolist() == [2, 1, 2]
    assert prop.tolist() == [probs[0, 2], 0.5, 0.5]
    with pytest.raises(ValueError, match="rows must sum to 1"):
        sample_choices(np.array([[0.5, 0.4]]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="finite and >= 0"):
        sample_choices(np.array([[1.5, -0.5]]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="n_models >= 1"):
        sample_choices(np.array([0.5, 0.5]), np.random.default_rng(0))
