"""The gateway forwards a chat request to the routed model's upstream (its id, its key, the body as sent),
streams bytes through unchanged, and falls back down the ranking on a 5xx, a timeout or a bad response,
naming every model tried when all fail. Fake upstreams and gateways: tests/serve/conftest.py.
"""

from __future__ import annotations

import json
import time

from router.serve.decision_log import DecisionLog, DecisionLogConfig
from tests.serve.conftest import PROMPTS, QUESTION, SLOW_S, chat, free_port, gateway, slug, sse_chunks


def ranking(svc, text: str, **point) -> list[str]:
    idx = svc.ranked(svc.scores([text]), svc.operating_point(**point))[0]
    return [svc.models[i] for i in idx]


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
