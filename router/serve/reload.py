"""Hot reload: a served router replaced by a newly exported one without dropping a request.

``ReloadingRouter`` polls its source in a background thread: a local folder (typically the
``models/<name>/champion`` link, which the job moves to a new ``v<N>`` folder) or a
``models:/NAME@ALIAS`` URI (the alias moving to a new registry version). A new router is loaded in
the polling thread, then one attribute is rebound: a request that took the old ``LoadedRouter``
finishes on it, the next one gets the new one. A router that fails to load is refused with one
warning, the old one keeps serving, and that same broken version is not tried again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_HEAD = Path("artifacts") / "head"
_WATCHED = ("router_meta.json", "head.json")  # rewritten by any new export of the head
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


@dataclass(frozen=True)
class LoadedRouter:
    """A loaded router service and what it was loaded from; immutable, so safe to hand to a request."""

    service: Any  # router.serve.service.RouterService
    version: str  # "v3-1a2b3c4d" (folder name + hash of its head files) or "v3" (registry version)
    path: str  # the resolved folder or the exact registry URI that was loaded


def _default_loader(source: str):
    from router.serve.load import load

    return load(source)


class ReloadingRouter:
    """The current router of ``source``, reloaded when the source changes.

    ``source`` is a local exported folder (links resolved at every poll), ``models:/NAME@ALIAS``,
    or any other URI ``router.load`` takes (loaded once: it cannot move). The first load happens
    here and raises on failure: a service cannot start without a router. ``loader(path)`` returns
    a service (default ``router.serve.load.load``).
    """

    def __init__(self, source: str | Path, poll_seconds: float = 5.0,
                 loader: Callable[[str], Any] | None = None) -> None:
        if not poll_seconds > 0:
            raise ValueError(f"poll_seconds must be > 0, got {poll_seconds!r}")
        self.source = str(source)
        self.poll_seconds = float(poll_seconds)
        self._loader = loader or _default_loader
        self._alias = _ALIAS_URI.match(self.source)
        # Another URI (runs:/..., models:/NAME/3) names one immutable router: loaded once, never polled.
        self._static = not self._alias and ":/" in self.source and not Path(self.source).exists()
        self._check_lock = threading.Lock()  # one load at a time (poll thread vs check_now)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed: tuple | None = None  # identity that failed to load: not retried
        self._failed_reason: str | None = None  # last identity error said, not repeated each poll
        # accept(new, current) raises to refuse a reloaded router (the gateway: models without an upstream)
        self.accept: Callable[[Any, Any], None] | None = None
        identity = self._identity()
        self._current = self._load(identity)
        self._identity_loaded = identity

    def current(self) -> LoadedRouter:
        """The router to use for one request (never waits for a load)."""
        return self._current

    # ------------------------------------------------------------------ polling

    def start(self) -> ReloadingRouter:
        """Poll every ``poll_seconds`` in a daemon thread (no-op if already polling)."""
        if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
            # A fresh event per thread: a poller still finishing a load after stop() exits on its own one.
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._poll, args=(self._stop,), name="router-reload",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop polling; waits at most ``timeout`` s for a load in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _poll(self, stop: threading.Event) -> None:
        while not stop.wait(self.poll_seconds):
            try:
                self.check_now()
            except Exception:  # never let the poller die: it is what recovers from a bad export
                log.exception("router reload: checking %s failed", self.source)

    def check_now(self) -> bool:
        """Poll once: load and swap in the router if the source changed. True if it was swapped."""
        with self._check_lock:
            try:
                identity = self._identity()
            except Exception as exc:  # e.g. the link points nowhere for a moment, or the registry is down
                reason = f"{type(exc).__name__}: {exc}"
                if reason != self._failed_reason:
                    log.warning("router reload: cannot check %s (%s); still serving %s", self.source, reason,
                                self._current.version)
                    self._failed_reason = reason
                return False
            self._failed_reason = None
            if identity == self._identity_loaded or identity == self._failed:
                return False
            try:
                loaded = self._load(identity)
                if self.accept is not None:
                    self.accept(loaded.service, self._current.service)
            except Exception as exc:
                log.warning("router reload: refused %s: %s: %s; still serving %s", identity[0],
                            type(exc).__name__, exc, self._current.version)
                self._failed = identity
                return False
            self._current, self._identity_loaded = loaded, identity  # the swap: one reference rebound
            log.info("router reload: now serving %s from %s", loaded.version, loaded.path)
            return True

    # ------------------------------------------------------------------ what the source points at

    def _identity(self) -> tuple:
        """What identifies the router now behind the source: (path or URI to load, *change markers)."""
        if self._alias:
            import mlflow  # only for registry URIs: serving from a folder never imports it

            from router.serve.load import existing_store

            existing_store(self.source, mlflow.get_tracking_uri())  # never create an empty store beside us
            name, alias = self._alias["name"], self._alias["alias"]
            version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
            return (f"models:/{name}/{version}", str(version))
        if self._static:
            return (self.source,)
        folder = Path(os.path.realpath(self.source))
        if not folder.is_dir():
            raise FileNotFoundError(f"{self.source} is not a folder (resolved to {folder})")
        marks = []
        for name in _WATCHED:
            st = (folder / _HEAD / name).stat()
            marks.append((st.st_mtime_ns, st.st_size))
        return (str(folder), *marks)

    def _load(self, identity: tuple) -> LoadedRouter:
        path = identity[0]
        if self._alias:
            version = f"v{identity[1]}"
        elif self._static:
            version = path
        else:
            digest = hashlib.sha256()
            for name in _WATCHED:
                digest.update((Path(path) / _HEAD / name).read_bytes())
            version = f"{Path(path).name}-{digest.hexdigest()[:8]}"
        return LoadedRouter(service=self._loader(path), version=version, path=path)
