"""The job's objectives end to end on small real logs: savings by default with costs, quality without; the
gate decides on the held-out split and the training queries cross-fitted, and says what it found."""

from __future__ import annotations

import json

import numpy as np

from pipelines.config import JobConfig
from pipelines.experiment import run_experiment


def test_with_costs_the_job_seeks_savings_and_a_loss_names_both_bounds(nq, nq_X):
    job = JobConfig(routers=[{"family": "ridge", "params": {"cv": 3}}], export_router="ridge")
    exp = run_experiment(nq, nq_X, job)
    assert exp.goal.kind == "savings" and exp.goal.margin == 0.01 and exp.goal.min_savings == 0.05
    point = exp.fitted["ridge"].point
    assert point.target.startswith("savings within 0.01 of ")
    g = exp.gate
    assert g is not None and g.saving is not None and g.saving_lower <= g.saving
    # Gemma is right on too few of 500 NQ questions for 5% savings at 1% loss to be proven: best single ships,
    # with both conditions' bounds in the line
    if not g.passed:
        assert exp.exported == "best_single" and exp.decision.startswith(
            "routing does not pay on these logs: always call google/gemma-2-27b-it (ridge fails the ")
        assert "lower bound of the difference" in exp.decision and "% lower bound" in exp.decision
        assert exp.verdict == "always calls google/gemma-2-27b-it: routing does not pay on these logs"
    shipped = json.loads(json.dumps(exp.to_dict()))
    assert shipped["objective"]["kind"] == "savings" and shipped["exported"] == exp.exported
    assert shipped["gate"]["queries"] == g.n and shipped["verdict"] == exp.verdict
    assert shipped["operating_point"] == exp.fitted[exp.exported].point.to_dict()


def test_the_gate_counts_the_training_queries_cross_fitted(nq, nq_X):
    """Every complete training query testifies once, routed by a procedure that never saw it; 0 folds: the
    held-out split alone."""
    routers = [{"family": "knn", "params": {"cv": 3}}]
    whole = run_experiment(nq, nq_X, JobConfig(routers=routers, export_router="knn"))
    alone = run_experiment(nq, nq_X, JobConfig(routers=routers, export_router="knn", registry={"cross_fit_folds": 0}))
    assert alone.evidence is None and alone.gate.n == len(alone.eval_rows)
    complete = int(whole.train.mask.all(axis=1).sum())
    assert whole.evidence is not None and len(whole.evidence.score) == complete
    assert whole.gate.n == len(whole.eval_rows) + complete
    # the held-out part is the same router's choices either way
    assert np.array_equal(whole.fitted["knn"].result.choices, alone.fitted["knn"].result.choices)


def test_without_costs_the_job_seeks_quality(mmlu_small, mmlu_small_X):
    job = JobConfig(routers=[{"family": "knn", "params": {"cv": 3}}], export_router="knn")
    exp = run_experiment(mmlu_small, mmlu_small_X, job)
    assert exp.goal.kind == "quality" and not exp.quality_only and exp.fitted["knn"].point.target == "lam 0"
    g = exp.gate
    assert g.saving is None and g.min_gain == 0.0
    line = exp.decision
    assert line.startswith("knn beats always calling ") if g.passed else \
        line.startswith("routing does not pay on these logs: always call ")
    assert f"{g.confidence:.0%} lower bound {g.lower:+.4f}" in line
