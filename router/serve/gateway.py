"""The OpenAI-compatible gateway of ``router serve``: a Starlette app in front of the upstream models.

Endpoints: ``POST /v1/chat/completions`` (``model: "router"`` or ``"router:lam=0.5"`` / ``"router:budget=0.002"``
/ ``"router:share=<model>:0.3"`` is routed, a model of the upstream map passes through), ``POST /v1/route``
(prompts -> model names), ``POST /v1/feedback``, ``GET /v1/models``, ``GET /healthz``, ``GET /metrics``.
The router comes from a holder whose ``current()`` gives a ``LoadedRouter`` (``.service``, ``.version``),
fetched once per request so a reload never changes the router under a request. Embedding, prediction and
the pick (``explore``: the router's, or drawn with a logged propensity) run in a worker thread: the event
loop only parses, forwards and relays bytes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.policy.exploration import Exploration
from router.policy.operating_point import Setting
from router.serve.decision_log import PROMPT_MODES, DecisionLogConfig
from router.serve.explore import Explorer, check_new, parse_new
from router.serve.forward import UpstreamsFailed, forward_chat
from router.serve.prometheus import GatewayMetrics, MetricsMiddleware
from router.serve.protocol import (ROUTER_MODEL, ApiError, check_chat, is_number, parse_feedback,
                                   parse_route, parse_router_model, read_json, request_id, routing_text)
from router.serve.reload import LoadedRouter
from router.serve.auth import RequireKey
from router.serve.outcomes import ConflictingFeedback, UnknownRequest
from router.serve.upstreams import UpstreamMap, api_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``router serve`` (the one place of their defaults; the CLI passes only what is given)."""

    host: str = "127.0.0.1"  # loopback: exposing the gateway beyond this machine is a deliberate choice
    port: int = 8000
    upstreams: Path | None = None  # YAML upstream map; without one only /v1/route routes
    decision_log: Path | None = None  # folder of the decision log; None: no log, /v1/feedback answers 404
    log_prompts: str = DecisionLogConfig.prompts  # hash | text | none: what the decision log keeps of a prompt
    max_body_bytes: int = 1 << 20  # larger request bodies are refused with 413
    reload_seconds: float = 5.0  # poll the router's source this often for a new export; 0: never reload
    shutdown_grace_s: float = 10.0  # on SIGTERM, open requests (streams) get this long to finish
    threads: int | None = None  # CPU threads of one embedding; None: every core (1: most requests/s)
    exploration: Exploration = Exploration()  # off: the router's pick; epsilon:0.05 / softmax:0.1 draw it
    exploration_seed: int | None = None  # of the exploration draws; None: fresh entropy
    explore_new: dict = field(default_factory=dict)  # model -> share of chat traffic while the router lacks it
    api_key: str | None = field(default=None, repr=False)  # /v1/ endpoints need "Bearer <key>"; None: open

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

        need(isinstance(self.host, str) and bool(self.host), "host", "a host name or address")
        need(_is_int(self.port) and 0 <= self.port <= 65535, "port", "a port number in [0, 65535]")
        need(self.log_prompts in PROMPT_MODES, "log_prompts", " | ".join(PROMPT_MODES))
        need(_is_int(self.max_body_bytes) and self.max_body_bytes > 0, "max_body_bytes", "an integer > 0")
        need(is_number(self.reload_seconds) and self.reload_seconds >= 0, "reload_seconds", "seconds >= 0")
        need(is_number(self.shutdown_grace_s) and self.shutdown_grace_s >= 0, "shutdown_grace_s", "seconds >= 0")
        need(self.threads is None or _is_int(self.threads) and self.threads >= 1, "threads", "an integer >= 1")
        need(self.exploration_seed is None or _is_int(self.exploration_seed) and self.exploration_seed >= 0,
             "exploration_seed", "an integer >= 0 or None")
        need(self.api_key is None or isinstance(self.api_key, str) and bool(self.api_key.strip()), "api_key",
             "a non-empty string or None")
        object.__setattr__(self, "exploration", Exploration.parse(self.exploration))  # also "epsilon:0.05"
        object.__setattr__(self, "explore_new", parse_new(self.explore_new) if isinstance(self.explore_new, str)
                           else check_new(dict(self.explore_new)))  # also "name:0.05"
        for name in ("upstreams", "decision_log"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))


def _reachable(upstreams: UpstreamMap, new: Any, current: Any) -> None:
    """Refuse a reloaded router that routes to a model with no upstream, unless the router it replaces did
    too (then the start-up warning already said so): requests routed there would fail or fall back."""
    unreachable = set(new.models) - set(upstreams.models) - set(current.models)
    if unreachable:
        raise ValueError(f"no upstream in {upstreams.source} for {', '.join(sorted(unreachable))} (the new "
                         f"router's models: {', '.join(new.models)})")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class RouterHolder(Protocol):
    def current(self) -> LoadedRouter: ...


class FixedRouter:
    """A holder that always serves one router (no reloading): for embedding the gateway and for tests."""

    def __init__(self, service: Any, version: str = "fixed") -> None:
        self._loaded = LoadedRouter(service=service, version=version, path="")

    def current(self) -> LoadedRouter:
        return self._loaded


