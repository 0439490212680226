"""The first three steps in one call: read logs -> validate -> routing data (matrices)."""

from __future__ import annotations

import polars as pl

from router import ingest
from router.config import LogsConfig
from router.labels import RoutingData, build_routing_data
from router.validate import LogStats, validate_logs


def scan_configured(cfg: LogsConfig) -> pl.LazyFrame:
    prices = ingest.load_prices(cfg.prices) if cfg.prices else None
    return ingest.scan_logs(cfg.path, format=cfg.format, wide=cfg.wide_spec(), prices=prices)


def load_routing_data(cfg: LogsConfig) -> tuple[RoutingData, LogStats]:
    """Validated routing data for a logs config; raises ``LogValidationError`` on bad input."""
    lf = scan_configured(cfg)
    stats = validate_logs(lf, source=cfg.path)
    return build_routing_data(lf), stats
