"""The default job's select, fit and evaluate step at growing size: where its time goes.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_job_scale.py [--sizes 5000 20000] [--models 10]

For each size, logs from ``benchmarks/generate_logs.py`` (seed 0) go through ``scan_logs`` ->
``build_routing_data``; the embeddings are synthetic, so that a million prompts need no embedding
run: a seeded random unit vector per query (384 dimensions, MiniLM's) with one coordinate shifted by
the query's mean score, so the routers have some signal to fit. Then ``run_experiment`` with the
default ``JobConfig()`` (every default candidate, 5-fold selection, the gate), timed per phase by
wrapping ``select``, ``calibrate_router`` and ``fit_router`` (the fit of each family includes its
operating-point fold fits; selection's fold fits are in ``select``). Peak RSS is this process's.
Writes the ``job_scale`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pipelines.experiment as experiment  # noqa: E402
import pipelines.selection as selection  # noqa: E402
from benchmarks.generate_logs import generate  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.config import JobConfig  # noqa: E402
from router.data.scan import scan_logs  # noqa: E402
from router.data.labels import build_routing_data  # noqa: E402


def synthetic_embeddings(scores: np.ndarray, dim: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(len(scores), dim)).astype(np.float32)
    X[:, 0] += 3 * np.nan_to_num(np.nanmean(scores, axis=1))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def timed_run(n: int, models: int, cache: Path, max_queries: int | None) -> dict:
    gen = generate(cache / f"q{n}-m{models}", n, models, seed=0)
    t = time.perf_counter()
    data = build_routing_data(scan_logs(gen.out))
    phases = {"labels": time.perf_counter() - t}
    X = synthetic_embeddings(data.scores)
    wrapped = {(module, name): getattr(module, name) for module, name in (
        (experiment, "select"), (experiment, "calibrate_router"), (experiment, "fit_router"), (selection, "fit_router"))}

    def timer(name, f):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                key = f"fit {args[0].family}" if name == "fit_router" else name
                phases[key] = phases.get(key, 0.0) + time.perf_counter() - start
        return run

    try:
        for (module, name), f in wrapped.items():
            setattr(module, name, timer(name, f))
        t = time.perf_counter()
        job = JobConfig()
        if max_queries is not None:
            job = job.model_copy(update={"selection": job.selection.model_copy(update={"max_queries": max_queries})})
        exp = experiment.run_experiment(data, X, job)
        total = time.perf_counter() - t
    finally:
        for (module, name), f in wrapped.items():
            setattr(module, name, f)
    return {"n": n, "queries": data.n_queries, "models": data.n_models, "train": exp.train.n_queries,
            "selection_queries": exp.selection.n_queries if exp.selection else 0, "total": total,
            "phases": phases, "exported": exp.exported,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5_000, 20_000], help="queries per run")
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--cache", default="/tmp/router-job-scale", help="where generated logs are kept")
    ap.add_argument("--max-queries", type=int, default=None,
                    help="selection.max_queries (default: the job's default)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    runs = []
    for n in sorted(args.sizes):
        runs.append(timed_run(n, args.models, Path(args.cache), args.max_queries))
        r = runs[-1]
        print(f"{n:,} queries: {r['total']:.0f} s ({', '.join(f'{k} {v:.0f}' for k, v in r['phases'].items())})",
              flush=True)
    keys = ["labels", "select", "calibrate_router"] + sorted({k for r in runs for k in r["phases"] if k.startswith("fit ")})
    lines = ["## The job's select, fit and evaluate step at growing size", "",
             f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_job_scale.py --sizes "
             f"{' '.join(map(str, args.sizes))} --models {args.models}"
             + (f" --max-queries {args.max_queries}" if args.max_queries else "") + f"` on {machine()}. Generated logs (seed 0), "
             "synthetic 384-d embeddings (a seeded random unit vector per query, one coordinate shifted by its mean "
             "score: no embedding run), the default `JobConfig()`: every default candidate, 5-fold selection on at "
             "most `selection.max_queries` training queries, the gate. Seconds per phase; `fit <family>` includes "
             "its operating-point fold fits, `select` the selection folds' fits. Peak RSS: the benchmark process.", "",
             "| queries | train (selection on) | total s | " + " | ".join(keys) + " | peak RSS GiB | ships |",
             "|---|---|---:|" + "---:|" * len(keys) + "---:|---|"]
    for r in runs:
        cells = [f"{r['phases'].get(k, 0.0):.0f}" for k in keys]
        lines.append(f"| {r['queries']:,} x {r['models']} | {r['train']:,} ({r['selection_queries']:,}) | "
                     f"{r['total']:.0f} | " + " | ".join(cells) + f" | {r['peak_gib']:.2f} | {r['exported']} |")
    text = "\n".join(lines)
    publish("job_scale" if args.max_queries is None else "job_scale_capped", text, write=not args.no_write)


if __name__ == "__main__":
    main()
