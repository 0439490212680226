"""The job's first steps, shared by `router train`, `router evaluate` and `router embed`:
read logs -> validate -> routing data (matrices) -> embeddings (cached; on the cluster when given).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines.config import EmbedderConfig, LogsConfig
from router.data.readers.prices import load_prices
from router.data.scan import cap_queries, filter_since, scan_logs
from router.data.labels import RoutingData, build_routing_data
from router.data.validate import LogStats, validate_logs
from router.embed import EmbeddingCache, EmbedStats, Embedder, embed_with_cache


@dataclass
class Prepared:
    """Validated routing data and the row-aligned query embeddings."""

    data: RoutingData
    stats: LogStats
    X: np.ndarray
    embedder: Embedder  # the one exported: the cluster path only runs its encode remotely
    embedding: EmbedStats


def scan_configured(cfg: LogsConfig) -> pl.LazyFrame:
    """The configured logs as canonical rows, windowed by ``since`` and capped at ``max_queries``.

    Both keep or drop whole queries (every model's answer to a kept query stays), and both come
    before validation, so a huge log is only validated where it is used.
    """
    prices = load_prices(cfg.prices) if cfg.prices else None
    lf = scan_logs(cfg.path, format=cfg.format, wide=cfg.wide_spec(), prices=prices, columns=cfg.columns())
    lf = filter_since(lf, cfg.since)
    return cap_queries(lf, cfg.max_queries, seed=cfg.sample_seed)


def load_routing_data(cfg: LogsConfig) -> tuple[RoutingData, LogStats]:
    """Validated routing data for a logs config; raises ``LogValidationError`` on bad input."""
    lf = scan_configured(cfg)
    stats = validate_logs(lf, source=cfg.path)
    return build_routing_data(lf), stats


def embed_prompts(cfg: EmbedderConfig, prompts, client=None, partition_size: int | None = None
                  ) -> tuple[np.ndarray, Embedder, EmbedStats]:
    """Vectors for ``prompts`` through the on-disk cache; uncached prompts go to the Dask workers
    when a ``client`` is given (same embedder id, same cache, same vectors)."""
    embedder = cfg.build()
    cache = EmbeddingCache(cfg.cache_dir)
    if client is None:
        X, stats = embed_with_cache(embedder, prompts, cache)
    else:
        from pipelines.dask_cluster import ClusterEmbedder

        encoder = ClusterEmbedder(embedder, client, partition_size)
        X, stats = embed_with_cache(encoder, prompts, cache, chunk_size=encoder.chunk_size)
    return X, embedder, stats


def prepare(logs: LogsConfig, embedder: EmbedderConfig, client=None, partition_size: int | None = None
            ) -> Prepared:
    """Load, validate and embed: everything the routers are fitted on."""
    data, stats = load_routing_data(logs)
    X, built, emb = embed_prompts(embedder, data.prompts, client, partition_size)
    return Prepared(data=data, stats=stats, X=X, embedder=built, embedding=emb)
