"""Learning from the router's own traffic: one scored model per query, chosen with a known propensity."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers import ROUTERS, BestSingleRouter, KNNRouter, RidgeRouter, make_router
from router.policy.propensity import IPS_CLIP, partial_feedback


def bandit_log(Y: np.ndarray, favour: np.ndarray, epsilon: float, seed: int):
    """Keep one model per query, drawn epsilon-greedily around ``favour`` (the deployed router's pick):
    (observed scores with NaN elsewhere, mask, propensities with NaN elsewhere)."""
    rng = np.random.default_rng(seed)
    n, m = Y.shape
    probs = np.full((n, m), epsilon / m)
    probs[np.arange(n), favour] += 1 - epsilon
    picks = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    mask = np.zeros((n, m), bool)
    mask[np.arange(n), picks] = True
    P = np.where(mask, probs, np.nan)
    return np.where(mask, Y, np.nan), mask, P


def test_partial_feedback_weights_and_ips_scoring_targets():
    Y = np.array([[1.0, np.nan, np.nan], [np.nan, 0.5, np.nan], [0.2, 0.9, 0.4]])
    mask = ~np.isnan(Y)
    P = np.array([[0.5, np.nan, np.nan], [np.nan, 0.01, np.nan], [np.nan, np.nan, np.nan]])
    fb = partial_feedback(Y, mask, P)
    assert fb.n_bandit == 2
    # 1 / p (clipped), scaled to mean 1 over each model's scored cells
    np.testing.assert_allclose(fb.weights, [[2 / 1.5, 0, 0], [0, IPS_CLIP / ((IPS_CLIP + 1) / 2), 0],
                                            [1 / 1.5, 2 / (IPS_CLIP + 1), 1]])
    # CV grades on the fully logged row only; on bandit rows alone, on their clipped IPS values
    np.testing.assert_array_equal(fb.scoring_mask, [[False] * 3, [False] * 3, [True] * 3])
    alone = partial_feedback(Y[:2], mask[:2], P[:2])
    np.testing.assert_allclose(alone.scoring_Y, [[2.0, 0, 0], [0, 0.5 * IPS_CLIP, 0]])
    assert alone.scoring_mask.all()
    assert partial_feedback(Y[2:], mask[2:], P[2:]) is None  # no bandit row: an ordinary fit
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        partial_feedback(Y, mask, np.where(np.isnan(P), np.nan, 1.5))


def test_ips_weighted_means_undo_the_deployed_routers_bias(nq):
    """The deployed router favoured each query's worst model: naive means of the logged scores are biased
    low for the models it favoured on hard queries; inverse-propensity weights recover the true means."""
    Y = nq.scores
    true = Y.mean(axis=0)
    worst = np.argmin(Y + 1e-3 * np.arange(Y.shape[1]), axis=1)
    errors = {"naive": [], "ips": []}
    for seed in range(5):
        Yb, mask, P = bandit_log(Y, worst, epsilon=0.3, seed=seed)
        X = np.zeros((len(Y), 2), np.float32)
        naive = BestSingleRouter().fit(X, Yb, mask=mask).means_
        ips = BestSingleRouter().fit(X, Yb, mask=mask, propensities=P).means_
        errors["naive"].append(np.abs(naive - true).mean())
        errors["ips"].append(np.abs(ips - true).mean())
    assert np.mean(errors["ips"]) < 0.5 * np.mean(errors["naive"]), errors


def test_weighted_ridge_is_sklearns_ridge_with_sample_weights():
    from sklearn.linear_model import Ridge

    from router.routers.linear import ridge_path

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(80, 5)), rng.normal(size=(80, 3))
    mask = rng.random((80, 3)) < 0.6
    W = np.where(mask, rng.uniform(0.5, 8.0, size=(80, 3)), 0.0)
    coef, icpt = ridge_path(X, Y, mask, np.array([3.0]), W)
    for j in range(3):
        ref = Ridge(alpha=3.0).fit(X[mask[:, j]], Y[mask[:, j], j], sample_weight=W[mask[:, j], j])
        np.testing.assert_allclose(coef[0][:, j], ref.coef_, atol=1e-9)
        np.testing.assert_allclose(icpt[0, j], ref.intercept_, atol=1e-9)


def test_knn_with_ips_weights_averages_neighbours_by_their_weights(nq, nq_X):
    favour = np.arange(200) % 3  # propensities differ between queries of one model
    Yb, mask, P = bandit_log(nq.scores[:200], favour, epsilon=0.5, seed=2)
    router = KNNRouter(n_neighbors=20, weighting="uniform", prior_weight=0.0, ips_weights=True).fit(
        nq_X[:200], Yb, mask=mask, propensities=P)
    plain = KNNRouter(n_neighbors=20, weighting="uniform", prior_weight=0.0).fit(nq_X[:200], Yb, mask=mask,
                                                                                propensities=P)
    assert not np.allclose(router.predict_scores(nq_X[200:]), plain.predict_scores(nq_X[200:]))
    W = partial_feedback(Yb, mask, P).weights
    q = nq_X[200:201]
    sims = (nq_X[:200] / np.linalg.norm(nq_X[:200], axis=1, keepdims=True)) @ (q[0] / np.linalg.norm(q[0]))
    near = np.argsort(-sims)[:20]
    for m in range(6):
        w = W[near, m]
        if w.sum() > 0:
            expected = (w * np.nan_to_num(Yb[near, m])).sum() / w.sum()
            assert router.predict_scores(q)[0, m] == pytest.approx(expected, abs=1e-5)


def test_cv_on_bandit_logs_scores_the_ips_value(nq, nq_X):
    """The mask alone would let only the logged model compete on a bandit row (every grid point scoring the
    same); the IPS pseudo-outcomes let CV tell the alphas apart."""
    Yb, mask, P = bandit_log(nq.scores[:300], np.zeros(300, int), epsilon=0.5, seed=3)
    alphas = (0.1, 1000.0)
    naive = RidgeRouter(alpha=alphas, cv=3).fit(nq_X[:300], Yb, mask=mask)
    ips = RidgeRouter(alpha=alphas, cv=3).fit(nq_X[:300], Yb, mask=mask, propensities=P)
    assert len(set(naive.cv_results_.values())) == 1  # degenerate: the logged model always "wins"
    assert len(set(ips.cv_results_.values())) == 2


def test_families_without_weights_refuse_bandit_logs(nq, nq_X):
    Yb, mask, P = bandit_log(nq.scores[:100], np.zeros(100, int), epsilon=0.5, seed=1)
    supported = sorted(name for name, cls in ROUTERS.items() if cls.supports_weights)
    assert supported == ["best_single", "knn", "ridge"]
    with pytest.raises(ValueError, match="cannot learn from partial feedback"):
        make_router("classifier").fit(nq_X[:100], Yb, mask=mask, propensities=P)
    # without any bandit row, propensities change nothing
    full = RidgeRouter(alpha=10.0).fit(nq_X[:100], nq.scores[:100])
    same = RidgeRouter(alpha=10.0).fit(nq_X[:100], nq.scores[:100], propensities=np.full((100, 6), np.nan))
    np.testing.assert_array_equal(full.coef_, same.coef_)
    assert isinstance(KNNRouter(), KNNRouter)


def write_served_traffic(folder, data, favour: int, epsilon: float, seed: int = 0) -> None:
    """The gateway's decision log for ``data``'s queries as an epsilon-greedy deployment around model
    ``favour`` would have written it (prompts as text), with each served answer's score as feedback."""
    from router.serve.decision_log import DecisionLog, DecisionLogConfig

    rng = np.random.default_rng(seed)
    n, m = data.scores.shape
    probs = np.full(m, epsilon / m)
    probs[favour] += 1 - epsilon
    picks = rng.choice(m, size=n, p=probs)
    log = DecisionLog(DecisionLogConfig(folder, prompts="text"))
    for i, a in enumerate(picks):
        rid = f"req-{i}"
        log.record(request_id=rid, prompt=str(data.prompts[i]), model=data.models[a],
                   scores={name: 0.0 for name in data.models}, lam=0.0, budget=None, share=None,
                   router_version="v1", latency_ms=1.0, propensity=float(probs[a]), policy=f"epsilon:{epsilon}")
        log.feedback(request_id=rid, score=float(data.scores[i, a]), cost=float(data.costs[i, a]))
    log.close()


def test_router_train_on_bandit_logs_alone(nq, tmp_path):
    """`router train DIR` on the gateway's decision log only (the router's own traffic): families that learn
    from it compete, held-out values are DR estimates with IPS / SNIPS / DR side by side in the report, and
    the model card says it was trained on partial feedback."""
    import json
    import pathlib

    from mlflow import MlflowClient
    from typer.testing import CliRunner

    from pipelines.cli import app
    from tests.conftest import TEST_CACHE

    write_served_traffic(tmp_path / "decisions", nq, favour=int(np.argmax(nq.scores.mean(axis=0))), epsilon=0.5)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    (tmp_path / "job.yaml").write_text(json.dumps({
        "name": "bandit-router", "embedder": {"cache_dir": str(TEST_CACHE)},
        "tracking": {"uri": uri, "artifact_root": str(tmp_path / "art")}, "export_dir": str(tmp_path / "models")}))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "decisions"), "--config", str(tmp_path / "job.yaml")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "trained on partial feedback: 3" in out and "doubly robust estimates on" in out
    assert "Off-policy estimates on the" in out and "| DR | IPS | SNIPS | DM |" in out
    assert "selection on the training split" in out
    for family in ("classifier", "mf", "cluster", "ensemble"):  # no weights: not candidates on bandit logs alone
        assert f"**{family}**" not in out
    for family in ("best_single", "knn", "ridge"):
        assert f"**{family}**" in out
    client = MlflowClient(uri)
    run_id = client.get_model_version_by_alias("bandit-router", "champion").run_id
    text = pathlib.Path(client.download_artifacts(run_id, "model_card.md", str(tmp_path))).read_text()
    assert "trained on partial feedback" in text and "doubly robust" in text


