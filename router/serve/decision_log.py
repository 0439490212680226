"""The decision log of ``router serve``: one JSON line per routed request, and outcome feedback.

``DecisionLog.record`` only enqueues (a request never waits for the disk); one background thread
serialises and writes the lines. Files rotate by size and age::

    <dir>/decisions-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl   one line per routing decision
    <dir>/feedback-<UTC yyyymmddTHHMMSS>-<pid>-<seq>.jsonl    outcomes sent through the gateway
    <dir>/feedback-cli-<UTC yyyymmdd>.jsonl                    outcomes from ``router feedback``

Every line is a complete JSON object ending in "\\n"; only the last line of a file being written may
be incomplete, and the reader (``router.data.readers.decision_logs``) skips it. ``router train <dir>`` joins the
decisions with their feedback (see there). Decision fields: request_id, timestamp (ISO 8601 UTC),
prompt (text only with ``prompts="text"``), prompt_sha256 (null with ``prompts="none"``), task,
model, scores, lam, budget, share, router_version, latency_ms, propensity (the probability with which
the serving policy drew the model; null when a fallback answered), policy (the exploration policy:
``off``, ``epsilon:0.05``, ``softmax:0.1``). Feedback fields: request_id, timestamp, score, cost.
Standard library only (and the file names from ``router.data.schema``, plain Python): serving imports it.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from router.data.schema import DECISIONS_PREFIX, FEEDBACK_PREFIX, LOG_SUFFIX
from router.serve.outcomes import Outcomes

log = logging.getLogger(__name__)

PROMPT_MODES = ("hash", "text", "none")
_FLUSH_S = 1.0  # longest a written line waits in the file buffer while records keep coming
_STOP = object()  # queue sentinel: drain what is before it, then exit


@dataclass(frozen=True)
class DecisionLogConfig:
    """Where and how the gateway logs its decisions (the one place of these defaults)."""

    directory: Path
    prompts: Literal["hash", "text", "none"] = "hash"  # "text" is needed to train on the logs
    max_bytes: int = 64 * 1024 * 1024  # rotate once the current file is larger
    max_age_s: float = 3600.0  # rotate once the current file is older
    queue_size: int = 100_000  # records waiting for the writer; beyond it they are dropped (counted)
    remember: int = 100_000  # feedback is taken for the latest this many decisions (router feedback: any)

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", Path(self.directory))
        if self.prompts not in PROMPT_MODES:
            raise ValueError(f"prompts must be one of {', '.join(PROMPT_MODES)}, got {self.prompts!r}")
        for name in ("max_bytes", "max_age_s", "queue_size", "remember"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


def utc_iso(when: datetime | None = None) -> str:
    """``when`` (default now; naive means UTC) as ISO 8601 UTC with a ``Z``: 2025-06-01T12:00:00.000000Z."""
    when = datetime.now(timezone.utc) if when is None else when
    when = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _finite(value) -> float | None:
    """A float for JSON, None for a missing or non-finite one (NaN is not JSON)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _line(record: dict) -> bytes:
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode()


