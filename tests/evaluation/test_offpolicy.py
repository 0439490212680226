"""Off-policy estimators (router.evaluation.offpolicy) against hand-computed values and a simulated bandit log
with a known reward matrix (its logging and target policies from router.policy.exploration)."""

from __future__ import annotations

import numpy as np
import pytest

from router.policy.exploration import Exploration, policy_probabilities, sample_choices
from router.policy.rule import choose
from router.evaluation.offpolicy import Estimate, dm_terms, dr_terms, ips_terms, off_policy_estimates, snips
from router.policy.propensity import one_hot


# ------------------------------------------------------------------------ estimators by hand


# Three queries, three models. Target probabilities, the logged model, its propensity, its reward:
TARGET = np.array([[0.5, 0.25, 0.25],
                   [0.0, 1.00, 0.00],
                   [0.2, 0.20, 0.60]])
ACTIONS = np.array([0, 1, 0])
PROPENSITIES = np.array([0.5, 0.25, 0.8])
REWARDS = np.array([1.0, 0.5, 0.0])
Q_HAT = np.array([[0.8, 0.40, 0.0],
                  [0.5, 0.25, 1.0],
                  [0.4, 0.00, 0.5]])
# weights pi(a|x) / p: 0.5/0.5 = 1, 1/0.25 = 4, 0.2/0.8 = 0.25


def test_estimators_equal_hand_computed_values():
    # IPS terms w * r: 1 * 1.0, 4 * 0.5, 0.25 * 0.0
    assert np.allclose(ips_terms(ACTIONS, REWARDS, PROPENSITIES, TARGET), [1.0, 2.0, 0.0])
    # SNIPS: (1 + 2 + 0) / (1 + 4 + 0.25)
    assert snips(ACTIONS, REWARDS, PROPENSITIES, TARGET) == pytest.approx(3.0 / 5.25)
    # DM terms: 0.5*0.8 + 0.25*0.4 + 0.25*0 = 0.5; 1*0.25 = 0.25; 0.2*0.4 + 0.2*0 + 0.6*0.5 = 0.38
    assert np.allclose(dm_terms(TARGET, Q_HAT), [0.5, 0.25, 0.38])
    # DR terms: DM + w * (r - q_hat[a]): 0.5 + 1*(1 - 0.8) = 0.7; 0.25 + 4*(0.5 - 0.25) = 1.25;
    # 0.38 + 0.25*(0 - 0.4) = 0.28
    assert np.allclose(dr_terms(ACTIONS, REWARDS, PROPENSITIES, TARGET, Q_HAT), [0.7, 1.25, 0.28])
    # clipped at 2: weights 1, 2, 0.25
    assert np.allclose(ips_terms(ACTIONS, REWARDS, PROPENSITIES, TARGET, clip=2.0), [1.0, 1.0, 0.0])
    assert snips(ACTIONS, REWARDS, PROPENSITIES, TARGET, clip=2.0) == pytest.approx(2.0 / 3.25)
    assert np.allclose(dr_terms(ACTIONS, REWARDS, PROPENSITIES, TARGET, Q_HAT, clip=2.0), [0.7, 0.75, 0.28])

    est = off_policy_estimates(ACTIONS, REWARDS, PROPENSITIES, TARGET, q_hat=Q_HAT, n_boot=200)
    assert list(est) == ["ips", "snips", "dr", "dm"]
    assert est["ips"].value == pytest.approx(3.0 / 3)
    assert est["snips"].value == pytest.approx(3.0 / 5.25)
    assert est["dr"].value == pytest.approx(2.23 / 3)
    assert est["dm"].value == pytest.approx(1.13 / 3)
    for e in est.values():
        assert isinstance(e, Estimate) and e.n == 3 and e.lower <= e.upper
        assert e.to_dict() == {"value": e.value, "lower": e.lower, "upper": e.upper, "n": 3}
    # IPS resamples of three terms {1, 2, 0}: means between 0 and 2
    assert 0.0 <= est["ips"].lower <= est["ips"].upper <= 2.0
    assert set(off_policy_estimates(ACTIONS, REWARDS, PROPENSITIES, TARGET, n_boot=10)) == {"ips", "snips"}


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    n = 50
    target = rng.dirichlet(np.ones(3), size=n)
    args = (rng.integers(0, 3, n), rng.random(n), rng.uniform(0.2, 1.0, n), target)
    q_hat = rng.random((n, 3))
    a = off_policy_estimates(*args, q_hat=q_hat, n_boot=300, seed=3)
    assert a == off_policy_estimates(*args, q_hat=q_hat, n_boot=300, seed=3)
    b = off_policy_estimates(*args, q_hat=q_hat, n_boot=300, seed=4)
    assert all(a[key].value == b[key].value and a[key].lower != b[key].lower for key in a)
    none = off_policy_estimates(ACTIONS, REWARDS, PROPENSITIES, TARGET, n_boot=0)
    assert none["ips"].value == 1.0 and np.isnan(none["ips"].lower) and np.isnan(none["ips"].upper)


