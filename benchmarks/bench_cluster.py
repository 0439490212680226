"""The Dask path on one machine: embedding prompts/s and LightGBM fit time, local vs a LocalCluster.

    .venv/bin/python benchmarks/bench_cluster.py [--n 1000] [--partition-sizes 1024,128] [--no-lgbm] [--no-write]
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_cluster.py --generated 100000 [--models 10] [--no-lgbm]

Embedding: ``--n`` MMLU-Pro questions (sample, seed 0), no cache, a fresh default embedder per
configuration: the local ``Embedder`` (all cores), then ``pipelines.dask_cluster.ClusterEmbedder`` on a
2-worker ``LocalCluster`` (1 thread each, loopback only) for each partition size. Model loading is
timed apart (locally) or by a warm-up call that loads the model on both workers (cluster), so the
prompts/s column is steady-state throughput. The cluster vectors are checked against the local ones.
LightGBM: ``LGBMRouter()`` fitted local vs with ``fit(..., client=)`` on the 300-question MMLU-Pro
test fixture (31 models, 70/30 seeded split), with routing agreement and mean routed score.
Writes the tables to benchmarks/RESULTS.md (section cluster) unless ``--no-write``.

``--generated N`` (scale; section cluster_scale): N distinct ~300-character prompts from
``benchmarks/generate_logs.py`` logs (seed 0, ``--models`` models, kept under ``--cache`` and shared
with bench_scale.py), embedded as above with the default partition size only, then ``LGBMRouter()``
fitted local vs ``client=`` on the generated score matrix with synthetic features
(``bench_job_scale.synthetic_embeddings``: no second embedding run). Adds peak RSS (this process so far,
and the workers') and an estimate, from the measured rates and fixed costs, of where workers on
separate machines start to pay off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import machine, publish  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from pipelines.dask_cluster import ClusterEmbedder  # noqa: E402
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


def fixture_lgbm_data():
    """The MMLU-Pro test fixture (31 models) and its cached MiniLM embeddings."""
    from router.data.readers.wide import WideSpec, scan_wide
    from router.data.scan import scan_logs
    from router.data import labels

    spec = WideSpec(id_column="question_id", prompt_column="question", task_column="category",
                            prompts_file=str(FIXTURES / "questions.csv"))
    d = labels.build_routing_data(scan_wide(FIXTURES / "correct_wide.csv", spec))
    X, _ = embed_with_cache(Embedder(show_progress=False), d.prompts, EmbeddingCache(CACHE))
    return X, d


def lgbm_rows(client, X: np.ndarray, d) -> list[dict]:
    """``LGBMRouter()`` fitted locally, then with ``client=``, on a seeded 70/30 split of (X, d)."""
    from router.routers import LGBMRouter

    perm = np.random.default_rng(0).permutation(d.n_queries)
    cut = int(0.7 * d.n_queries)
    tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    args = (X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
    rows, local_route = [], None
    for name, fit_params in (("local", {}), (f"LocalCluster {WORKERS}x{THREADS}", {"client": client})):
        router = LGBMRouter()
        t = time.perf_counter()
        router.fit(*args, **fit_params)
        seconds = time.perf_counter() - t
        route = router.route(X[te])
        local_route = route if local_route is None else local_route
        rows.append({"name": name, "seconds": seconds, "agreement": float(np.mean(route == local_route)),
                     "quality": float(np.nanmean(d.scores[te, route])), "models": d.n_models,
                     "train": len(tr), "test": len(te), "peak_mib": peak_rss_mib(),
                     "worker_peak_mib": max(client.run(peak_rss_mib).values()) if fit_params else None})
    return rows


def peak_rss_mib() -> float:
    """This process's peak RSS so far (``VmHWM``: a worker's ru_maxrss would start at this process's peak);
    also run on the workers by ``client.run``."""
    from benchmarks.results import peak_rss_gib

    return peak_rss_gib() * 1024


def _noop(i: int) -> int:
    return i


@contextmanager
def local_cluster():
    """A fresh 2-worker LocalCluster (loopback, no dashboard) and a client: (client, start seconds)."""
    from distributed import Client, LocalCluster

    t = time.perf_counter()
    with LocalCluster(n_workers=WORKERS, threads_per_worker=THREADS, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
        yield client, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="prompts to embed")
    ap.add_argument("--partition-sizes", default=f"{DEFAULT_PARTITION},128",
                    help="comma-separated ClusterEmbedder partition sizes (the job default first)")
    ap.add_argument("--generated", type=int, default=None, metavar="N",
                    help="scale mode: N distinct generated prompts, default partition size, LightGBM on N "
                         "synthetic rows (section cluster_scale; --n and --partition-sizes are not used)")
    ap.add_argument("--models", type=int, default=10, help="models in the generated logs (--generated)")
    ap.add_argument("--cache", default="/tmp/router-scale", help="where generated logs are kept (--generated)")
    ap.add_argument("--no-lgbm", action="store_true", help="skip the LightGBM fit timing")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone (smoke runs)")
    args = ap.parse_args()
    if args.generated is not None:
        return scale_main(args)
    sizes = [int(s) for s in args.partition_sizes.split(",")]
    texts = speed_prompts(args.n)

    X_local, local = time_local(texts)
    rows, gaps = [local], [0.0]
    starts = []
    fits = []
    for size in sizes + ([] if args.no_lgbm else [None]):
        # A fresh cluster per row: each row loads its own model on new worker processes. (client.restart()
        # once hung here for 120 s waiting for nannies to bring workers back.)
        with local_cluster() as (client, start_s):
            starts.append(start_s)
            if size is None:
                fits = lgbm_rows(client, *fixture_lgbm_data())
                continue
            X, row = time_cluster(client, texts, size)
            rows.append(row)
            gaps.append(float(np.abs(X - X_local).max()))
    start_s = max(starts)

    chars = np.mean([len(t) for t in texts])
    command = run_command()
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
        "histogram bins; tests/pipelines/test_dask_cluster.py has the measured tolerance).",
    ]
    text = "\n".join(lines)
    publish("cluster", text, write=not args.no_write)


def run_command() -> str:
    return "benchmarks/bench_cluster.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--no-write")


def generated_prompts(cache: Path, n: int, models: int) -> tuple[list[str], object]:
    """The distinct prompts of generated logs (n queries, seed 0; cached like bench_scale's) and their
    routing data. The generator's "(ref i)" suffix makes every query's prompt distinct."""
    from benchmarks.bench_scale import ensure_logs
    from router.data import labels
    from router.data.readers.wide import WideSpec, scan_wide
    from router.data.scan import scan_logs

    out, _ = ensure_logs(cache, n, models, seed=0)
    d = labels.build_routing_data(scan_logs(out))
    texts = [str(p) for p in d.prompts]
    if len(set(texts)) != len(texts):
        raise RuntimeError(f"{out}: {len(texts) - len(set(texts))} repeated prompts; expected all distinct")
    return texts, d


def scheduling_seconds(client, tasks: int) -> float:
    """Round-trip seconds per task of ``tasks`` no-op tasks (after a warm-up map): Dask's own cost per task."""
    client.gather(client.map(_noop, range(WORKERS * 2), pure=False))
    t = time.perf_counter()
    client.gather(client.map(_noop, range(tasks), pure=False))
    return (time.perf_counter() - t) / tasks


def _fmt_n(n: float) -> str:
    return "never" if n == float("inf") else f"~{n:,.0f}" if n >= 1 else "any"


def scale_main(args) -> None:
    texts, d = generated_prompts(Path(args.cache), args.generated, args.models)
    n = len(texts)
    print(f"{n:,} distinct prompts; embedding locally ...", file=sys.stderr, flush=True)
    X_local, local = time_local(texts)
    local["peak"] = f"{peak_rss_mib():,.0f} / -"
    print(f"local: {n / local['seconds']:,.0f} prompts/s; on the cluster ...", file=sys.stderr, flush=True)
    with local_cluster() as (client, start_s):
        X, remote = time_cluster(client, texts, DEFAULT_PARTITION)
        remote["peak"] = f"{peak_rss_mib():,.0f} / {max(client.run(peak_rss_mib).values()):,.0f}"
        gap = float(np.abs(X - X_local).max())
        per_task = scheduling_seconds(client, max(remote["tasks"], 100))
    del X, X_local
    fits = []
    if not args.no_lgbm:
        from benchmarks.bench_job_scale import synthetic_embeddings

        print(f"cluster: {n / remote['seconds']:,.0f} prompts/s; LightGBM ...", file=sys.stderr, flush=True)
        with local_cluster() as (client, _):
            fits = lgbm_rows(client, synthetic_embeddings(d.scores), d)

    # The estimate: a worker thread embeds r1 prompts/s (measured: the LocalCluster's rate over its threads,
    # each on its own core here); W of them on other machines vs this machine alone.
    r_loc, r1 = n / local["seconds"], n / remote["seconds"] / (WORKERS * THREADS)
    fixed = start_s + remote["load"] + remote["tasks"] * per_task
    breakeven = {w: (max(fixed - local["load"], 0.0) / (1 / r_loc - 1 / (w * r1)) if w * r1 > r_loc else float("inf"))
                 for w in (4, 8, 16)}
    chars = np.mean([len(t) for t in texts])
    lines = [
        f"## Dask cluster path at scale: local vs LocalCluster ({n:,} generated prompts, mean {chars:.0f} chars)",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python {run_command()}` on {machine()}. Prompts: the distinct "
        f"prompts of `benchmarks/generate_logs.py` logs (seed 0, {args.models} models), embedded with no cache by "
        f"the default embedder ({Embedder().backend}): locally, then by `ClusterEmbedder` with the job's default "
        f"partition_size={DEFAULT_PARTITION} on a fresh LocalCluster of {WORKERS} worker processes x {THREADS} "
        f"thread on 127.0.0.1 (started in {start_s:.1f}s). Load = model load + warm-up, not counted in prompts/s. "
        "Peak RSS: this process so far (it holds the logs, the prompts and the vectors) / the largest worker.",
        "",
        "| embedding | tasks | load s | seconds | prompts/s | max abs diff to local | peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
        *[f"| {r['name']} | {r['tasks']} | {r['load']:.1f} | {r['seconds']:.1f} | {n / r['seconds']:,.0f} | {g:.1e} "
          f"| {r['peak']} |" for r, g in ((local, 0.0), (remote, gap))],
    ]
    if fits:
        f0, f1 = fits
        lines += [
            "",
            f"LightGBM heads: `LGBMRouter()` defaults, {f0['models']} per-model regressors on the generated scores "
            f"({f0['train']:,} train / {f0['test']:,} test queries) with synthetic 384-d features "
            "(`bench_job_scale.synthetic_embeddings`); local: 1 thread, early stopping; cluster: `fit(..., client=)`, "
            "every regressor trained for all n_estimators on both workers, early stopping replayed.",
            "",
            "| LightGBM fit | seconds | same choice as local | mean routed score | peak RSS MiB |",
            "|---|---|---|---|---|",
            *[f"| {r['name']} | {r['seconds']:.1f} | {r['agreement']:.0%} | {r['quality']:.3f} | {r['peak_mib']:,.0f}"
              + (f" / {r['worker_peak_mib']:,.0f}" if r["worker_peak_mib"] else " / -") + " |" for r in fits],
        ]
    lines += [
        "",
        f"**Where the cluster pays off (an estimate).** On this one {os.cpu_count()}-core machine the LocalCluster's "
        "workers share the cores the local run uses, so the tables show the Dask path's overhead only. From "
        f"the measured rates: this machine embeds r_local = {r_loc:,.0f} prompts/s after a {local['load']:.1f}s load; "
        f"one worker thread on its own core embeds r_1 = {r1:,.0f} prompts/s; the cluster's fixed cost is "
        f"F = start {start_s:.1f}s + model load on the workers {remote['load']:.1f}s + {remote['tasks']} tasks x "
        f"{per_task * 1e3:.1f} ms scheduling = {fixed:.1f}s (the start drops out when the cluster is already "
        "running). With W worker threads on separate machines, T_cluster(N) ~ F + N / (W r_1) against "
        "T_local(N) ~ load + N / r_local (returning 1.5 KB of float32 per prompt is ~12 us on 1 Gbit/s, "
        f"negligible next to 1/r_1 = {1e3 / r1:.1f} ms). It pays off when W r_1 > r_local, i.e. W > "
        f"{r_loc / r1:.1f}, and N > (F - load) / (1/r_local - 1/(W r_1)): "
        + ", ".join(f"W = {w}: {_fmt_n(v)}" for w, v in breakeven.items())
        + f" prompts. At N = {n:,}: local {local['load'] + n / r_loc:,.1f}s vs "
        + ", ".join(f"W = {w}: {fixed + n / (w * r1):,.1f}s" for w in (4, 8, 16)) + ".",
    ]
    if fits:
        f0, f1 = fits
        m, scale = f0["models"], f0["train"]
        c = f0["seconds"] / m  # local seconds per regressor at this size (1 thread)
        o = max(f1["seconds"] - f0["seconds"] / WORKERS, 0.0) / m  # cluster overhead per regressor
        lines += [
            "",
            f"LightGBM is different: each of the {m} regressors is its own lightgbm.dask fit with a fixed overhead "
            f"o ~ (cluster - local/{WORKERS}) / {m} = {o:.2f}s (socket set-up, scattering, the rounds past early "
            f"stopping, the replay) against c = {c:.2f}s of local work per regressor at {scale:,} training rows. "
            "Assuming the work grows linearly with rows and splits evenly over W machines, data-parallel "
            f"training pays off above N_train ~ {scale:,} o / (c (1 - 1/W)) rows: "
            + ", ".join(f"W = {w}: {_fmt_n(o / (c / scale * (1 - 1 / w)))}" for w in (2, 4, 8))
            + " rows.",
        ]
    publish("cluster_scale", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
