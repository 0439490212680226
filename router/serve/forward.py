"""Calling the chosen model's upstream, falling back to the next-ranked ones while nothing is sent yet.

A candidate fails on a connect error, a timeout, a transport error, a 5xx or 429 status, or an unusable
body (non-JSON, or a stream that breaks before its first byte). Other 4xx answers are the client's
problem and are passed back as they are. Once a byte has gone to the client there is no fallback: a
stream that breaks later is cut, so the client sees an incomplete response rather than a spliced one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import httpx
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from router.serve.prometheus import GatewayMetrics
from router.serve.protocol import ApiError
from router.serve.upstreams import Upstream, UpstreamMap

log = logging.getLogger(__name__)
_ERROR_EXCERPT = 200  # characters of a failing upstream's body quoted back in the 502


@dataclass(frozen=True)
class Attempt:
    model: str
    kind: str  # connect | timeout | transport | http_<status> | bad_response
    detail: str


class UpstreamsFailed(ApiError):
    """Every candidate failed: a 502 naming each model tried and what went wrong."""

    def __init__(self, attempts: Sequence[Attempt]) -> None:
        tried = "; ".join(f"{a.model}: {a.detail}" for a in attempts)
        super().__init__(502, f"every upstream failed ({tried})", type="upstream_error",
                         attempts=[a.__dict__ for a in attempts])
        self.attempts = list(attempts)


@dataclass(frozen=True)
class Served:
    """The answer of the upstream that served the request, ready to send."""

    model: str  # the router's name of the model that answered
    response: Response
    attempts: list[Attempt]  # the failures before it


async def forward_chat(client: httpx.AsyncClient, upstreams: UpstreamMap, keys: Mapping[str, str],
                       candidates: Sequence[str], body: dict, stream: bool, metrics: GatewayMetrics,
                       headers: Mapping[str, str]) -> Served:
    """POST ``body`` to each candidate's ``/chat/completions`` in order until one answers.

    ``candidates``: router model names with an upstream, best first (the fallbacks already cut to
    ``retries``). ``headers``: added to the response (request id, routing headers).
    Raises ``UpstreamsFailed`` when none answers.
    """
    attempts: list[Attempt] = []
    for name in candidates:
        up = upstreams.models[name]
        try:
            response = await _call(client, up, upstreams.timeout(name), keys.get(name), body, stream,
                                   {**headers, "x-router-model": name}, metrics)
        except _Failed as exc:
            attempt = Attempt(name, exc.kind, exc.detail)
        except httpx.TimeoutException as exc:
            attempt = Attempt(name, "timeout", f"timeout after {upstreams.timeout(name):g}s ({type(exc).__name__})")
        except httpx.ConnectError as exc:
            attempt = Attempt(name, "connect", f"cannot connect to {up.base_url} ({exc})")
        except httpx.TransportError as exc:
            attempt = Attempt(name, "transport", f"{type(exc).__name__}: {exc}")
        else:
            return Served(name, response, attempts)
        metrics.upstream_errors.labels(model=name, kind=attempt.kind).inc()
        log.warning("upstream %s failed: %s", name, attempt.detail)
        attempts.append(attempt)
    raise UpstreamsFailed(attempts)


class _Failed(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


async def _call(client: httpx.AsyncClient, up: Upstream, timeout: float, key: str | None, body: dict,
                stream: bool, headers: dict[str, str], metrics: GatewayMetrics) -> Response:
    out_headers = {"content-type": "application/json", "accept-encoding": "identity"}  # raw bytes = sent bytes
    if key is not None:
        out_headers["authorization"] = f"Bearer {key}"
    request = client.build_request("POST", up.chat_url, content=json.dumps({**body, "model": up.model}).encode(),
                                   headers=out_headers, timeout=httpx.Timeout(timeout))
    upstream = await client.send(request, stream=True)
    try:
        if upstream.status_code >= 500 or upstream.status_code == 429:
            text = (await upstream.aread()).decode("utf-8", "replace")[:_ERROR_EXCERPT]
            raise _Failed(f"http_{upstream.status_code}", f"HTTP {upstream.status_code} {text!r}")
        if not stream or upstream.status_code >= 400:
            return _whole(await upstream.aread(), upstream, up.name, headers)
        chunks = upstream.aiter_raw()
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            raise _Failed("bad_response", "the stream ended before its first byte") from None
    except BaseException:
        await upstream.aclose()
        raise
    return StreamingResponse(_relay(first, chunks, upstream, up.name, metrics), status_code=upstream.status_code,
                             headers={"cache-control": "no-cache", **headers},
                             media_type=upstream.headers.get("content-type", "text/event-stream"),
                             background=BackgroundTask(upstream.aclose))


def _whole(content: bytes, upstream: httpx.Response, name: str, headers: dict[str, str]) -> Response:
    """A complete upstream answer: JSON with ``model`` set to the router's name for it; a 4xx as it came."""
    if upstream.status_code >= 400:  # the client's error (bad parameter, context too long): theirs to see
        return Response(content, status_code=upstream.status_code, headers=headers,
                        media_type=upstream.headers.get("content-type"))
    try:
        data = json.loads(content)
    except ValueError:
        excerpt = content[:_ERROR_EXCERPT]
        raise _Failed("bad_response", f"HTTP {upstream.status_code} but not JSON: {excerpt!r}") from None
    if isinstance(data, dict):
        data["model"] = name
    return JSONResponse(data, status_code=upstream.status_code, headers=headers)


async def _relay(first: bytes, rest: AsyncIterator[bytes], upstream: httpx.Response, name: str,
                 metrics: GatewayMetrics) -> AsyncIterator[bytes]:
    """The upstream's bytes unchanged. A break mid-stream propagates, which cuts the client's connection."""
    try:
        yield first
        async for chunk in rest:
            yield chunk
    except httpx.HTTPError as exc:
        metrics.upstream_errors.labels(model=name, kind="stream_broken").inc()
        log.warning("upstream %s broke mid-stream: %s", name, exc)
        raise
    finally:  # also on a client disconnect or an error (the background task runs only after success)
        await upstream.aclose()
