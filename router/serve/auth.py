"""The gateway's API key: ``router serve --api-key`` (or ``ROUTER_API_KEY``) makes every ``/v1/`` endpoint
ask for ``Authorization: Bearer <key>`` (what OpenAI clients send as their ``api_key``). ``/healthz`` and
``/metrics`` stay open for probes and scrapers. The key is compared in constant time."""

from __future__ import annotations

import hmac

from router.serve.protocol import ApiError

PROTECTED = "/v1/"


class RequireKey:
    """ASGI middleware: a request to a ``/v1/`` path without the key gets 401 in OpenAI's error shape."""

    def __init__(self, app, key: str) -> None:
        if not key:
            raise ValueError("api_key: expected a non-empty string")
        self.app, self._key = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED) and not self._allowed(scope):
            response = ApiError(401, "missing or wrong API key: send the header Authorization: Bearer <key>",
                                type="authentication_error").response({"www-authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        given = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        return hmac.compare_digest(given, self._key)
