"""What the gateway refuses (issue 24): callers without the API key, feedback for a request it never routed or a
second outcome for one, and text that is not what the caller could have meant (a lone UTF-16 surrogate, a NUL)."""

from __future__ import annotations

import json

import pytest

from router.serve.decision_log import DecisionLog, DecisionLogConfig
from router.serve.gateway import ServeConfig
from router.serve.server import GatewayServer
from tests.serve.conftest import PROMPTS, chat, gateway

KEY = "s3cret-key"


def test_the_api_key_guards_every_v1_endpoint_and_nothing_else(svc, upstream_map, fake, tmp_path):
    log = DecisionLog(DecisionLogConfig(tmp_path / "log"))
    try:
        with gateway(svc, upstream_map, log, api_key=KEY) as client:
            for call in (lambda h: client.post("/v1/route", json={"prompts": PROMPTS[:1]}, headers=h),
                         lambda h: chat(client, headers=h),
                         lambda h: client.post("/v1/feedback", json={"request_id": "x", "score": 1}, headers=h),
                         lambda h: client.get("/v1/models", headers=h)):
                for headers in (None, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
                    r = call(headers)
                    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
                    assert r.headers["www-authenticate"] == "Bearer"
            ok = {"authorization": f"Bearer {KEY}"}
            assert client.post("/v1/route", json={"prompts": PROMPTS[:1]}, headers=ok).status_code == 200
            assert chat(client, headers=ok).status_code == 200
            assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200
            assert "authorization" not in {k.lower() for k in fake.calls[-1][1]} or \
                fake.calls[-1][1]["authorization"] != f"Bearer {KEY}"  # the caller's key never goes upstream
    finally:
        log.close()
    assert "s3cret" not in repr(ServeConfig(api_key=KEY))
    with pytest.raises(ValueError, match="api_key: expected a non-empty string"):
        ServeConfig(api_key=" ")


def test_feedback_must_name_a_routed_request_and_keep_one_outcome(svc, tmp_path):
    log = DecisionLog(DecisionLogConfig(tmp_path / "log"))
    try:
        with gateway(svc, None, log) as client:
            rid = client.post("/v1/route", json={"prompts": PROMPTS[:1]}).json()["request_ids"][0]
            for unknown in ("../../etc/passwd", "nope"):
                r = client.post("/v1/feedback", json={"request_id": unknown, "score": 1})
                assert r.status_code == 404 and "no routed request with id" in r.json()["error"]["message"]
            assert client.post("/v1/feedback", json={"request_id": rid, "score": 1, "cost": 0.01}).status_code == 204
            assert client.post("/v1/feedback", json={"request_id": rid, "score": 1, "cost": 0.01}).status_code == 204
            r = client.post("/v1/feedback", json={"request_id": rid, "score": 0})
            assert r.status_code == 409 and "already has feedback" in r.json()["error"]["message"]
    finally:
        log.close()
    files = (tmp_path / "log").glob("feedback-*.jsonl")
    lines = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    assert [(x["request_id"], x["score"]) for x in lines] == [(rid, 1.0)]  # the repeat was not written again


@pytest.mark.parametrize("text, what", [("x\ud800y", "lone UTF-16 surrogate (U+D800) at position 1"),
                                        ("a\x00b", "NUL character (U+0000) at position 1")])
def test_text_that_cannot_be_kept_as_sent_is_refused_not_crashed_on(svc, upstream_map, fake, text, what):
    with gateway(svc, upstream_map) as client:
        body = json.dumps({"prompts": ["fine", text]}).encode()  # json.dumps escapes the surrogate: \ud800
        r = client.post("/v1/route", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and f"prompts[1] holds a {what}" in r.json()["error"]["message"], r.text
        r = client.post("/v1/chat/completions", content=json.dumps({"model": "router", "messages": [
            {"role": "user", "content": text}]}).encode(), headers={"content-type": "application/json"})
        assert r.status_code == 400 and f"messages[0].content holds a {what}" in r.json()["error"]["message"]
        assert client.post("/v1/route", json={"prompts": ["still serving"]}).status_code == 200


def test_the_start_up_line_names_the_router_and_its_version(nq_export):
    from router.serve.reload import ReloadingRouter

    holder = ReloadingRouter(nq_export, poll_seconds=60)
    line = GatewayServer(app=None, config=ServeConfig(port=0, reload_seconds=0), holder=holder).banner()
    assert line.startswith(f"serving {nq_export} version {holder.current().version} (knn head over 6 models")
    assert "no API key" in line
    keyed = GatewayServer(app=None, config=ServeConfig(reload_seconds=0, api_key=KEY), holder=holder).banner()
    assert "/v1/ needs the API key" in keyed and KEY not in keyed
