"""Train / test (/ out-of-distribution) splits of queries, never of rows.

A split is a set of row indices into one ``RoutingData``; every (query, model) answer of a query
lands on the same side, so a router never sees a test query's other answers while training.

- ``split_queries(by="query")``: a query is held out when a seeded hash of its id falls below
  ``test_size``. The split of a query depends on its id alone, not on which other queries the logs
  hold, so as nightly logs grow every old query stays on its side and a champion is never scored on
  queries it was trained on.
- ``split_queries(by="task")``: whole tasks are held out. Their queries form ``ood`` and are also
  the ``test`` rows (``test`` and ``ood`` are the same indices), so the usual evaluation on
  ``test`` measures how the router does on tasks it never saw.
- ``given_split``: the ``split`` column of the logs, used as given ('train', 'test', 'ood').
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from router.data.labels import RoutingData
from router.data.schema import SPLIT_VALUES



@dataclass(frozen=True)
class Split:
    """Sorted row indices of each side; ``ood`` may be empty. ``how`` says how it was made."""

    train: np.ndarray
    test: np.ndarray
    ood: np.ndarray
    how: str

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_test": len(self.test), "n_ood": len(self.ood)}


def _indices(rows) -> np.ndarray:
    return np.sort(np.asarray(rows, dtype=np.int64))


def split_queries(
    data: RoutingData,
    *,
    test_size: float,
    seed: int,
    by: Literal["query", "task"] = "query",
    test_tasks: list[str] | tuple[str, ...] | None = None,
) -> Split:
    """Hold out ``test_size`` of the queries (by="query") or whole tasks (by="task").

    by="task" holds out ``test_tasks`` when given, else tasks drawn in a seeded order until they
    cover at least ``test_size`` of the queries (at least one task always stays in train).
    Queries without a task tag always stay in train. The held-out queries are both ``test`` and
    ``ood``.
    """
    n = data.n_queries
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if n < 2:
        raise ValueError(f"need at least 2 queries to split, got {n}")
    if by == "query":
        return _split_by_query(data.query_ids, test_size, seed)
    if by == "task":
        return _split_by_task(data, test_size, seed, test_tasks)
    raise ValueError(f"by must be 'query' or 'task', got {by!r}")


def unit_hash(keys, seed: int) -> np.ndarray:
    """A number in [0, 1) per key from a seeded blake2b hash: the same key and seed, the same number,
    on any machine and in any run (unlike Python's ``hash``)."""
    salt = str(seed).encode()
    digests = b"".join(hashlib.blake2b(str(k).encode(), digest_size=8, salt=salt[:16].ljust(16, b"\0")).digest()
                       for k in keys)
    return np.frombuffer(digests, dtype="<u8").astype(np.float64) / 2.0**64


def _split_by_query(query_ids, test_size: float, seed: int) -> Split:
    u = unit_hash(query_ids, seed)
    test = u < test_size
    # At least one query on each side, however the hashes fall.
    if not test.any():
        test[np.argmin(u)] = True
    if test.all():
        test[np.argmax(u)] = False
    n_test, n = int(test.sum()), len(u)
    return Split(
        train=_indices(np.flatnonzero(~test)),
        test=_indices(np.flatnonzero(test)),
        ood=np.empty(0, dtype=np.int64),
        how=f"{n_test}/{n} queries held out by a hash of their id (test_size={test_size}, seed={seed})",
    )


def _split_by_task(data: RoutingData, test_size: float, seed: int, test_tasks) -> Split:
    if data.tasks is None:
        raise ValueError("by='task' needs a task column in the logs; use by='query'")
    tasks = np.array([None if t is None else str(t) for t in data.tasks], dtype=object)
    tagged = np.array([t is not None for t in tasks])
    names = sorted({t for t in tasks[tagged]})
    if test_tasks is not None:
        held = [str(t) for t in test_tasks]
        unknown = [t for t in held if t not in names]
        if unknown or not held:
            raise ValueError(f"unknown test_tasks {unknown or held}; the logs have tasks {names}")
        how = f"tasks {held} held out (given)"
    else:
        if len(names) < 2:
            raise ValueError(f"by='task' needs at least 2 tasks, the logs have {names}")
        counts = {t: int((tasks == t).sum()) for t in names}
        held, covered = [], 0
        # Tasks in the order of a seeded hash of their names: the same seed holds out the same tasks
        # whatever order the rows came in, and a new task does not reshuffle the others.
        for i in np.argsort(unit_hash(names, seed), kind="stable"):
            if covered >= test_size * data.n_queries or len(held) == len(names) - 1:
                break
            held.append(names[i])
            covered += counts[names[i]]
        how = f"tasks {held} held out (seeded draw, test_size={test_size}, seed={seed})"
    out = np.isin(tasks, np.array(held, dtype=object)) & tagged
    if out.all():
        raise ValueError(f"holding out {held} leaves no training query")
    test = _indices(np.flatnonzero(out))
    return Split(train=_indices(np.flatnonzero(~out)), test=test, ood=test, how=how)


def given_split(data: RoutingData) -> Split:
    """The split column as given: 'train' / 'test' / 'ood' (case-insensitive); empty rows unused.

    Raises ValueError on other values, or when no row is 'train' or no row is 'test'.
    """
    if data.splits is None:
        raise ValueError("the logs have no split column")
    values = np.array(
        ["" if s is None or (isinstance(s, float) and np.isnan(s)) else str(s).strip().lower()
         for s in data.splits],
        dtype=object,
    )
    unknown = sorted(set(values) - set(SPLIT_VALUES) - {""})
    if unknown:
        raise ValueError(f"split column has values {unknown}; expected one of {list(SPLIT_VALUES)}")
    rows = {name: _indices(np.flatnonzero(values == name)) for name in SPLIT_VALUES}
    missing = [name for name in ("train", "test") if len(rows[name]) == 0]
    if missing:
        counts = {name: len(r) for name, r in rows.items()}
        raise ValueError(f"the given split has no {' and no '.join(missing)} rows (counts {counts})")
    unused = int((values == "").sum())
    how = "given split column" + (f" ({unused} queries without a split value unused)" if unused else "")
    return Split(train=rows["train"], test=rows["test"], ood=rows["ood"], how=how)


def has_given_split(data: RoutingData) -> bool:
    """True when the logs carry at least one split value."""
    return data.splits is not None and any(
        s is not None and not (isinstance(s, float) and np.isnan(s)) and str(s).strip() != ""
        for s in data.splits
    )
