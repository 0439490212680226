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