def test_one_hot_and_validation_errors():
    assert one_hot(np.array([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(ValueError, match=r"model indices in \[0, 2\]"):
        one_hot(np.array([3]), 3)
    args = dict(actions=ACTIONS, rewards=REWARDS, propensities=PROPENSITIES, target_probs=TARGET)
    bad_cases = [
        (dict(actions=np.array([0, 1, 3])), r"actions must be model indices in \[0, 2\]"),
        (dict(actions=np.array([0.5, 1, 0])), "actions must be integer"),
        (dict(actions=ACTIONS[:2]), "target_probs has 3 rows for 2 logged queries"),
        (dict(rewards=np.array([1.0, np.nan, 0.0])), "rewards contain NaN"),
        (dict(rewards=REWARDS[:2]), r"rewards must have shape \(3,\)"),
        (dict(propensities=np.array([0.5, 0.0, 0.8])), r"propensities must be logging probabilities in \(0, 1\]"),
        (dict(propensities=np.array([0.5, 1.2, 0.8])), r"propensities must be logging probabilities in \(0, 1\]"),
        (dict(target_probs=TARGET * 0.9), "target_probs rows must sum to 1; row 0"),
        (dict(target_probs=TARGET[:, :2]), "rows must sum to 1"),
        (dict(target_probs=TARGET[0]), "target_probs must be"),
        (dict(actions=np.array([], dtype=int), rewards=np.array([]), propensities=np.array([]),
              target_probs=np.zeros((0, 3))), "at least one logged query"),
    ]
    for change, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            off_policy_estimates(**{**args, **change})
    with pytest.raises(ValueError, match="q_hat must have the shape"):
        off_policy_estimates(**args, q_hat=Q_HAT[:2])
    with pytest.raises(ValueError, match="q_hat contains NaN"):
        dr_terms(**args, q_hat=np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="clip must be"):
        ips_terms(**args, clip=0.0)
    with pytest.raises(ValueError, match="level must be in"):
        off_policy_estimates(**args, level=1.0)
    with pytest.raises(ValueError, match="n_boot must be"):
        off_policy_estimates(**args, n_boot=-1)


# ------------------------------------------------------------------------ a simulated bandit log


def _simulated(seed: int, n: int = 400, m: int = 4):
    """Known expected rewards R (n, m); the logging policy is epsilon-greedy on a noisy predictor, the
    target a greedy router on a better one; q_hat a biased (shrunk, shifted) estimate of R."""
    rng = np.random.default_rng(seed)
    R = np.clip(rng.uniform(0.2, 0.8, size=m) + rng.normal(0.0, 0.25, size=(n, m)), 0.0, 1.0)
    costs = np.zeros(m)
    logging = policy_probabilities(R + rng.normal(0.0, 0.3, size=(n, m)), costs,
                                   exploration=Exploration("epsilon", epsilon=0.3))
    actions, propensities = sample_choices(logging, rng)
    rewards = (rng.random(n) < R[np.arange(n), actions]).astype(np.float64)  # 0/1 outcomes
    target = one_hot(choose(R + rng.normal(0.0, 0.1, size=(n, m)), costs), m)
    q_hat = np.clip(0.6 * R + 0.2 + rng.normal(0.0, 0.05, size=(n, m)), 0.0, 1.0)
    truth = float((target * R).sum(axis=1).mean())
    assert (logging.argmax(axis=1) != target.argmax(axis=1)).mean() > 0.2  # the policies differ
    return truth, off_policy_estimates(actions, rewards, propensities, target, q_hat=q_hat, seed=seed)


def test_estimators_on_a_simulated_log_recover_the_true_value():
    errors = {key: [] for key in ("ips", "snips", "dr", "dm")}
    covered = 0
    for seed in range(10):
        truth, est = _simulated(seed)
        for key in errors:
            errors[key].append(est[key].value - truth)
        covered += est["dr"].lower <= truth <= est["dr"].upper
    err = {key: np.array(v) for key, v in errors.items()}
    assert covered >= 8
    assert np.abs(err["dr"]).mean() < np.abs(err["ips"]).mean()
    # IPS unbiased: its mean error within 3 standard errors of 0; DM (biased q_hat) is not
    assert abs(err["ips"].mean()) < 3 * err["ips"].std(ddof=1) / np.sqrt(10)
    assert abs(err["dm"].mean()) > 3 * err["dm"].std(ddof=1) / np.sqrt(10)