_PATHS = ("/v1/chat/completions", "/v1/route", "/v1/feedback", "/v1/models", "/healthz", "/metrics")


def create_app(holder: RouterHolder, *, upstreams: UpstreamMap | None = None, decision_log: Any = None,
               config: ServeConfig | None = None, transport: httpx.AsyncBaseTransport | None = None,
               environ: dict[str, str] | None = None) -> Starlette:
    """The gateway app. Raises ValueError now (at startup) for an API key variable that is unset or an
    upstream map that reaches none of the router's models.

    ``decision_log``: a ``DecisionLog`` (or None); the caller owns it and closes it after the server stops.
    ``transport``: for the upstream client (tests); ``environ``: where API keys are read (default os.environ).
    """
    config = config or ServeConfig()
    upstreams = upstreams or UpstreamMap()
    keys = api_keys(upstreams, environ)
    if upstreams.models:
        routed = set(holder.current().service.models)
        if not routed & set(upstreams.models):
            raise ValueError(f"{upstreams.source}: no upstream for any of the router's models "
                             f"{sorted(routed)}; models configured: {sorted(upstreams.models)}")
        if routed - set(upstreams.models):
            log.warning("no upstream for %s: requests routed there go to the next-ranked model",
                        ", ".join(sorted(routed - set(upstreams.models))))
        if hasattr(holder, "accept"):
            holder.accept = functools.partial(_reachable, upstreams)
    unserved = set(config.explore_new) - set(upstreams.models)
    if unserved:
        raise ValueError(f"explore_new: no upstream for {', '.join(sorted(unserved))}"
                         + (f" in {upstreams.source}" if upstreams.models else " (start with --upstreams FILE)"))
    metrics = GatewayMetrics()
    gw = _Gateway(holder, upstreams, keys, decision_log, config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient(transport=transport, timeout=upstreams.timeout_s) as client:
            gw.client = client
            yield
        gw.client = None

    routes = [Route("/v1/chat/completions", gw.chat, methods=["POST"]),
              Route("/v1/route", gw.route, methods=["POST"]),
              Route("/v1/feedback", gw.feedback, methods=["POST"]),
              Route("/v1/models", gw.list_models, methods=["GET"]),
              Route("/healthz", gw.healthz, methods=["GET"]),
              Route("/metrics", gw.metrics_page, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error})
    if config.api_key is not None:
        app.add_middleware(RequireKey, key=config.api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=frozenset(_PATHS))
    app.state.gateway = gw
    return app


async def _api_error(request: Request, exc: ApiError) -> Response:
    rid = getattr(request.state, "request_id", None)
    return exc.response({"x-request-id": rid} if rid else None)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = f"no endpoint {request.url.path}" if exc.status_code == 404 else exc.detail
    return ApiError(exc.status_code, message).response(exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s", request.url.path, exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", type="server_error").response()


def _new_id() -> str:
    return uuid.uuid4().hex


class _Gateway:
    """The endpoints and what they share (router holder, upstream client, decision log, metrics)."""

    def __init__(self, holder, upstreams: UpstreamMap, keys: dict[str, str], decision_log, config: ServeConfig,
                 metrics: GatewayMetrics) -> None:
        self.holder, self.upstreams, self.keys = holder, upstreams, keys
        self.decision_log, self.config, self.metrics = decision_log, config, metrics
        self.client: httpx.AsyncClient | None = None  # opened by the app's lifespan
        self.explorer = Explorer(config.exploration, config.exploration_seed, config.explore_new)

    async def _rank_models(self, loaded: LoadedRouter, prompts: list[str], tasks, setting: Setting):
        """(lam, scores, order, propensities, routing ms) for prompts at the requested setting;
        ``order``: model indices per prompt, the served one first, then the fallbacks (``Explorer.draw``)."""
        try:  # cheap, and its ValueErrors are the caller's (unknown share model, no budget curve)
            point = loaded.service.operating_point(setting.lam, setting.budget, setting.share, setting.margin)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        start = time.perf_counter()
        scores, order, propensities = await run_in_threadpool(self.explorer.draw, loaded.service, prompts,
                                                              tasks, point)
        seconds = time.perf_counter() - start
        self.metrics.routing_seconds.observe(seconds)
        return point.lam, scores, order, propensities, seconds * 1e3

    def _record(self, rid: str, prompt: str, task, model: str, scores, names, lam: float, setting: Setting,
                version: str, ms: float, propensity: float | None, policy: str | None = None) -> None:
        if self.decision_log is None:
            return
        try:  # the log must never fail a request that was answered
            self.decision_log.record(request_id=rid, prompt=prompt, task=task, model=model,
                                     scores={n: float(s) for n, s in zip(names, scores)}, lam=lam,
                                     budget=setting.budget, share=setting.share, router_version=version,
                                     latency_ms=ms, propensity=propensity,
                                     policy=policy or self.explorer.policy)
        except Exception:
            log.exception("decision log: record failed")

    # ------------------------------------------------------------------ endpoints

    async def chat(self, request: Request) -> Response:
        rid = request.state.request_id = request_id(request, _new_id)
        body = await read_json(request, self.config.max_body_bytes)
        model, stream = check_chat(body)
        setting = parse_router_model(model)
        if setting is None:
            if model not in self.upstreams.models:
                raise ApiError(404, f"unknown model {model!r}; valid: {', '.join(self._model_names())}",
                               param="model", type="invalid_request_error")
            headers = {"x-request-id": rid, "x-router-decision": "passthrough"}
            served = await self._forward([model], body, stream, headers)
            return served.response
        if not self.upstreams.models:
            raise ApiError(503, "no upstreams configured: start router serve with --upstreams FILE "
                                "(POST /v1/route routes without them)", type="server_error")
        text = routing_text(body["messages"], self.upstreams.route_on)
        loaded = self.holder.current()
        lam, scores, ranked, propensities, ms = await self._rank_models(loaded, [text], None, setting)
        names = loaded.service.models
        order, drawn = self.explorer.with_new([names[i] for i in ranked[0]], float(propensities[0]))
        chosen = order[0]
        self.metrics.routed.labels(model=chosen).inc()
        candidates = [m for m in order if m in self.upstreams.models][:self.upstreams.retries + 1]
        if not candidates:  # possible after a reload to a router with other model names
            raise ApiError(502, f"none of the router's models {names} has an upstream in {self.upstreams.source}",
                           type="upstream_error")
        headers = {"x-request-id": rid, "x-router-decision": "routed", "x-router-version": loaded.version}
        try:
            served = await self._forward(candidates, body, stream, headers)
        except UpstreamsFailed:
            self._record(rid, text, None, chosen, scores[0], names, lam, setting, loaded.version, ms, drawn,
                         self.explorer.chat_policy)
            raise
        # A fallback's outcome is not the policy's draw: its propensity is unknown.
        propensity = drawn if served.model == chosen else None
        if served.model != chosen:
            served.response.headers["x-router-fallback-from"] = chosen
        elif self.explorer.on or self.explorer.new:
            served.response.headers["x-router-propensity"] = repr(drawn)
        self._record(rid, text, None, served.model, scores[0], names, lam, setting, loaded.version, ms, propensity,
                     self.explorer.chat_policy)
        return served.response

    async def _forward(self, candidates, body, stream, headers):
        if self.client is None:
            raise ApiError(503, "the gateway is not started (its lifespan has not run)", type="server_error")
        return await forward_chat(self.client, self.upstreams, self.keys, candidates, body, stream,
                                  self.metrics, headers)

    async def route(self, request: Request) -> Response:
        rid = request.state.request_id = request_id(request, _new_id)
        req = parse_route(await read_json(request, self.config.max_body_bytes))
        loaded = self.holder.current()
        lam, scores, ranked, propensities, ms = await self._rank_models(loaded, req.prompts, req.tasks, req.setting)
        names = loaded.service.models
        chosen = [names[i] for i in ranked[:, 0]]
        ids = [rid] if len(chosen) == 1 else [f"{rid}-{i}" for i in range(len(chosen))]
        per_prompt_ms = ms / len(chosen)
        for i, model in enumerate(chosen):
            self.metrics.routed.labels(model=model).inc()
            task = None if req.tasks is None else req.tasks[i]
            self._record(ids[i], req.prompts[i], task, model, scores[i], names, lam, req.setting, loaded.version,
                         per_prompt_ms, float(propensities[i]))
        out = {"models": chosen, "request_ids": ids, "router_version": loaded.version}
        headers = {"x-request-id": rid}
        if self.explorer.on:
            out["propensities"] = propensities.tolist()
            if len(chosen) == 1:
                headers["x-router-propensity"] = repr(float(propensities[0]))
        if req.return_scores:
            out["scores"] = [{n: float(s) for n, s in zip(names, row)} for row in scores]
        return JSONResponse(out, headers=headers)

    async def feedback(self, request: Request) -> Response:
        if self.decision_log is None:
            raise ApiError(404, "decision log not enabled: start router serve with --decision-log DIR")
        got = parse_feedback(await read_json(request, self.config.max_body_bytes))
        try:
            self.decision_log.feedback(request_id=got.request_id, score=got.score, cost=got.cost)
        except UnknownRequest as exc:
            raise ApiError(404, f"{exc}: feedback needs the x-request-id of a routed request", param="request_id",
                           type="invalid_request_error") from None
        except ConflictingFeedback as exc:
            raise ApiError(409, str(exc), param="request_id", type="invalid_request_error") from None
        return Response(status_code=204)

    def _model_names(self) -> list[str]:
        return [ROUTER_MODEL, *self.upstreams.models]

    async def list_models(self, request: Request) -> Response:
        data = [{"id": name, "object": "model", "created": 0,
                 "owned_by": "learned-router" if name == ROUTER_MODEL else "upstream"}
                for name in self._model_names()]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(self, request: Request) -> Response:
        loaded = self.holder.current()
        return JSONResponse({"status": "ok", "router_version": loaded.version, "models": loaded.service.models,
                             "upstreams": list(self.upstreams.models)})

    async def metrics_page(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, headers={"content-type": content_type})
