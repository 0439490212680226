"""The whole nightly job at scale, step by step: a full run, then the re-run on logs grown by 5%.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nightly.py --queries 100000 1000000 [--models 10] [--new 0.05]

Per size: logs from ``benchmarks/generate_logs.py`` (seed 0, query-major); the latest ``--new`` share
of queries (by time) is held back as "today's" logs (``bench_incremental.split_logs``). The embedding
cache is warmed with synthetic vectors for yesterday's prompts (``bench_job_scale.synthetic_embeddings``:
a million prompts need no hour-long embedding run); today's new prompts are embedded for real by the
default embedder (onnx-int8) in the re-run, as a nightly job would. Then ``run_job`` with the default
``JobConfig`` (every default candidate, selection, gate, MLflow on sqlite, export, registry) runs twice,
each in a fresh process (peak RSS: its own ``VmHWM``): the full run on yesterday's logs, the re-run
on all of them (the registry then holds yesterday's champion, so the re-run also scores it).

Each step's time is exclusive (a step called inside another counts only in the inner one); the
``fit <family>`` rows hold every fit of that family: its search on the selection sample, the final
fit on all training queries and the operating-point folds (which selection grades); ``predict
<family>`` its predictions (operating-point folds and held-out queries). Writes the
``nightly`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = ["ingest + validate", "labels", "embeddings", "summary"]  # then fit <family>, in order seen
TAIL = ["selection", "evaluation", "MLflow logging", "compare with champion", "export", "register", "other"]


def _hooks() -> list[tuple[object, str, object]]:
    """(module, attribute, step name or a function of the call's args giving it) for each timed call."""
    import pipelines.experiment as experiment
    import pipelines.job as job
    import pipelines.prepare as prepare
    import pipelines.publish.export as export
    import pipelines.publish.release as release
    import pipelines.publish.tracking as tracking
    import pipelines.selection as selection

    fit = lambda args: f"fit {args[0].family}"  # noqa: E731
    predict = lambda args: f"predict {_family(args[0])}"  # noqa: E731
    return [(prepare, "validate_logs", "ingest + validate"), (prepare, "build_routing_data", "labels"),
            (prepare, "embed_prompts", "embeddings"), (job, "summarize", "summary"),
            (experiment, "fit_router", fit), (experiment, "out_of_fold", fit), (selection, "fit_router", fit),
            (experiment, "predict_with_tasks", predict), (selection, "predict_with_tasks", predict),
            (experiment, "select", "selection"), (job, "run_experiment", "evaluation"),
            (tracking, "log_job_run", "MLflow logging"), (release, "decide", "compare with champion"),
            (export, "log_router", "export"), (release, "register", "register")]


def _family(router) -> str:
    from router.routers import ROUTERS

    return next((name for name, cls in ROUTERS.items() if type(router) is cls), type(router).__name__)


def worker(config: str, out: str) -> None:
    """Run the job of ``config`` with every hooked call timed; write phases, peak RSS, outcome as JSON."""
    from benchmarks.results import peak_rss_gib
    from pipelines.job import run_job

    phases: dict[str, float] = {}
    high_water: dict[str, float] = {}
    stack: list[float] = []  # per open call: seconds spent in calls nested in it

    def timed(step, f):
        def run(*args, **kwargs):
            key = step(args) if callable(step) else step
            stack.append(0.0)
            start = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                phases[key] = phases.get(key, 0.0) + spent - stack.pop()
                if stack:
                    stack[-1] += spent
                high_water[key] = peak_rss_gib()
        return run

    for module, name, step in _hooks():
        setattr(module, name, timed(step, getattr(module, name)))
    start = time.perf_counter()
    result = run_job(config, quiet=True, echo=lambda line: None)
    total = time.perf_counter() - start
    phases["other"] = total - sum(phases.values())
    Path(out).write_text(json.dumps({
        "total": total, "phases": phases, "high_water": high_water,
        "peak_gib": peak_rss_gib(),
        "exported": result.experiment.exported, "embedded": result.embedded, "reused": result.reused,
        "queries": result.experiment.train.n_queries + result.experiment.test.n_queries,
        "promotion": result.promotion.reason if result.promotion else ""}))


def warm_cache(logs: Path, cache_dir: Path) -> int:
    """Synthetic vectors for every prompt of ``logs`` in the default embedder's cache; returns how many."""
    from benchmarks.bench_job_scale import synthetic_embeddings
    from pipelines.config import EmbedderConfig
    from router.data.scan import scan_logs
    from router.data.labels import build_routing_data
    from router.embed import EmbeddingCache
    from router.embed.cache import text_hashes

    data = build_routing_data(scan_logs(str(logs)))
    embedder = EmbedderConfig(cache_dir=str(cache_dir)).build()
    EmbeddingCache(cache_dir).add(embedder.id, text_hashes(list(data.prompts)), synthetic_embeddings(data.scores))
    return data.n_queries


def run_size(n: int, models: int, new: float, cache: Path, work: Path) -> dict:
    import yaml

    from benchmarks.bench_incremental import split_logs
    from benchmarks.generate_logs import generate
    from pipelines.config import EmbedderConfig, JobConfig, LogsConfig, TrackingConfig

    gen = generate(cache / f"q{n}-m{models}", n, models, seed=0)
    base = work / "yesterday"
    n_base, n_all = split_logs(Path(gen.out), base, new)
    warm_cache(base, work / "embeddings")
    runs = {}
    for label, logs in (("full", base), ("re-run", Path(gen.out))):
        job = JobConfig(logs=LogsConfig(path=str(logs)), embedder=EmbedderConfig(cache_dir=str(work / "embeddings")),
                        tracking=TrackingConfig(uri=f"sqlite:///{work}/mlruns.db", artifact_root=str(work / "mlruns")),
                        export_dir=str(work / "models"))
        config = work / f"{label}.yaml"
        config.write_text(yaml.safe_dump(job.model_dump(mode="json")))
        out = work / f"{label}.json"
        subprocess.run([sys.executable, __file__, "--worker", str(config), str(out)], check=True, cwd=work)
        runs[label] = json.loads(out.read_text())
        r = runs[label]
        print(f"{n:,} queries, {label}: {r['total']:.0f} s, peak {r['peak_gib']:.2f} GiB, embedded {r['embedded']:,}, "
              f"ships {r['exported']} ({', '.join(f'{k} {v:.0f}' for k, v in r['phases'].items())})", flush=True)
    return {"n": n_all, "base": n_base, "models": models, "runs": runs}


def table(sizes: list[dict]) -> list[str]:
    fits = []
    for s in sizes:
        for r in s["runs"].values():
            fits += [k for k in r["phases"] if k.startswith(("fit ", "predict ")) and k not in fits]
    fits.sort(key=lambda k: (k.split(" ", 1)[1], k))  # each family's fit, then its predictions
    steps = STEPS + fits + TAIL
    heads = [(s, label) for s in sizes for label in ("full", "re-run")]
    lines = ["| step | " + " | ".join(f"{s['n']:,} {label}: s (GiB)" for s, label in heads) + " |",
             "|---|" + "---:|" * len(heads)]
    for step in steps:
        cells = []
        for s, label in heads:
            r = s["runs"][label]
            t = r["phases"].get(step)
            hw = r["high_water"].get(step)
            cells.append("" if t is None else f"{t:.0f}" + (f" ({hw:.2f})" if hw is not None else ""))
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{s['runs'][label]['total']:.0f}**" for s, label in heads) + " |")
    lines.append("| peak RSS GiB | " + " | ".join(f"{s['runs'][label]['peak_gib']:.2f}" for s, label in heads) + " |")
    lines.append("| prompts embedded / from cache | " + " | ".join(
        f"{s['runs'][label]['embedded']:,} / {s['runs'][label]['reused']:,}" for s, label in heads) + " |")
    lines.append("| ships | " + " | ".join(s["runs"][label]["exported"] for s, label in heads) + " |")
    return lines


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3])
    import tempfile

    from benchmarks.results import machine, publish

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, nargs="+", default=[100_000])
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--new", type=float, default=0.05, help="share of queries that are new in the re-run")
    ap.add_argument("--cache", default="/tmp/router-job-scale", help="where generated logs are kept")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    sizes = []
    for n in sorted(args.queries):
        with tempfile.TemporaryDirectory(prefix="router-nightly-") as work:
            sizes.append(run_size(n, args.models, args.new, Path(args.cache), Path(work)))
    cmd = (f"OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_nightly.py --queries "
           f"{' '.join(map(str, args.queries))} --models {args.models} --new {args.new:g}")
    text = "\n".join([
        "## The nightly job at scale: a full run and the re-run with 5% new queries", "",
        f"Command: `{cmd}` on {machine()}. Generated logs (seed 0, {args.models} models); the full run reads all "
        f"but the latest {args.new:.0%} of queries, the re-run all of them. The embedding cache holds synthetic "
        "vectors for the full run's prompts (no embedding run for them); the re-run embeds its new prompts for "
        "real (default embedder, onnx-int8). Default `JobConfig`: every default candidate, selection on at most "
        "`selection.max_queries` training queries, the gate, MLflow (sqlite), export and registry; the re-run "
        "also scores yesterday's champion. Each run in a fresh process. Seconds per step (exclusive), in "
        "brackets the process's peak RSS (GiB) when the step last ended; `fit <family>`: its search on the "
        "selection sample, the final fit and the operating-point folds; `predict <family>`: its predictions of the "
        "operating-point folds and of the held-out queries; `evaluation`: the rest of scoring the held-out queries "
        "(metrics, bootstrap intervals, cost curves, the report, the gate).", "", *table(sizes)])
    publish("nightly", text, write=not args.no_write)


if __name__ == "__main__":
    main()
