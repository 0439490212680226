"""The decision rule (router.policy.rule): choose, its ranking and the lambda grid against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from router.policy.rule import choose, lambda_grid, rank


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


def test_choose_only_among_allowed_models():
    pred = np.array([[0.2, 0.9, np.nan], [0.5, 0.5, 0.5], [0.1, 0.3, 0.2]])
    costs = np.array([2.0, 1.0, 0.5])
    allowed = np.array([[True, False, False], [True, False, True], [True, True, True]])
    # Disallowed scores are ignored, even NaN; ties among the allowed go to the cheaper model.
    assert choose(pred, costs, 0.0, allowed=allowed).tolist() == [0, 2, 1]
    assert choose(pred[2:], costs, 0.0, allowed=allowed[2:]).tolist() == choose(pred[2:], costs).tolist()
    with pytest.raises(ValueError, match="allowed must have the shape"):
        choose(pred, costs, allowed=allowed[:2])
    with pytest.raises(ValueError, match="without any model"):
        choose(pred[2:], costs, allowed=np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="NaN or infinite"):
        choose(pred, costs, allowed=np.ones((3, 3), bool))


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


def test_rank_first_column_is_choose_on_random_and_tied_inputs():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n, m = int(rng.integers(1, 20)), int(rng.integers(1, 7))
        tied = trial % 2 == 0  # coarse values: many exact ties in score and in cost
        pred = rng.integers(0, 3, (n, m)) / 2 if tied else rng.random((n, m))
        costs = rng.integers(0, 3, m).astype(float) if tied else rng.random(m)
        lam = float(rng.choice([0.0, 0.25, 0.5, 1.0]))
        bias = rng.integers(-1, 2, m) / 2 if trial % 3 == 0 else None
        order = rank(pred, costs, lam, bias)
        assert (order[:, 0] == choose(pred, costs, lam, bias=bias)).all()
        assert (np.sort(order, axis=1) == np.arange(m)).all()
        util = pred - lam * costs + (0 if bias is None else bias)
        ranked_util = np.take_along_axis(util, order, axis=1)
        assert (np.diff(ranked_util, axis=1) <= 0).all()  # best first
    # ties: the cheaper first, then the lower index
    assert rank(np.array([[0.5, 0.5, 0.5, 0.9]]), np.array([2.0, 1.0, 1.0, 5.0]), 0.0).tolist() == [[3, 1, 2, 0]]
    with pytest.raises(ValueError, match="lam must be"):
        rank(np.zeros((1, 2)), np.ones(2), -1.0)
