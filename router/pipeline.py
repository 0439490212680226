"""The training job: ingest -> labels -> embed (cached) -> summary.

Later steps (fit, evaluate, export, register) hang off this one entry point.
"""

from __future__ import annotations

import logging
from pathlib import Path

from router.config import JobConfig, load_config
from router.dataset import load_routing_data
from router.embed import EmbeddingCache, embed_with_cache
from router.summary import summarize

log = logging.getLogger(__name__)


def run_job(config: str | Path | JobConfig | None = None) -> dict:
    job = config if isinstance(config, JobConfig) else load_config(config)
    data, stats = load_routing_data(job.logs)
    summary = summarize(data, stats)
    print(summary.to_markdown())
    X, emb = embed_with_cache(job.embedder.build(), data.prompts, EmbeddingCache(job.embedder.cache_dir))
    print(f"\nembeddings: {emb.embedded:,} prompts embedded, {emb.reused:,} reused from cache "
          f"({emb.seconds:.1f}s); {X.shape[0]:,} x {X.shape[1]}")
    return {"summary": summary, "embed": emb}
