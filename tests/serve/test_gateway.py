"""The gateway's endpoints and command: /v1/route at every operating point, /v1/models, /healthz and
/metrics, OpenAI-shaped errors for bad requests, the body limit, no training stack imported, and
`router serve` refusing a bad config or answering until SIGTERM. Fake upstreams and gateways:
tests/serve/conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from router.serve.decision_log import DecisionLog, DecisionLogConfig
from tests.conftest import record_decision
from tests.serve.conftest import ENV, PROMPTS, QUESTION, chat, free_port, gateway


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


# ------------------------------------------------------------------ the serving modules and the CLI


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
    feedback = ["feedback", "--decision-log", str(tmp_path / "log"), "abc", "0.5", "--cost", "0.01"]
    result = runner.invoke(app, feedback)
    assert result.exit_code == 2 and "no decision log there" in result.output
    with DecisionLog(DecisionLogConfig(tmp_path / "log")) as log:
        record_decision(log, 1)
    result = runner.invoke(app, feedback)  # a request id the gateway never routed
    assert result.exit_code == 2 and "error: no routed request with id 'abc' in " in result.output
    result = runner.invoke(app, [*feedback[:3], "r1", *feedback[4:]])
    assert result.exit_code == 0, result.output
    assert json.loads(next((tmp_path / "log").glob("feedback-cli-*.jsonl")).read_text())["score"] == 0.5
    result = runner.invoke(app, [*feedback[:3], "r1", "0.9"])
    assert result.exit_code == 2 and "already has feedback score 0.5, cost 0.01" in result.output


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
