"""Embedding throughput: 2,000 MMLU-Pro prompts, cold cache vs warm cache, on this CPU.

    .venv/bin/python benchmarks/bench_embed.py [--n 2000]

Cold = every prompt goes through the encoder (fresh cache); warm = the same prompts again,
served from the on-disk cache. Writes its table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import machine, publish  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from router.embed import Embedder, EmbeddingCache, embed_with_cache  # noqa: E402


def prompts(n: int) -> list[str]:
    q = pl.read_csv(shared_data("mmlu_pro", "questions.csv.gz")).sample(n, seed=0)
    return q["question"].to_list()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    texts = prompts(args.n)
    emb = Embedder(show_progress=False)
    t = time.perf_counter()
    emb.load()
    load_s = time.perf_counter() - t
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp)
        X1, cold = embed_with_cache(emb, texts, cache)
        X2, warm = embed_with_cache(emb, texts, cache)
        assert warm.embedded == 0 and np.array_equal(X1, X2)
        rows.append(("cold cache (all encoded)", cold.embedded, cold.seconds, args.n / cold.seconds))
        rows.append(("warm cache (all reused)", warm.reused, warm.seconds, args.n / warm.seconds))
    chars = np.mean([len(t) for t in texts])
    table = [
        f"## Embedding throughput ({args.n:,} MMLU-Pro prompts, mean {chars:.0f} chars)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_embed.py --n {args.n}` on {machine()}; "
        f"embedder {emb.id}, batch {emb.batch_size}; model load {load_s:.1f}s (not counted).",
        "",
        "| run | prompts encoded/reused | seconds | prompts/s |",
        "|---|---|---|---|",
        *[f"| {name} | {k:,} | {s:.2f} | {r:,.0f} |" for name, k, s, r in rows],
    ]
    text = "\n".join(table)
    publish("embed", text)


if __name__ == "__main__":
    main()
