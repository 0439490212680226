"""The OpenAI-compatible gateway (`router serve`) against fake upstreams on real loopback sockets.

A fake upstream server answers at ``/<slug>/v1/chat/completions`` for every model of the NQ router, each
slug switchable to fail (500, 429, slow, ...). Gateways run under uvicorn in a thread with a real router
(the ``nq_export`` kNN head); every server is stopped in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

import router
from router.policy.operating_point import SpendCurve, margin_quantiles
from router.policy.rule import choose, rank
from router.serve.decision_log import DecisionLog, DecisionLogConfig
from router.serve.gateway import FixedRouter, ServeConfig, create_app
from router.serve.service import RouterService
from router.serve.upstreams import api_keys, load_upstreams, parse_upstreams

QUESTION = "who wrote the declaration of independence?"
PROMPTS = [QUESTION, "when does a wrinkle in time come out in canada?", "what is the capital of australia?",
           "how many episodes are in season 5 of the walking dead?", "who sings the song i want it that way?",
           "where is the great barrier reef located?"]
SLOW_S = 1.5  # a "slow" upstream answers after this; the gateway's timeout for it is far shorter


def slug(model: str) -> str:
    return model.replace("/", "_")


def sse_chunks(tag: str) -> list[bytes]:
    """What a streaming fake upstream sends: odd bytes on purpose (a comment, non-ASCII, no trailing data)."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": tag, "choices": [{"delta": {"content": "Hé"}}]}
    return [b": keep-alive\n\n", f"data: {json.dumps(chunk)}\n\n".encode(),
            'data: {"choices":[{"delta":{"content":"llo \\u00e9 \u00e9"}}]}\n\n'.encode(), b"data: [DONE]\n\n"]


class FakeUpstreams:
    """One loopback app standing in for every upstream; ``modes[slug]`` picks its behaviour."""

    def __init__(self) -> None:
        self.modes: dict[str, str] = {}
        self.calls: list[tuple[str, dict, dict]] = []  # (slug, headers, body)

    def app(self) -> Starlette:
        async def chat(request):
            name = request.path_params["slug"]
            body = await request.json()
            self.calls.append((name, dict(request.headers), body))
            mode = self.modes.get(name, "ok")
            if mode in ("500", "429", "400"):
                return JSONResponse({"error": {"message": f"fake {mode}"}}, status_code=int(mode))
            if mode == "slow":
                await asyncio.sleep(SLOW_S)
            if mode == "garbage":
                return Response(b"<html>not json</html>", media_type="text/html")
            if body.get("stream"):
                async def gen():
                    for c in sse_chunks(name):
                        yield c
                        await asyncio.sleep(0.005)
                return StreamingResponse(gen(), media_type="text/event-stream")
            message = {"role": "assistant", "content": f"from {name}"}
            return JSONResponse({"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "message": message}]})

        return Starlette(routes=[Route("/{slug}/v1/chat/completions", chat, methods=["POST"])])


@contextmanager
def serve_in_thread(app, grace: float = 2.0):
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields its base URL; always stops it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level=None,
                                           timeout_graceful_shutdown=grace))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "server did not stop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def svc(nq_export) -> RouterService:
    """The NQ router, with a budget curve and share margins so every operating point can be asked for."""
    base = router.load(nq_export)
    margins = margin_quantiles(base.scores(PROMPTS), np.asarray(base.meta.model_costs), base.meta.default_lam)
    curve = SpendCurve(lam=(0.0, 100.0, 1000.0, 1e4), cost=(1e-4, 5e-5, 2e-5, 1.2e-5))
    calibration = replace(base.calibration, curve=curve, margins=margins, margins_lam=base.meta.default_lam)
    return RouterService(base.embedder, base.head, replace(base.meta, calibration=calibration))


@pytest.fixture(scope="module")
def fake():
    upstreams = FakeUpstreams()
    with serve_in_thread(upstreams.app()) as url:
        upstreams.url = url
        yield upstreams


@pytest.fixture
def upstream_map(svc, fake):
    """Every router model on the fake server with its own key variable, plus an unrouted extra model."""
    fake.modes.clear()
    fake.calls.clear()
    models = {m: {"base_url": f"{fake.url}/{slug(m)}/v1", "model": f"up-{i}", "api_key_env": f"KEY_{i}"}
              for i, m in enumerate(svc.models)}
    models["extra-model"] = {"base_url": f"{fake.url}/extra/v1"}
    return {"retries": 2, "models": models}


