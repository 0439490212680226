"""Request parsing for the gateway: bounded JSON bodies, OpenAI-shaped errors, the ``router:...`` model
names and the text a chat request is routed on. Pure functions but ``read_json``; no router, no network.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from router.policy.operating_point import Setting

ROUTER_MODEL = "router"  # the model name clients send to be routed
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # a client's x-request-id is kept only if it is tame


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, **extra) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.extra = status, message, type, param, extra

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"message": self.message, "type": self.type, "param": self.param, "code": self.status, **self.extra}
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


def request_id(request: Request, make) -> str:
    """The client's ``x-request-id`` when it is a short plain token, else a fresh ``make()``."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else make()


async def read_json(request: Request, max_bytes: int) -> dict:
    """The body as a JSON object, refusing more than ``max_bytes`` both by content-length and while reading
    (a missing or lying content-length cannot get a larger body into memory)."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise ApiError(400, f"invalid content-length header {declared!r}")
    if declared is not None and int(declared) > max_bytes:
        raise ApiError(413, f"request body over the limit of {max_bytes} bytes (content-length: {declared})")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise ApiError(413, f"request body over the limit of {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client disconnected while sending the body") from None
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(body).__name__}")
    return body


# ------------------------------------------------------------------ settings (lam / budget / share / margin)


def _number(value: object, param: str, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        bound = f"in [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise ApiError(400, f"{param} must be a number {bound}, got {value!r}", param=param)
    return float(value)


def parse_setting(lam: object = None, budget: object = None, share: object = None, margin: object = None) -> Setting:
    """Type-check a call's lam / budget / share / margin (the router checks the rest: unknown models, curves)."""
    given = [name for name, v in (("lam", lam), ("budget", budget), ("share", share), ("margin", margin))
             if v is not None]
    if len(given) > 1:
        raise ApiError(400, f"give at most one of lam, budget, share, margin; got {' and '.join(given)}",
                       param=given[1])
    if share is not None:
        if not isinstance(share, dict) or len(share) != 1:
            raise ApiError(400, f"share must be one {{model: fraction}} pair, got {share!r}", param="share")
        share = {str(k): _number(v, "share", 0.0, 1.0) for k, v in share.items()}
    lam, budget = (None if v is None else _number(v, name) for name, v in (("lam", lam), ("budget", budget)))
    margin = None if margin is None else _number(margin, "margin", 0.0, 0.999999)
    try:
        return Setting(lam=lam, budget=budget, share=share, margin=margin)
    except ValueError as exc:  # what JSON can still hold past the checks above: Infinity
        raise ApiError(400, str(exc), param=given[0]) from None


def parse_router_model(model: str) -> Setting | None:
    """``router`` -> the default setting; ``router:lam=0.5``, ``router:budget=0.002``, ``router:margin=0.01``,
    ``router:share=<model>:0.3`` -> that setting; any other name -> None (not a routing request)."""
    if model == ROUTER_MODEL:
        return Setting()
    if not model.startswith(ROUTER_MODEL + ":"):
        return None
    key, sep, value = model[len(ROUTER_MODEL) + 1:].partition("=")
    example = "router:lam=0.5, router:budget=0.002, router:margin=0.01 or router:share=<model>:0.3"
    if not sep or key not in ("lam", "budget", "share", "margin"):
        raise ApiError(400, f"model {model!r}: expected {example}", param="model")
    if key == "share":  # model names may hold ':' themselves; the fraction follows the last one
        name, sep, fraction = value.rpartition(":")
        if not sep or not name:
            raise ApiError(400, f"model {model!r}: expected router:share=<model>:<fraction>", param="model")
        return parse_setting(share={name: _float(fraction, model)})
    return parse_setting(**{key: _float(value, model)})


def _float(text: str, model: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"model {model!r}: {text!r} is not a number", param="model") from None
    if not math.isfinite(value):
        raise ApiError(400, f"model {model!r}: {text!r} is not a finite number", param="model")
    return value


# ------------------------------------------------------------------ /v1/route


@dataclass(frozen=True)
class RouteRequest:
    prompts: list[str]
    setting: Setting
    tasks: list[str | None] | None = None
    return_scores: bool = False


ROUTE_KEYS = ("prompts", "lam", "budget", "share", "margin", "tasks", "return_scores")


def _known_keys(body: dict, keys: tuple[str, ...]) -> None:
    """Refuse a body with a key outside ``keys``, naming it."""
    unknown = sorted(set(body) - set(keys))
    if unknown:
        raise ApiError(400, f"unknown parameter {unknown[0]!r}; valid: {', '.join(keys)}", param=unknown[0])


