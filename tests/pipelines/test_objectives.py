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


def test_the_bundled_sample_pays(embedder):
    """The default sample (MMLU-Pro, GPT-4o and two Gemini models, $ from list prices): Gemini-1.5-pro is as
    good as GPT-4o on most categories at a twelfth of the price, so routing saves most of GPT-4o's cost at its
    quality, and the gate proves it on the held-out split and the training queries cross-fitted."""
    from pipelines.config import SAMPLE_LOGS
    from router.data.labels import build_routing_data
    from router.data.scan import scan_logs
    from router.embed import EmbeddingCache, embed_with_cache
    from tests.conftest import TEST_CACHE

    data = build_routing_data(scan_logs(SAMPLE_LOGS))
    X, _ = embed_with_cache(embedder, data.prompts, EmbeddingCache(TEST_CACHE))
    job = JobConfig(routers=[{"family": "task"}], selection={"folds": 3})
    exp = run_experiment(data, X, job)
    g = exp.gate
    assert exp.goal.kind == "savings" and exp.selected != "best_single" and g.passed and exp.exported == exp.selected
    assert exp.decision.startswith(f"ships {exp.selected}: quality ") and "(always gpt-4o)" in exp.decision
    assert g.saving_lower >= 0.05 and g.lower >= g.min_gain and g.n == data.n_queries  # every query testified
    assert exp.verdict.startswith(f"{exp.selected} saves $") and "per 1,000 queries" in exp.verdict


def test_a_router_that_pays_in_quality_ships_without_costs(embedder):
    """A math specialist and a generalist on math and biology questions (no costs): routing by topic beats
    either model, and the quality gate proves it."""
    from router.data.labels import build_routing_data
    from router.data.scan import scan_logs
    from router.embed import EmbeddingCache, embed_with_cache
    from tests.conftest import FIXTURES, TEST_CACHE

    data = build_routing_data(scan_logs(FIXTURES / "mmlu_pro_quality.jsonl"))
    X, _ = embed_with_cache(embedder, data.prompts, EmbeddingCache(TEST_CACHE))
    exp = run_experiment(data, X, JobConfig(routers=[{"family": f} for f in ("knn", "classifier", "mf")]))
    g = exp.gate
    assert exp.goal.kind == "quality" and g is not None and g.passed and exp.exported == exp.selected
    assert exp.decision.startswith(f"{exp.selected} beats always calling ") and g.lower > 0
    assert exp.verdict.startswith(f"{exp.selected} gains +") and g.n == data.n_queries
