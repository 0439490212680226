"""One printed line per finished step of the job, with its duration: readable in a cron mail or CI log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Steps:
    """Prints one line per finished step, with its duration: readable in a cron mail or CI log."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        """Time the block; it may put a one-line ``detail`` in the yielded dict."""
        info: dict = {}
        start = time.perf_counter()
        yield info
        if self.echo is not None:
            detail = f": {info['detail']}" if info.get("detail") else ""
            self.echo(f"[{name}] {time.perf_counter() - start:.1f}s{detail}")

    def show(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)