ENV = {f"KEY_{i}": f"secret-{i}" for i in range(6)}  # passed to create_app, never written to os.environ


@contextmanager
def gateway(svc, raw_map, decision_log=None, **config):
    app = create_app(FixedRouter(svc, "test-v1"), upstreams=parse_upstreams(raw_map, "test.yaml") if raw_map else None,
                     decision_log=decision_log, config=ServeConfig(**config), environ=ENV)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=20) as client:
        yield client


def ranking(svc, text: str, **point) -> list[str]:
    idx = svc.ranked(svc.scores([text]), svc.operating_point(**point))[0]
    return [svc.models[i] for i in idx]


def chat(client, model="router", text=QUESTION, headers=None, **extra):
    return client.post("/v1/chat/completions", headers=headers, json={"model": model, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": text}], **extra})


# ------------------------------------------------------------------ the decision rule's ranking


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


# ------------------------------------------------------------------ routing and forwarding


def test_routes_to_the_choice_and_forwards_with_upstream_id_and_key(svc, upstream_map, fake, tmp_path):
    log = DecisionLog(DecisionLogConfig(tmp_path / "log"))
    try:
        with gateway(svc, upstream_map, decision_log=log) as client:
            for model, point in (("router", {}), ("router:lam=2000", {"lam": 2000.0}),
                                 ("router:budget=0.00003", {"budget": 3e-5})):
                expected = svc.route([QUESTION], **point)[0]
                r = chat(client, model, headers={"x-request-id": f"req-{len(fake.calls)}"})
                assert r.status_code == 200, r.text
                assert r.headers["x-router-model"] == expected and r.json()["model"] == expected
                assert r.headers["x-router-decision"] == "routed" and r.headers["x-router-version"] == "test-v1"
                assert r.headers["x-request-id"] == f"req-{len(fake.calls) - 1}"
                name, headers, body = fake.calls[-1]
                i = svc.models.index(expected)
                assert name == slug(expected) and body["model"] == f"up-{i}"
                assert headers["authorization"] == f"Bearer secret-{i}"
                assert body["messages"][1]["content"] == QUESTION  # the rest of the body as sent
            share_model = svc.models[0]
            r = chat(client, f"router:share={share_model}:1")  # all calls to that model
            assert r.headers["x-router-model"] == share_model
            r = client.post("/v1/feedback", json={"request_id": "req-0", "score": 1.0, "cost": 0.001})
            assert r.status_code == 204
            # a real model name passes through unrouted: no decision record
            r = chat(client, svc.models[3], stream=False)
            assert r.status_code == 200 and r.headers["x-router-decision"] == "passthrough"
            assert r.headers["x-router-model"] == svc.models[3] and fake.calls[-1][2]["model"] == "up-3"
            r = chat(client, "extra-model")
            assert r.json()["model"] == "extra-model" and fake.calls[-1][2]["model"] == "extra-model"
            assert "authorization" not in fake.calls[-1][1]
    finally:
        log.close()
    decisions = [json.loads(line) for f in sorted((tmp_path / "log").glob("decisions-*.jsonl"))
                 for line in f.read_text().splitlines()]
    assert [d["request_id"] for d in decisions[:3]] == ["req-0", "req-1", "req-2"] and len(decisions) == 4
    assert decisions[1]["lam"] == 2000.0 and decisions[2]["budget"] == 3e-5
    assert set(decisions[0]["scores"]) == set(svc.models) and decisions[0]["router_version"] == "test-v1"
    feedback = [json.loads(line) for f in (tmp_path / "log").glob("feedback-*.jsonl")
                for line in f.read_text().splitlines()]
    assert feedback[0]["request_id"] == "req-0" and feedback[0]["cost"] == 0.001


def test_content_parts_and_route_on_conversation(svc, upstream_map, fake):
    parts = [{"type": "text", "text": "who wrote the"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "declaration of independence?"}]
    with gateway(svc, upstream_map) as client:
        r = client.post("/v1/chat/completions", json={"model": "router", "messages": [
            {"role": "user", "content": "ignored earlier turn"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": parts}]})
        assert r.headers["x-router-model"] == svc.route(["who wrote the\ndeclaration of independence?"])[0]
    text = "be brief\n\n" + PROMPTS[4]
    with gateway(svc, {**upstream_map, "route_on": "conversation"}) as client:
        r = chat(client, text=PROMPTS[4])
        assert r.headers["x-router-model"] == svc.route([text])[0]


def test_streaming_passes_bytes_through_unchanged_and_falls_back_before_the_first_byte(svc, upstream_map, fake):
    order = ranking(svc, QUESTION)
    with gateway(svc, upstream_map) as client:
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "router", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as r:
            received = b"".join(r.iter_raw())
        assert r.status_code == 200 and r.headers["x-router-model"] == order[0]
        assert r.headers["content-type"].startswith("text/event-stream")
        assert received == b"".join(sse_chunks(slug(order[0])))
        fake.modes[slug(order[0])] = "500"
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "router", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as r:
            received = b"".join(r.iter_raw())
        assert r.headers["x-router-model"] == order[1] and r.headers["x-router-fallback-from"] == order[0]
        assert received == b"".join(sse_chunks(slug(order[1])))


def test_fallback_on_500_and_on_timeout(svc, upstream_map, fake):
    order = ranking(svc, QUESTION)
    fake.modes[slug(order[0])] = "500"
    with gateway(svc, upstream_map) as client:
        r = chat(client)
        assert r.status_code == 200 and r.headers["x-router-model"] == order[1] and r.json()["model"] == order[1]
        assert [c[0] for c in fake.calls] == [slug(order[0]), slug(order[1])]
        fake.modes[slug(order[0])] = "400"  # a client error is the client's: passed back, no fallback
        r = chat(client)
        assert r.status_code == 400 and r.json()["error"]["message"] == "fake 400"
    fake.modes[slug(order[0])] = "slow"
    upstream_map["models"][order[0]]["timeout_s"] = 0.3
    with gateway(svc, upstream_map) as client:
        start = time.monotonic()
        r = chat(client)
        assert r.status_code == 200 and r.headers["x-router-model"] == order[1]
        assert time.monotonic() - start < SLOW_S
        metrics = client.get("/metrics").text
    assert f'router_upstream_errors_total{{kind="timeout",model="{order[0]}"}} 1.0' in metrics


def test_502_names_every_model_tried(svc, upstream_map, fake):
    order = ranking(svc, QUESTION)
    fake.modes[slug(order[0])] = "500"
    fake.modes[slug(order[1])] = "429"
    fake.modes[slug(order[3])] = "ok"  # beyond retries=2: never tried
    upstream_map["models"][order[2]]["base_url"] = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
    with gateway(svc, upstream_map) as client:
        r = chat(client)
        assert r.status_code == 502
        err = r.json()["error"]
        assert err["type"] == "upstream_error"
        assert [a["model"] for a in err["attempts"]] == order[:3]
        assert [a["kind"] for a in err["attempts"]] == ["http_500", "http_429", "connect"]
        assert all(m in err["message"] for m in order[:3]) and "fake 500" in err["message"]
        fake.modes[slug(order[1])] = "garbage"  # 200 but not JSON: also a failure
        assert chat(client).json()["error"]["attempts"][1]["kind"] == "bad_response"


# ------------------------------------------------------------------ /v1/route and the small endpoints


def test_route_matches_the_service_at_every_operating_point(svc):
    with gateway(svc, None) as client:
        for point in ({}, {"lam": 0.0}, {"lam": 2000.0}, {"budget": 6e-5}, {"budget": 0.0},
                      {"share": {svc.models[2]: 0.5}}, {"share": {svc.models[0]: 1.0}}):
            r = client.post("/v1/route", json={"prompts": PROMPTS, "return_scores": True, **point})
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["models"] == svc.route(PROMPTS, **point), point
            assert out["router_version"] == "test-v1" and len(out["request_ids"]) == len(PROMPTS)
            np.testing.assert_allclose([[s[m] for m in svc.models] for s in out["scores"]], svc.scores(PROMPTS))
        r = client.post("/v1/route", json={"prompts": PROMPTS[:2], "tasks": ["nq", None]})
        assert "scores" not in r.json() and len(r.json()["models"]) == 2


def test_models_healthz_metrics(svc, upstream_map, fake):
    with gateway(svc, upstream_map) as client:
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert ids == ["router", *svc.models, "extra-model"]
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["router_version"] == "test-v1" and health["models"] == svc.models
        chosen = svc.route([QUESTION])[0]
        for _ in range(2):
            chat(client)
        client.post("/v1/route", json={"prompts": ["x"], "lam": -1})
        r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'router_requests_total{endpoint="/v1/chat/completions",status="200"} 2.0' in text
    assert 'router_requests_total{endpoint="/v1/route",status="400"} 1.0' in text
    assert f'router_routed_total{{model="{chosen}"}} 2.0' in text
    assert "router_routing_seconds_count 2.0" in text
    assert 'router_request_seconds_count{endpoint="/v1/chat/completions"} 2.0' in text
    from prometheus_client import REGISTRY  # the process-wide registry is left alone

    assert REGISTRY.get_sample_value("router_requests_total", {"endpoint": "/healthz", "status": "200"}) is None


@pytest.mark.parametrize("path, body, status, message", [
    ("/v1/chat/completions", b"{not json", 400, "not valid JSON"),
    ("/v1/chat/completions", {"model": "router"}, 400, "messages must be a non-empty list"),
    ("/v1/chat/completions", {"model": "router", "messages": [{"role": "system", "content": "x"}]}, 400,
     "no user message"),
    ("/v1/chat/completions", {"model": "router", "messages": [{"role": "user", "content": 3}]}, 400,
     "content must be a string or a list"),
    ("/v1/chat/completions", {"model": "router", "stream": "yes", "messages": [{"role": "user", "content": "q"}]},
     400, "stream must be true or false"),
    ("/v1/chat/completions", {"model": "gpt-9", "messages": [{"role": "user", "content": "q"}]}, 404,
     "unknown model 'gpt-9'; valid: router, google/gemma-2-27b-it, "),
    ("/v1/chat/completions", {"model": "router:lam=abc", "messages": [{"role": "user", "content": "q"}]}, 400,
     "'abc' is not a number"),
    ("/v1/chat/completions", {"model": "router:speed=1", "messages": [{"role": "user", "content": "q"}]}, 400,
     "expected router:lam=0.5"),
    ("/v1/chat/completions", {"model": "router:share=nope:0.3", "messages": [{"role": "user", "content": "q"}]},
     400, "share: unknown model 'nope'"),
    ("/v1/route", {"prompts": ["q"], "temperature": 1}, 400, "unknown parameter 'temperature'"),
    ("/v1/route", {"prompts": "q"}, 400, "prompts must be a non-empty list of strings"),
    ("/v1/route", {"prompts": ["q"], "lam": "high"}, 400, "lam must be a number >= 0"),
    ("/v1/route", {"prompts": ["q"], "share": {"a": 0.1, "b": 0.2}}, 400, "share must be one {model: fraction}"),
    ("/v1/route", {"prompts": ["q"], "lam": 1, "budget": 1}, 400, "give at most one of lam, budget, share"),
    ("/v1/route", {"prompts": ["q"], "tasks": ["a", "b"]}, 400, "tasks must be a list of 1"),
    ("/v1/route", [1, 2], 400, "must be a JSON object"),
    ("/v1/feedback", {"request_id": "r", "score": 1}, 404, "decision log not enabled"),
    ("/v1/nothing", {}, 404, "no endpoint /v1/nothing"),
])
def test_bad_requests_get_openai_shaped_errors(svc, upstream_map, fake, path, body, status, message):
    with gateway(svc, upstream_map) as client:
        kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
        r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"] and err["type"] == "invalid_request_error"
    assert fake.calls == []


def test_body_limit_by_content_length_and_while_reading(svc):
    big = json.dumps({"prompts": ["x" * 5000]}).encode()
    with gateway(svc, None, max_body_bytes=4096) as client:
        r = client.post("/v1/route", content=big)
        assert r.status_code == 413 and "4096 bytes" in r.json()["error"]["message"]
        r = client.post("/v1/route", content=iter([big[:3000], big[3000:]]))  # chunked: no content-length
        assert r.status_code == 413
        assert client.post("/v1/route", json={"prompts": ["x" * 100]}).status_code == 200
        assert client.get("/v1/route").status_code == 405


# ------------------------------------------------------------------ configuration and the CLI


@pytest.mark.parametrize("text, message", [
    ("models: {a: {base_url: 'ftp://x'}}", "models.a.base_url: expected an http:// or https:// URL"),
    ("models: {a: {base_url: 'http://x', temperature: 1}}", "models.a: unknown key 'temperature'"),
    ("retries: -1\nmodels: {a: {base_url: 'http://x'}}", "retries: expected an integer >= 0"),
    ("route_on: everything\nmodels: {a: {base_url: 'http://x'}}", "route_on: expected last_user or conversation"),
    ("timeout_s: 0\nmodels: {a: {base_url: 'http://x'}}", "timeout_s: expected a number of seconds > 0"),
    ("models: []", "models: expected a non-empty mapping"),
    ("retry: 1\nmodels: {a: {base_url: 'http://x'}}", "unknown key 'retry'"),
    ("models: {a: [", "not valid YAML"),
])
def test_bad_upstream_maps_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "up.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="up.yaml") as info:
        load_upstreams(path)
    assert message in str(info.value)


def test_upstream_defaults_and_unset_key(tmp_path):
    path = tmp_path / "up.yaml"
    path.write_text("models:\n  a: {base_url: 'http://h/v1/', api_key_env: NO_SUCH_VAR_X}\n"
                    "  b: {base_url: 'http://h', timeout_s: 5}\n")
    umap = load_upstreams(path)
    assert (umap.retries, umap.route_on, umap.timeout("a"), umap.timeout("b")) == (2, "last_user", 60.0, 5.0)
    assert umap.models["a"].chat_url == "http://h/v1/chat/completions" and umap.models["a"].model == "a"
    with pytest.raises(ValueError, match=r"up.yaml: environment variable not set: NO_SUCH_VAR_X \(models.a"):
        api_keys(umap, {})
    assert api_keys(umap, {"NO_SUCH_VAR_X": "k"}) == {"a": "k"}


def test_serving_modules_import_no_training_stack():
    code = ("import sys, router.serve.gateway, router.serve.upstreams, router.serve.prometheus; "
            "print([m for m in ('polars', 'pandas', 'sklearn', 'mlflow', 'torch', 'dask') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_bad_config_exits_2_with_one_line(tmp_path, nq_export):
    from pipelines.cli import app

    runner = CliRunner()
    bad = tmp_path / "up.yaml"
    bad.write_text("retries: many\nmodels: {a: {base_url: 'http://x'}}\n")
    for args in (["--upstreams", str(bad)], ["--log-prompts", "all"], ["--port", "70000"]):
        result = runner.invoke(app, ["serve", str(nq_export), *args])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    bad.write_text("models: {a: {base_url: 'http://x', api_key_env: SURELY_UNSET_ROUTER_KEY_9}}\n")
    result = runner.invoke(app, ["serve", str(nq_export), "--upstreams", str(bad)])
    assert result.exit_code == 2 and "SURELY_UNSET_ROUTER_KEY_9" in result.output
    result = runner.invoke(app, ["feedback", "--decision-log", str(tmp_path / "log"), "", "1"])
    assert result.exit_code == 2 and "request_id must be a non-empty string" in result.output
    result = runner.invoke(app, ["feedback", "--decision-log", str(tmp_path / "log"), "abc", "0.5", "--cost", "0.01"])
    assert result.exit_code == 0, result.output
    assert json.loads(next((tmp_path / "log").glob("feedback-cli-*.jsonl")).read_text())["score"] == 0.5


@pytest.mark.slow
def test_cli_serve_answers_then_stops_on_sigterm(tmp_path, nq_export, svc, upstream_map, fake):
    umap = tmp_path / "up.yaml"
    umap.write_text(json.dumps(upstream_map))  # JSON is YAML
    port = free_port()
    cli = Path(sys.executable).with_name("router")
    env = {**os.environ, **ENV, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(cli), "serve", str(nq_export), "--upstreams", str(umap), "--port", str(port),
                             "--decision-log", str(tmp_path / "log"), "--log-prompts", "text", "--reload-seconds", "1"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url, deadline, health = f"http://127.0.0.1:{port}", time.monotonic() + 90, None
        while health is None:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "router serve did not answer /healthz"
            try:
                health = httpx.get(f"{url}/healthz", timeout=2).json()
            except httpx.TransportError:
                time.sleep(0.2)
        assert health["models"] == svc.models
        r = chat(httpx.Client(base_url=url, timeout=30))
        assert r.status_code == 200 and r.headers["x-router-model"] == svc.route([QUESTION])[0]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
    record = json.loads(next((tmp_path / "log").glob("decisions-*.jsonl")).read_text())
    assert record["prompt"] == QUESTION and record["request_id"] == r.headers["x-request-id"]
