"""Which routed requests a decision log holds, and the outcome each got: feedback is checked against it.

Feedback for a request the gateway never routed (a typo, a forged id such as ``../../etc/passwd``) is
refused, and so is a second, different outcome for one request (training refuses such logs: which one
is true is the sender's call). A repeat of the same outcome (a client's retry) is accepted once.

The gateway remembers the latest ``capacity`` decisions (read back from the newest files at start, so a
restart forgets nothing recent); ``router feedback`` searches every file of the folder. Standard library
only: serving imports it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from pathlib import Path

from router.data.schema import DECISIONS_PREFIX, FEEDBACK_PREFIX, LOG_SUFFIX

_ID = re.compile(rb'"request_id":("(?:[^"\\]|\\.)*")')
_NONE = object()  # a decided request without feedback yet


class UnknownRequest(LookupError):
    """Feedback names a request id the decision log does not hold."""


class ConflictingFeedback(ValueError):
    """Feedback gives a request a different outcome than it already has."""


class Outcomes:
    """request id -> its outcome (score, cost) or none yet, for the latest ``capacity`` decisions."""

    def __init__(self, capacity: int | None = 100_000) -> None:
        self.capacity = capacity
        self._known: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def read(cls, directory: str | Path, capacity: int | None = 100_000) -> Outcomes:
        """The decisions and feedback already in ``directory`` (newest decision files first, up to capacity)."""
        index = cls(capacity)
        directory = Path(directory)
        chunks, total = [], 0
        for path in sorted(directory.glob(f"{DECISIONS_PREFIX}*{LOG_SUFFIX}"), reverse=True):
            chunks.append(_ids(path))
            total += len(chunks[-1])
            if capacity is not None and total >= capacity:
                break
        for chunk in reversed(chunks):  # oldest first: the capacity drops the oldest
            for rid in chunk:
                index.decided(rid)
        for path in sorted(directory.glob(f"{FEEDBACK_PREFIX}*{LOG_SUFFIX}")):
            for record in _records(path):
                rid = record.get("request_id")
                if isinstance(rid, str) and rid in index._known:
                    index._known[rid] = (record.get("score"), record.get("cost"))
        return index

    def decided(self, request_id: str) -> None:
        """A request was routed (and its decision logged)."""
        with self._lock:
            self._known.setdefault(request_id, _NONE)
            if self.capacity is not None and len(self._known) > self.capacity:
                self._known.popitem(last=False)

    def accept(self, request_id: str, score: float, cost: float | None) -> bool:
        """Check feedback and remember its outcome: True if new, False for a repeat of the same outcome.

        Raises ``UnknownRequest`` or ``ConflictingFeedback`` (nothing is remembered then)."""
        with self._lock:
            if request_id not in self._known:
                raise UnknownRequest(f"no routed request with id {request_id!r}" + (
                    f" among the latest {self.capacity:,} decisions" if self.capacity is not None else ""))
            had = self._known[request_id]
            if had is not _NONE:
                if had == (score, cost):
                    return False
                raise ConflictingFeedback(f"request {request_id!r} already has feedback score {had[0]!r}, cost "
                                          f"{had[1]!r}; a request has one outcome")
            self._known[request_id] = (score, cost)
            return True


def _ids(path: Path) -> list[str]:
    """The request ids of a decision file, in file order (a line cut short at the end is skipped)."""
    out = []
    with open(path, "rb") as f:
        for line in f:
            match = _ID.search(line) if line.endswith(b"\n") else None
            if match:
                out.append(json.loads(match.group(1)))
    return out


def _records(path: Path):
    with open(path, "rb") as f:
        for line in f:
            if line.endswith(b"\n"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record
