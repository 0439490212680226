"""Exploration at serving (issue 15): sampled picks, logged propensities, and propensities in the training data.

The gateway runs in-process (``starlette.testclient``) with the real NQ kNN router (``nq_export``); chat
upstreams are an ``httpx.MockTransport``. The logs written here are read back through ``scan_logs`` and
``build_routing_data`` as a training job would.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import router
from router.data.scan import scan_logs
from router.data.labels import build_routing_data
from router.data.validate import validate_logs
from router.policy.exploration import Exploration, policy_probabilities
from router.serve.decision_log import DecisionLog, DecisionLogConfig
from router.serve.explore import first
from router.serve.gateway import FixedRouter, ServeConfig, create_app
from router.serve.service import RouterService
from router.serve.upstreams import parse_upstreams
from tests.conftest import NQ_SAMPLE

PROMPTS = ["who wrote the declaration of independence?", "what is the capital of australia?",
           "how many episodes are in season 5 of the walking dead?", "where is the great barrier reef located?"]


@pytest.fixture(scope="module")
def svc(nq_export) -> RouterService:
    return router.load(nq_export)


class Upstreams:
    """Every router model behind one mock transport; ``fail_first`` fails each request's first attempt (500)."""

    def __init__(self, models: list[str]) -> None:
        self.models = models
        self.fail_first = False
        self.calls: list[str] = []

    def map(self):
        return parse_upstreams({"retries": 2, "models": {m: {"base_url": f"http://up/{i}/v1"}
                                                          for i, m in enumerate(self.models)}}, "test.yaml")

    def handler(self, request: httpx.Request) -> httpx.Response:
        name = self.models[int(request.url.path.split("/")[1])]
        self.calls.append(name)
        if self.fail_first and len(self.calls) % 2 == 1:
            return httpx.Response(500, json={"error": {"message": "down"}})
        return httpx.Response(200, json={"id": "c1", "object": "chat.completion", "model": "x",
                                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]})


@contextmanager
def gateway(svc, log=None, upstreams: Upstreams | None = None, **config):
    app = create_app(FixedRouter(svc, "v-test"), upstreams=upstreams.map() if upstreams else None, decision_log=log,
                     config=ServeConfig(**config),
                     transport=httpx.MockTransport(upstreams.handler) if upstreams else None)
    with TestClient(app) as client:
        yield client


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("decisions-*.jsonl")) for line in f.read_text().splitlines()]


def probs_at(svc, prompts, exploration, **point) -> np.ndarray:
    point = svc.operating_point(**point)
    return policy_probabilities(svc.scores(prompts), np.asarray(svc.meta.model_costs), point.lam, point.bias,
                                Exploration.parse(exploration))


