"""The Dask path on one machine: embedding prompts/s and LightGBM fit time, local vs a LocalCluster.

    .venv/bin/python benchmarks/bench_cluster.py [--n 1000] [--partition-sizes 1024,128] [--no-lgbm] [--no-write]

Embedding: ``--n`` MMLU-Pro questions (sample, seed 0), no cache, a fresh default embedder per
configuration: the local ``Embedder`` (all cores), then ``pipelines.cluster.ClusterEmbedder`` on a
2-worker ``LocalCluster`` (1 thread each, loopback only) for each partition size. Model loading is
timed apart (locally) or by a warm-up call that loads the model on both workers (cluster), so the
prompts/s column is steady-state throughput. The cluster vectors are checked against the local ones.
LightGBM: ``LGBMRouter()`` fitted local vs ``LGBMRouter(cluster=...)`` on the 300-question MMLU-Pro
test fixture (31 models, 70/30 seeded split), with routing agreement and mean routed score.
Writes the tables to benchmarks/RESULTS.md (section cluster) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import machine, publish  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from pipelines.cluster import ClusterEmbedder  # noqa: E402
from pipelines.config import ClusterConfig  # noqa: E402
from router.embed import Embedder, EmbeddingCache, embed_with_cache  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mmlu_pro"
CACHE = ROOT / ".cache" / "bench-embeddings"  # for the LightGBM features only; the speed runs use no cache
WORKERS, THREADS = 2, 1
DEFAULT_PARTITION = ClusterConfig.model_fields["partition_size"].default


def speed_prompts(n: int) -> list[str]:
    return pl.read_csv(shared_data("mmlu_pro", "questions.csv.gz")).sample(n, seed=0)["question"].to_list()


def time_local(texts: list[str]) -> tuple[np.ndarray, dict]:
    embedder = Embedder(show_progress=False)
    t = time.perf_counter()
    embedder.load()
    embedder.encode(texts[:8])  # warm-up
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    X = embedder.encode(texts)
    seconds = time.perf_counter() - t
    threads = getattr(embedder.load(), "threads", embedder.threads)
    return X, {"name": f"local Embedder ({threads} threads)", "tasks": 1, "load": load_s,
               "seconds": seconds}


def time_cluster(client, texts: list[str], partition_size: int) -> tuple[np.ndarray, dict]:
    remote = ClusterEmbedder(Embedder(show_progress=False), client, partition_size)
    t = time.perf_counter()
    # One-prompt tasks, enough of them that both workers load the model before the timed call.
    ClusterEmbedder(remote.embedder, client, 1).encode(texts[:4 * WORKERS])
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    X = remote.encode(texts)
    seconds = time.perf_counter() - t
    tasks = len(remote.partitions(len(texts)))
    return X, {"name": f"LocalCluster {WORKERS}x{THREADS} thread, partition_size={partition_size}",
               "tasks": tasks, "load": load_s, "seconds": seconds}


def lgbm_rows(address: str) -> list[dict]:
    from router.data import formats
    from router.data import labels
    from router.routers import LGBMRouter

    spec = formats.WideSpec(id_column="question_id", prompt_column="question", task_column="category",
                            prompts_file=str(FIXTURES / "questions.csv"))
    d = labels.build_routing_data(formats.scan_wide(FIXTURES / "correct_wide.csv", spec))
    X, _ = embed_with_cache(Embedder(show_progress=False), d.prompts, EmbeddingCache(CACHE))
    perm = np.random.default_rng(0).permutation(d.n_queries)
    cut = int(0.7 * d.n_queries)
    tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    args = (X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    rows, local_route = [], None
    for name, router in (("local", LGBMRouter()), (f"LocalCluster {WORKERS}x{THREADS}", LGBMRouter(cluster=address))):
        t = time.perf_counter()
        router.fit(*args)
        seconds = time.perf_counter() - t
        route = router.route(X[te])
        local_route = route if local_route is None else local_route
        rows.append({"name": name, "seconds": seconds, "agreement": float(np.mean(route == local_route)),
                     "quality": float(np.nanmean(d.scores[te, route])), "models": d.n_models,
                     "train": len(tr), "test": len(te)})
    return rows


def main() -> None:
    from distributed import Client, LocalCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="prompts to embed")
    ap.add_argument("--partition-sizes", default=f"{DEFAULT_PARTITION},128",
                    help="comma-separated ClusterEmbedder partition sizes (the job default first)")
    ap.add_argument("--no-lgbm", action="store_true", help="skip the LightGBM fit timing")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone (smoke runs)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.partition_sizes.split(",")]
    texts = speed_prompts(args.n)

    X_local, local = time_local(texts)
    rows, gaps = [local], [0.0]
    starts = []
    for size in sizes + ([] if args.no_lgbm else [None]):
        # A fresh cluster per row: each row loads its own model on new worker processes. (client.restart()
        # once hung here for 120 s waiting for nannies to bring workers back.)
        t = time.perf_counter()
        with LocalCluster(n_workers=WORKERS, threads_per_worker=THREADS, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
            starts.append(time.perf_counter() - t)
            if size is None:
                fits = lgbm_rows(cluster.scheduler_address)
                continue
            X, row = time_cluster(client, texts, size)
            rows.append(row)
            gaps.append(float(np.abs(X - X_local).max()))
    fits = fits if not args.no_lgbm else []
    start_s = max(starts)

    chars = np.mean([len(t) for t in texts])
    command = "benchmarks/bench_cluster.py" + "".join(
        f" {a}" for a in sys.argv[1:] if a != "--no-write")
    lines = [
        f"## Dask cluster path: local vs LocalCluster ({args.n:,} MMLU-Pro prompts, mean {chars:.0f} chars)",
        "",
        f"Command: `.venv/bin/python {command}` on {machine()}. Embedder: the default "
        f"({Embedder().backend}), a fresh one per row, no cache. LocalCluster: {WORKERS} worker processes x "
        f"{THREADS} thread on 127.0.0.1, a fresh one per row, started in at most {start_s:.1f}s (not counted). Load = model load + warm-up "
        "(on the cluster: a first call that loads the model on every worker), not counted in prompts/s.",
        "",
        "| embedding | tasks | load s | seconds | prompts/s | max abs diff to local |",
        "|---|---|---|---|---|---|",
        *[f"| {r['name']} | {r['tasks']} | {r['load']:.1f} | {r['seconds']:.2f} | {args.n / r['seconds']:,.0f} "
          f"| {g:.1e} |" for r, g in zip(rows, gaps)],
    ]
    if fits:
        f0 = fits[0]
        lines += [
            "",
            f"LightGBM heads: `LGBMRouter()` defaults, {f0['models']} per-model regressors on the MMLU-Pro "
            f"test fixture ({f0['train']} train / {f0['test']} test queries); the cluster fit trains every "
            "regressor for all n_estimators and replays early stopping on the validation curve.",
            "",
            "| LightGBM fit | seconds | same choice as local | mean routed score |",
            "|---|---|---|---|",
            *[f"| {r['name']} | {r['seconds']:.1f} | {r['agreement']:.0%} | {r['quality']:.3f} |" for r in fits],
        ]
    lines += [
        "",
        f"Caveat: this is one machine with {os.cpu_count()} cores. A LocalCluster here competes for the same "
        "cores as the local run and adds task scheduling, pickling and (for LightGBM) socket set-up per "
        "regressor, so it shows the Dask path's overhead, not a speed-up; the cluster path pays off when the "
        "workers are other machines. Cluster LightGBM routes differ slightly from local ones (data-parallel "
        "histogram bins; tests/test_cluster.py has the measured tolerance).",
    ]
    text = "\n".join(lines)
    publish("cluster", text, write=not args.no_write)


if __name__ == "__main__":
    main()
