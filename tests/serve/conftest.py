"""Fixtures of the serving tests: the OpenAI-compatible gateway (`router serve`) against fake upstreams on real
loopback sockets.

A fake upstream server answers at ``/<slug>/v1/chat/completions`` for every model of the NQ router, each
slug switchable to fail (500, 429, slow, ...). Gateways run under uvicorn in a thread with a real router
(the ``nq_export`` kNN head); every server is stopped in a ``finally``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import replace

import httpx
import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import router
from router.policy.curve import OperatingCurve
from router.policy.share import shortfall_quantiles
from router.serve.gateway import FixedRouter, ServeConfig, create_app
from router.serve.service import RouterService
from router.serve.upstreams import parse_upstreams

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
    """The NQ router, with a budget curve and share quantiles so every operating point can be asked for."""
    base = router.load(nq_export)
    shortfalls = shortfall_quantiles(base.scores(PROMPTS), np.asarray(base.meta.model_costs), base.meta.default_lam)
    curve = OperatingCurve(lam=(0.0, 100.0, 1000.0, 1e4), cost=(1e-4, 5e-5, 2e-5, 1.2e-5))
    calibration = replace(base.calibration, curve=curve, shortfalls=shortfalls, shortfalls_lam=base.meta.default_lam)
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


def chat(client, model="router", text=QUESTION, headers=None, **extra):
    return client.post("/v1/chat/completions", headers=headers, json={"model": model, "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": text}], **extra})
