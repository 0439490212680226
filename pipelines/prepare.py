"""The first three steps in one call: read logs -> validate -> routing data (matrices)."""

from __future__ import annotations

import polars as pl

from router.data import ingest
from pipelines.config import LogsConfig
from router.data.labels import RoutingData, build_routing_data
from router.data.validate import LogStats, validate_logs


def scan_configured(cfg: LogsConfig) -> pl.LazyFrame:
    """The configured logs as canonical rows, windowed by ``since`` and capped at ``max_queries``.

    Both keep or drop whole queries (every model's answer to a kept query stays), and both come
    before validation, so a huge log is only validated where it is used.
    """
    prices = ingest.load_prices(cfg.prices) if cfg.prices else None
    lf = ingest.scan_logs(cfg.path, format=cfg.format, wide=cfg.wide_spec(), prices=prices)
    lf = ingest.filter_since(lf, cfg.since)
    return ingest.cap_queries(lf, cfg.max_queries, seed=cfg.sample_seed)


def load_routing_data(cfg: LogsConfig) -> tuple[RoutingData, LogStats]:
    """Validated routing data for a logs config; raises ``LogValidationError`` on bad input."""
    lf = scan_configured(cfg)
    stats = validate_logs(lf, source=cfg.path)
    return build_routing_data(lf), stats
