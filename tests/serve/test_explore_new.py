"""A new model served a bounded share of the chat traffic (issue 25): drawn with its share, its propensity logged,
the router's ranking as its fallbacks, never once the router routes to it; bad settings refused at start."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import router
from router.serve.decision_log import DecisionLog, DecisionLogConfig
from router.serve.explore import Explorer, parse_new
from router.serve.gateway import ServeConfig
from tests.serve.test_explore import PROMPTS, Upstreams, chat, gateway, records

NEW = "acme/new-model-7b"


@pytest.fixture(scope="module")
def svc(nq_export):
    return router.load(nq_export)


def test_a_new_model_gets_its_share_with_its_propensity_logged(svc, tmp_path):
    up = Upstreams([*svc.models, NEW])
    log = DecisionLog(DecisionLogConfig(tmp_path, prompts="text"))
    try:
        with gateway(svc, log, up, explore_new=f"{NEW}:0.2", exploration_seed=5) as client:
            served = []
            for i in range(200):
                r = chat(client, PROMPTS[i % len(PROMPTS)])
                assert r.status_code == 200
                served.append((r.headers["x-router-model"], float(r.headers["x-router-propensity"])))
    finally:
        log.close()
    new = [p for m, p in served if m == NEW]
    assert 20 <= len(new) <= 60  # Binomial(200, 0.2): mean 40, sd 5.7
    assert all(p == 0.2 for p in new)
    picks = {p: svc.route([p])[0] for p in PROMPTS}
    rest = [(m, p, PROMPTS[i % len(PROMPTS)]) for i, (m, p) in enumerate(served) if m != NEW]
    assert all(m == picks[q] and p == pytest.approx(0.8) for m, p, q in rest)  # the router's pick otherwise
    recs = records(tmp_path)
    assert [r["model"] for r in recs] == [m for m, _ in served]
    assert all(r["policy"] == f"off+new:{NEW}:0.2" for r in recs)
    assert {r["propensity"] for r in recs if r["model"] == NEW} == {0.2}


def test_the_share_stops_once_the_router_routes_to_the_model(svc):
    routed = svc.models[0]
    explorer = Explorer(new={routed: 0.5}, seed=0)
    order = list(svc.models)
    assert all(explorer.with_new(order, 1.0) == (order, 1.0) for _ in range(50))
    explorer = Explorer(new={NEW: 0.5}, seed=0)
    drawn = [explorer.with_new(order, 1.0) for _ in range(50)]
    assert {o[0] for o, _ in drawn} == {NEW, order[0]}
    assert all(o[1:] == order and p == 0.5 for o, p in drawn if o[0] == NEW)  # the ranking as its fallbacks


def test_bad_new_model_settings_are_refused(svc, nq_export):
    assert parse_new("a:b:0.1, c:0.2") == {"a:b": 0.1, "c": 0.2}
    for bad, why in (("x", "NAME:SHARE"), ("x:abc", "NAME:SHARE"), ("x:0", "share in"), ("x:0.3,y:0.3", "sum")):
        with pytest.raises(ValueError, match=why):
            ServeConfig(explore_new=bad)
    with pytest.raises(ValueError, match=f"no upstream for {NEW}"):
        with gateway(svc, None, Upstreams(list(svc.models)), explore_new={NEW: 0.1}):
            pass
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["serve", str(nq_export), "--explore-new", f"{NEW}:0.9"])
    assert result.exit_code == 2 and result.output.startswith("error: explore_new"), result.output


def test_route_requests_are_not_explored_and_epsilon_multiplies_with_the_share(svc, tmp_path):
    from tests.serve.test_explore import probs_at

    up = Upstreams([*svc.models, NEW])
    log = DecisionLog(DecisionLogConfig(tmp_path, prompts="text"))
    try:
        with gateway(svc, log, up, explore_new={NEW: 0.25}, exploration="epsilon:0.2", exploration_seed=2) as client:
            r = client.post("/v1/route", json={"prompts": PROMPTS})
            assert NEW not in r.json()["models"]
            served = [chat(client) for _ in range(60)]
    finally:
        log.close()
    probs = probs_at(svc, PROMPTS[:1], "epsilon:0.2")[0]
    for r in served:
        model, p = r.headers["x-router-model"], float(r.headers["x-router-propensity"])
        assert p == (0.25 if model == NEW else pytest.approx(0.75 * probs[svc.models.index(model)]))
    recs = records(tmp_path)
    assert {r["policy"] for r in recs[:len(PROMPTS)]} == {"epsilon:0.2"}  # the route requests
    assert {r["policy"] for r in recs[len(PROMPTS):]} == {f"epsilon:0.2+new:{NEW}:0.25"}