def test_one_model_per_query_without_propensities_is_refused_naming_the_column(nq, nq_X):
    from dataclasses import replace

    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment

    Yb, mask, _ = bandit_log(nq.scores, np.zeros(nq.n_queries, int), epsilon=0.5, seed=4)
    data = replace(nq, scores=Yb, mask=mask, propensities=None)
    with pytest.raises(ValueError, match="no 'propensity' column"):
        run_experiment(data, nq_X, JobConfig(routers=[{"family": "ridge"}]))


def test_a_little_explored_traffic_trains_without_nan(nq, nq_X, tmp_path):
    """The documented loop on a small log (issue 24, B2): serving with epsilon 0.2 gives the other models a
    handful of answers each, so a cross-validation fold sees some model never scored. Every family that learns
    from the router's own traffic still fits, and the job (and `router evaluate --routers best_single`) runs."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment
    from router.data.labels import build_routing_data
    from router.data.scan import scan_logs
    from tests.conftest import TEST_CACHE

    rows = np.arange(80)
    small = nq.subset(rows)
    write_served_traffic(tmp_path / "decisions", small, favour=int(np.argmax(nq.scores.mean(axis=0))), epsilon=0.2,
                         seed=1)
    data = build_routing_data(scan_logs(tmp_path / "decisions"))
    assert data.mask.sum(axis=0).min() <= 3  # some served model has only a few answers
    X = nq_X[rows][[int(q.removeprefix("req-")) for q in data.query_ids]]  # write_served_traffic's request ids
    for family in ("best_single", "knn", "ridge"):
        fitted = make_router(family).fit(X, data.scores, data.costs, data.mask, propensities=data.propensities)
        assert np.isfinite(fitted.predict_scores(X)).all(), family
    exp = run_experiment(data, X, JobConfig(routers=[{"family": f} for f in ("knn", "ridge")]))
    assert exp.exported in ("best_single", "knn", "ridge")
    (tmp_path / "job.yaml").write_text(f"embedder: {{cache_dir: '{TEST_CACHE}'}}\n")
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "decisions"), "--routers", "best_single",
                                      "--config", str(tmp_path / "job.yaml")])
    assert result.exit_code == 0, result.output