def chat(client, text=PROMPTS[0], model="router"):
    return client.post("/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}]})


# ------------------------------------------------------------------ serving


def test_off_answers_and_logs_exactly_as_before_with_propensity_one(svc, tmp_path):
    assert ServeConfig().exploration == Exploration() and str(ServeConfig().exploration) == "off"
    up = Upstreams(svc.models)
    log = DecisionLog(DecisionLogConfig(tmp_path, prompts="text"))
    try:
        with gateway(svc, log, up) as client:
            r = client.post("/v1/route", json={"prompts": PROMPTS, "lam": 2000.0})
            assert r.status_code == 200 and r.json()["models"] == svc.route(PROMPTS, lam=2000.0)
            assert "propensities" not in r.json() and "x-router-propensity" not in r.headers
            r = chat(client)
            assert r.headers["x-router-model"] == svc.route(PROMPTS[:1])[0] == up.calls[-1]
            assert "x-router-propensity" not in r.headers
    finally:
        log.close()
    recs = records(tmp_path)
    assert len(recs) == len(PROMPTS) + 1
    assert all(r["propensity"] == 1.0 and r["policy"] == "off" for r in recs)
    assert [r["model"] for r in recs] == [*svc.route(PROMPTS, lam=2000.0), svc.route(PROMPTS[:1])[0]]


@pytest.mark.parametrize("exploration, point", [("epsilon:0.3", {}), ("softmax:0.1", {"lam": 2000.0})])
def test_route_samples_with_the_logged_policy_probabilities(svc, tmp_path, exploration, point):
    probs = probs_at(svc, PROMPTS, exploration, **point)
    assert (probs.max(axis=1) < 0.95).all()  # every prompt explores
    n_calls = 300
    log = DecisionLog(DecisionLogConfig(tmp_path, prompts="text"))
    served = np.zeros_like(probs)
    try:
        with gateway(svc, log, exploration=exploration, exploration_seed=7) as client:
            for i in range(n_calls):
                q = i % len(PROMPTS)
                r = client.post("/v1/route", json={"prompts": [PROMPTS[q]], **point}).json()
                (model,), (p,) = r["models"], r["propensities"]
                j = svc.models.index(model)
                assert p == pytest.approx(probs[q, j], rel=1e-9)
                served[q, j] += 1
            batch = client.post("/v1/route", json={"prompts": PROMPTS, **point})
    finally:
        log.close()
    body = batch.json()
    assert len(body["propensities"]) == len(PROMPTS) and "x-router-propensity" not in batch.headers
    for q, (model, p) in enumerate(zip(body["models"], body["propensities"])):
        assert p == pytest.approx(probs[q, svc.models.index(model)], rel=1e-9)
    recs = records(tmp_path)
    assert len(recs) == n_calls + len(PROMPTS) and {r["policy"] for r in recs} == {exploration}
    for r in recs:
        q = PROMPTS.index(r["prompt"])
        assert r["propensity"] == pytest.approx(probs[q, svc.models.index(r["model"])], rel=1e-9)
    # frequencies: every count within 4 standard deviations (+2 for rare models) of its expectation, per prompt
    n = served.sum(axis=1, keepdims=True)
    assert (np.abs(served - n * probs) <= 4 * np.sqrt(n * probs * (1 - probs)) + 2).all()
    assert (served[probs > 0.1] > 0).all()


def test_seeded_runs_reproduce_and_other_seeds_differ(svc):
    def picks(seed):
        with gateway(svc, exploration="epsilon:0.5", exploration_seed=seed) as client:
            out = []
            for i in range(40):
                r = client.post("/v1/route", json={"prompts": [PROMPTS[i % 2]]})
                out.append((r.json()["models"][0], r.json()["propensities"][0], r.headers["x-router-propensity"]))
            return out

    first_run = picks(3)
    assert first_run == picks(3)
    assert [m for m, *_ in first_run] != [m for m, *_ in picks(4)]
    assert all(float(h) == p for _, p, h in first_run)


def test_chat_logs_the_draw_and_a_fallback_logs_null(svc, tmp_path):
    up = Upstreams(svc.models)
    probs = probs_at(svc, PROMPTS[:1], "softmax:0.05")[0]
    ranking = [svc.models[i] for i in svc.ranked(svc.scores(PROMPTS[:1]), svc.operating_point())[0]]
    log = DecisionLog(DecisionLogConfig(tmp_path, prompts="text"))
    try:
        with gateway(svc, log, up, exploration="softmax:0.05", exploration_seed=1) as client:
            answered = []
            for _ in range(20):
                r = chat(client)
                assert r.status_code == 200 and "x-router-fallback-from" not in r.headers
                model = r.headers["x-router-model"]
                assert float(r.headers["x-router-propensity"]) == pytest.approx(probs[svc.models.index(model)])
                answered.append(model)
            assert len(set(answered)) > 1  # it explored
            up.fail_first = True
            fell_back = []
            for _ in range(10):
                r = chat(client)
                drawn, model = r.headers["x-router-fallback-from"], r.headers["x-router-model"]
                assert r.status_code == 200 and "x-router-propensity" not in r.headers
                assert model == [m for m in ranking if m != drawn][0]  # then the rest in rank order
                fell_back.append(model)
    finally:
        log.close()
    recs = records(tmp_path)
    assert [r["model"] for r in recs] == answered + fell_back
    assert all(r["propensity"] == pytest.approx(probs[svc.models.index(r["model"])]) for r in recs[:20])
    assert all(r["propensity"] is None and r["policy"] == "softmax:0.05" for r in recs[20:])


def test_first_moves_the_pick_to_the_front_keeping_the_rest_in_order():
    ranked = np.array([[2, 0, 1, 3], [0, 1, 2, 3], [3, 2, 1, 0]])
    assert first(ranked, np.array([1, 0, 0])).tolist() == [[1, 2, 0, 3], [0, 1, 2, 3], [0, 3, 2, 1]]


@pytest.mark.parametrize("value", ["bogus", "epsilon:2", "softmax:-1", "off:1"])
def test_bad_exploration_exits_2_with_one_line(nq_export, value):
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["serve", str(nq_export), "--exploration", value])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "exploration" in lines[0], result.output
    with pytest.raises(ValueError, match="exploration_seed"):
        ServeConfig(exploration_seed=-1)


# ------------------------------------------------------------------ propensities into the training data


def test_decision_logs_carry_propensities_into_the_routing_data(svc, tmp_path):
    served = tmp_path / "logs" / "served"
    log = DecisionLog(DecisionLogConfig(served, prompts="text"))
    try:
        with gateway(svc, log, exploration="epsilon:0.5", exploration_seed=0) as client:
            body = client.post("/v1/route", json={"prompts": PROMPTS}).json()
        for rid in body["request_ids"]:
            log.feedback(request_id=rid, score=1.0, cost=0.001)
        # a fallback-served request: its propensity is unknown
        log.record(request_id="fb", prompt="what is a fallback?", model=svc.models[0], scores={}, lam=0.0,
                   budget=None, share=None, router_version="v", latency_ms=1.0, propensity=None, policy="epsilon:0.5")
        log.feedback(request_id="fb", score=0.0)
    finally:
        log.close()
    full = pl.read_ndjson(NQ_SAMPLE).head(12)  # full-information logs beside them: 2 queries x 6 models
    full.write_ndjson(tmp_path / "logs" / "full.jsonl")

    lf = scan_logs(tmp_path / "logs")
    validate_logs(lf)
    data = build_routing_data(lf, models=svc.models)
    assert data.propensities is not None and data.propensities.shape == data.scores.shape
    row = {q: i for i, q in enumerate(data.query_ids)}
    for rid, model, p in zip(body["request_ids"], body["models"], body["propensities"]):
        i, j = row[rid], svc.models.index(model)
        assert data.propensities[i, j] == p and data.mask[i].sum() == 1
        assert np.isnan(np.delete(data.propensities[i], j)).all()
    assert np.isnan(data.propensities[row["fb"]]).all()
    bandit = {q for q, b in zip(data.query_ids, data.is_bandit) if b}
    assert bandit == set(body["request_ids"])  # not the fallback, not the full-information queries

    # kept aligned by subset and select_models
    keep = np.array([row[body["request_ids"][0]], row["fb"]])
    part = data.subset(keep)
    assert part.is_bandit.tolist() == [True, False]
    np.testing.assert_array_equal(part.propensities, data.propensities[keep])
    flipped = data.select_models(svc.models[::-1])
    np.testing.assert_array_equal(flipped.propensities, data.propensities[:, ::-1])
    assert (flipped.is_bandit == data.is_bandit).all()