class _Rotating:
    """One open ``<prefix><time>-<pid>-<seq>.jsonl`` file, replaced when too big or too old."""

    def __init__(self, directory: Path, prefix: str, max_bytes: int, max_age_s: float) -> None:
        self.directory, self.prefix, self.max_bytes, self.max_age_s = directory, prefix, max_bytes, max_age_s
        self.file = None
        self.opened = 0.0
        self.size = 0
        self.seq = 0
        self.rotations = 0

    def write(self, data: bytes) -> None:
        if self.file is not None and (self.size > self.max_bytes or time.monotonic() - self.opened > self.max_age_s):
            self.close()
            self.rotations += 1
        if self.file is None:
            self._open()
        self.file.write(data)  # one whole line per call
        self.size += len(data)

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        while True:  # "x": never append to another writer's file (two logs in one process and second)
            self.seq += 1
            # Zero-padded: a burst of rotations within one second still lists in order.
            path = self.directory / f"{self.prefix}{stamp}-{os.getpid()}-{self.seq:04d}{LOG_SUFFIX}"
            try:
                self.file = open(path, "xb")
                break
            except FileExistsError:
                continue
        self.opened, self.size = time.monotonic(), 0

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class DecisionLog:
    """Asynchronous JSON-lines log of routing decisions and their feedback; see the module docstring.

    ``record`` and ``feedback`` never block and never raise: when the queue is full the record is
    dropped and counted in ``dropped`` (one warning per rotated file). ``close`` drains everything
    queued; it also runs at interpreter exit if the owner never called it.
    """

    def __init__(self, config: DecisionLogConfig) -> None:
        self.config = config
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=config.queue_size)
        self._drop_lock = threading.Lock()
        self._closed = False
        self._close_lock = threading.Lock()
        self._files = {
            kind: _Rotating(config.directory, prefix, config.max_bytes, config.max_age_s)
            for kind, prefix in (("decision", DECISIONS_PREFIX), ("feedback", FEEDBACK_PREFIX))
        }
        self._warned = (0, -1)  # (dropped count, rotation) of the last drop warning
        config.directory.mkdir(parents=True, exist_ok=True)
        self.outcomes = Outcomes.read(config.directory, config.remember)
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ------------------------------------------------------------------ request side

    def record(self, *, request_id: str, prompt: str, model: str, scores: dict[str, float], lam: float,
               budget: float | None, share: dict | None, router_version: str, latency_ms: float,
               task: str | None = None, timestamp: datetime | None = None, propensity: float | None = None,
               policy: str = "off") -> None:
        """Queue one decision; the timestamp is taken now (the request's time), the rest is done by the writer.

        ``scores`` and ``share`` are not copied: do not change them after the call.
        """
        when = timestamp or datetime.now(timezone.utc)
        self.outcomes.decided(request_id)
        self._put(("decision", (request_id, when, prompt, task, model, scores, lam, budget, share,
                                router_version, latency_ms, propensity, policy)))

    def feedback(self, *, request_id: str, score: float, cost: float | None = None) -> None:
        """Queue the outcome of a logged request. Raises ``UnknownRequest`` for an id this log has not
        routed lately, ``ConflictingFeedback`` for a second, different outcome (a repeat is written once)."""
        if self.outcomes.accept(request_id, score, cost):
            self._put(("feedback", (request_id, datetime.now(timezone.utc), score, cost)))

    def _put(self, item) -> None:
        if self._closed:
            self._count_drop()
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._count_drop()

    def _count_drop(self) -> None:
        with self._drop_lock:  # += from many request threads
            self.dropped += 1

    # ------------------------------------------------------------------ writer side

    def _decision(self, item) -> dict:
        (request_id, when, prompt, task, model, scores, lam, budget, share, router_version, latency_ms,
         propensity, policy) = item
        mode = self.config.prompts
        return {
            "request_id": str(request_id),
            "timestamp": utc_iso(when),
            "prompt": prompt if mode == "text" else None,
            "prompt_sha256": None if mode == "none" else hashlib.sha256(prompt.encode()).hexdigest(),
            "task": task,
            "model": model,
            "scores": {str(k): _finite(v) for k, v in (scores or {}).items()},
            "lam": _finite(lam),
            "budget": _finite(budget),
            "share": None if share is None else {str(k): _finite(v) for k, v in share.items()},
            "router_version": router_version,
            "latency_ms": _finite(latency_ms),
            "propensity": _finite(propensity),
            "policy": str(policy),
        }

    @staticmethod
    def _feedback(item) -> dict:
        request_id, when, score, cost = item
        return {"request_id": str(request_id), "timestamp": utc_iso(when), "score": _finite(score),
                "cost": _finite(cost)}

    def _run(self) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                item = self._queue.get(timeout=_FLUSH_S)
            except queue.Empty:
                item = None
            if item is _STOP:
                break
            if item is not None:
                self._write(item)
            # Flush when idle (a reader sees lines within a second) or at least every _FLUSH_S under load.
            if self._queue.empty() or time.monotonic() - last_flush > _FLUSH_S:
                self._flush()
                last_flush = time.monotonic()
        self._flush()  # also says the final count of dropped records
        for f in self._files.values():
            try:
                f.close()
            except OSError as exc:
                log.warning("decision log: cannot close a file in %s: %s", self.config.directory, exc)

    def _write(self, item) -> None:
        kind, payload = item
        try:  # a malformed record must not kill the writer: it is dropped and said once
            line = _line(self._decision(payload) if kind == "decision" else self._feedback(payload))
        except Exception as exc:  # noqa: BLE001
            self._count_drop()
            log.warning("decision log: dropped a %s record that cannot be written as JSON: %s", kind, exc)
            return
        try:
            self._files[kind].write(line)
        except OSError as exc:
            self._count_drop()
            log.warning("decision log: cannot write to %s: %s", self.config.directory, exc)

    def _flush(self) -> None:
        for f in self._files.values():
            try:
                f.flush()
            except OSError as exc:
                log.warning("decision log: cannot flush to %s: %s", self.config.directory, exc)
        self._warn_dropped()

    def _warn_dropped(self) -> None:
        rotation = self._files["decision"].rotations
        if self.dropped > self._warned[0] and (rotation != self._warned[1] or self._closed):
            log.warning("decision log: %d records dropped so far (queue of %d full, or logged after close); "
                        "the logs in %s miss them", self.dropped, self.config.queue_size, self.config.directory)
            self._warned = (self.dropped, rotation)

    # ------------------------------------------------------------------ shutdown

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued, flush and close the files (idempotent). Waits at most ``timeout`` s."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        try:
            self._queue.put(_STOP, timeout=timeout)  # behind every queued record
        except queue.Full:
            log.warning("decision log: writer did not drain its queue within %.0f s", timeout)
            return
        self._thread.join(timeout)
        if not self._thread.is_alive():  # a record that raced past the closed check: counted, not lost silently
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
                self._count_drop()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_feedback(directory: str | Path, request_id: str, score: float, cost: float | None = None,
                    timestamp: datetime | None = None) -> Path | None:
    """Append one feedback line to ``<directory>/feedback-cli-<UTC yyyymmdd>.jsonl`` (``router feedback``).

    The request must have a decision in ``directory`` and no other outcome yet (``router.serve.outcomes``:
    every file is searched); a repeat of its outcome writes nothing. One ``O_APPEND`` write of a whole
    line, so concurrent writers never interleave. Returns the file, or None for a repeat.
    """
    if not isinstance(request_id, str) or not request_id.strip():
        raise ValueError(f"request_id must be a non-empty string, got {request_id!r}")
    checked = {}
    for name, value in (("score", score), ("cost", cost)):
        if value is None and name == "cost":
            checked[name] = None
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        if name == "cost" and number < 0:
            raise ValueError(f"cost must be >= 0 ($), got {value!r}")
        checked[name] = number
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: no decision log there (the --decision-log folder of router serve)")
    try:
        if not Outcomes.read(directory, capacity=None).accept(request_id, checked["score"], checked["cost"]):
            return None
    except LookupError as exc:
        raise ValueError(f"{exc} in {directory}") from None
    when = timestamp or datetime.now(timezone.utc)
    path = directory / f"{FEEDBACK_PREFIX}cli-{utc_iso(when)[:10].replace('-', '')}{LOG_SUFFIX}"
    line = _line({"request_id": request_id, "timestamp": utc_iso(when), **checked})
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return path
