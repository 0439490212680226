"""The process of ``router serve``: the gateway app (``router.serve.gateway``) under uvicorn, with what it owns
(the reloading router, the decision log), stopped cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette

from router.serve.decision_log import DecisionLogConfig
from router.serve.gateway import ServeConfig, create_app
from router.serve.upstreams import api_keys

log = logging.getLogger("router.serve.gateway")  # one logger for the gateway and its process


@dataclass
class GatewayServer:
    """A built gateway and what it owns: ``run()`` serves until SIGINT/SIGTERM, then closes them."""

    app: Starlette
    config: ServeConfig
    holder: Any  # ReloadingRouter
    decision_log: Any = None

    def run(self) -> None:
        import copy

        import uvicorn

        # uvicorn's own logging set-up plus this package's logger (reload and upstream warnings); root untouched
        log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
        log_config["loggers"]["router"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
        server = _server_class()(uvicorn.Config(self.app, host=self.config.host, port=self.config.port,
                                                log_config=log_config,
                                                timeout_graceful_shutdown=self.config.shutdown_grace_s))
        log.info("%s", self.banner())
        if self.config.reload_seconds > 0:
            self.holder.start()
        try:
            server.run()
        finally:
            self.close()

    def banner(self) -> str:
        """The start-up line: which router and version is served, where, and whether callers need the key."""
        current = self.holder.current()
        key = "/v1/ needs the API key" if self.config.api_key else "no API key: any caller that reaches it may use it"
        return (f"serving {self.holder.source} version {current.version} ({current.service.meta.router} head over "
                f"{len(current.service.models)} models, from {current.path}) on http://{self.config.host}:"
                f"{self.config.port}; {key}")

    def close(self) -> None:
        self.holder.stop()
        if self.decision_log is not None:
            self.decision_log.close()


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGTERM/SIGINT ends it with a normal return: uvicorn re-raises the signal
        after shutdown, which would kill the process before the decision log is flushed."""

        @contextlib.contextmanager
        def capture_signals(self):
            if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def build_server(source: str, config: ServeConfig, environ: dict[str, str] | None = None) -> GatewayServer:
    """Read the upstream map and API keys (cheap checks first), load the router, open the decision log.

    Raises ValueError / OSError / RuntimeError with one clear message for bad input; nothing stays open then.
    """
    from router.serve.decision_log import DecisionLog
    from router.serve.load import load
    from router.serve.reload import ReloadingRouter
    from router.serve.upstreams import load_upstreams

    upstreams = load_upstreams(config.upstreams) if config.upstreams is not None else None
    if upstreams is not None:
        api_keys(upstreams, environ)  # before the router load, which takes seconds
    # ReloadingRouter needs a positive period even when it is never started (reload_seconds = 0)
    holder = ReloadingRouter(source, poll_seconds=config.reload_seconds or 1.0,
                             loader=functools.partial(load, threads=config.threads))
    decision_log = None
    try:
        if config.decision_log is not None:
            decision_log = DecisionLog(DecisionLogConfig(config.decision_log, prompts=config.log_prompts))
        app = create_app(holder, upstreams=upstreams, decision_log=decision_log, config=config, environ=environ)
    except BaseException:
        if decision_log is not None:
            decision_log.close()
        raise
    return GatewayServer(app=app, config=config, holder=holder, decision_log=decision_log)
