"""Prometheus metrics of the gateway, in a registry of its own per app.

Never the process-wide default registry: two apps in one process (tests, a reload) would collide on
metric names, and a library must not register collectors behind its host's back.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Routing is an embedding plus a numpy head (milliseconds); a whole request includes an LLM call (seconds).
_ROUTING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    """The gateway's counters and histograms; ``render()`` gives the ``/metrics`` body and content type."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("router_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.routed = Counter("router_routed", "Requests routed, by chosen model", ["model"], registry=r)
        self.routing_seconds = Histogram("router_routing_seconds", "Routing time: embedding + decision",
                                         buckets=_ROUTING_BUCKETS, registry=r)
        self.request_seconds = Histogram("router_request_seconds", "Whole request time, by endpoint",
                                         ["endpoint"], buckets=_REQUEST_BUCKETS, registry=r)
        self.upstream_errors = Counter("router_upstream_errors", "Failed upstream calls, by model and kind",
                                       ["model", "kind"], registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware counting every HTTP request and timing it to its last body byte.

    Pure ASGI (not BaseHTTPMiddleware) so streamed responses pass through untouched; the endpoint
    label is the matched path among ``endpoints`` or "other", which keeps label cardinality fixed.
    """

    def __init__(self, app, metrics: GatewayMetrics, endpoints: frozenset[str]) -> None:
        self.app, self.metrics, self.endpoints = app, metrics, endpoints

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in self.endpoints else "other"
        status = 500  # if the app raises before it starts a response, the server answers 500
        start = time.perf_counter()

        async def send_wrapper(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.request_seconds.labels(endpoint=endpoint).observe(time.perf_counter() - start)