def parse_route(body: dict) -> RouteRequest:
    """Validate a ``POST /v1/route`` body; unknown keys are refused by name."""
    _known_keys(body, ROUTE_KEYS)
    prompts = body.get("prompts")
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ApiError(400, "prompts must be a non-empty list of strings", param="prompts")
    for i, prompt in enumerate(prompts):
        check_text(prompt, f"prompts[{i}]", "prompts")
    tasks = body.get("tasks")
    if tasks is not None and (not isinstance(tasks, list) or len(tasks) != len(prompts)
                              or not all(t is None or isinstance(t, str) for t in tasks)):
        raise ApiError(400, f"tasks must be a list of {len(prompts)} strings or nulls, one per prompt", param="tasks")
    for i, task in enumerate(tasks or ()):
        if task is not None:
            check_text(task, f"tasks[{i}]", "tasks")
    return_scores = body.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise ApiError(400, f"return_scores must be true or false, got {return_scores!r}", param="return_scores")
    setting = parse_setting(body.get("lam"), body.get("budget"), body.get("share"), body.get("margin"))
    return RouteRequest(prompts=prompts, setting=setting, tasks=tasks, return_scores=return_scores)


# ------------------------------------------------------------------ /v1/feedback


@dataclass(frozen=True)
class FeedbackRequest:
    request_id: str
    score: float
    cost: float | None = None


FEEDBACK_KEYS = ("request_id", "score", "cost")


def parse_feedback(body: dict) -> FeedbackRequest:
    """Validate a ``POST /v1/feedback`` body: the answer's request id, its score, optionally its $ cost."""
    _known_keys(body, FEEDBACK_KEYS)
    rid, score, cost = body.get("request_id"), body.get("score"), body.get("cost")
    if not isinstance(rid, str) or not rid:
        raise ApiError(400, "request_id must be a non-empty string (the x-request-id of the answer)",
                       param="request_id")
    if not is_number(score):
        raise ApiError(400, f"score must be a finite number, got {score!r}", param="score")
    if cost is not None and not (is_number(cost) and cost >= 0):
        raise ApiError(400, f"cost must be a number >= 0 ($), got {cost!r}", param="cost")
    return FeedbackRequest(request_id=rid, score=float(score), cost=None if cost is None else float(cost))


def check_text(text: str, where: str, param: str) -> None:
    """Refuse text the router cannot keep as sent: a lone UTF-16 surrogate (``\\ud800`` in JSON: not Unicode,
    and the logs' reader would read it as NUL) or a NUL character (refused in logs too, by row)."""
    if "\x00" in text:
        raise ApiError(400, f"{where} holds a NUL character (U+0000) at position {text.index(chr(0))}: not text "
                            "a prompt can hold", param=param)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{where} holds a lone UTF-16 surrogate (U+{ord(text[exc.start]):04X}) at position "
                            f"{exc.start}: not valid Unicode text", param=param) from None


def is_number(value: object) -> bool:
    """A finite int or float, not a bool (JSON's true would pass ``isinstance(value, int)``)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------ /v1/chat/completions


def check_chat(body: dict) -> tuple[str, bool]:
    """(model, stream) of a chat request, after checking the fields the gateway itself reads."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model must be a non-empty string, e.g. \"router\"", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}", param="stream")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a string role", param="messages")
    return model, stream


def routing_text(messages: list[dict], route_on: str) -> str:
    """The text the router scores: the last user message, or (``conversation``) every message's text in order.

    Content is a string or a list of parts, whose ``{"type": "text", "text": ...}`` parts are joined
    (images and other parts carry no text to route on).
    """
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise ApiError(400, "messages has no user message to route on", param="messages")
    chosen = range(len(messages)) if route_on == "conversation" else [users[-1]]
    texts = [(i, _text(messages[i], i)) for i in chosen]
    for i, t in texts:
        check_text(t, f"messages[{i}].content", "messages")
    return "\n\n".join(t for _, t in texts if t)


def _text(message: dict, i: int) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", param="messages")
    texts = []
    for part in content:
        if not isinstance(part, dict):
            raise ApiError(400, f"messages[{i}].content parts must be objects", param="messages")
        if part.get("type") == "text":
            if not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{i}].content: a text part needs a string text", param="messages")
            texts.append(part["text"])
    return "\n".join(texts)
