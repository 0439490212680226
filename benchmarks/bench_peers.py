"""The job's router against faithful versions of the published routers, on the same embeddings and splits.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py [--sets theoremqa,zeroeval_no_o1,...]
        [--folds 5] [--big-folds 3 --big 10000] [--no-write]

Per set (``SETS``; variants say what they drop and why): the router the job ships
(``run_experiment`` with the default ``JobConfig()``: nested-CV selection on the training split,
then the baseline gate), and every peer of ``benchmarks/peers.py`` fitted on the same training
queries and embeddings, all scored on the same held-out queries: quality at lambda 0 (mean score of
the chosen model), gap closed (router - best single) / (oracle - best single), AIQ where the set has
costs, and the paired difference to the job's router with a two-sided 90% bootstrap interval.
Writes the ``peers`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_routers import CACHE  # noqa: E402
from benchmarks.bench_selection import load_set  # noqa: E402
from benchmarks.peers import PEERS, peer_names  # noqa: E402
from benchmarks.results import machine, publish, write_section  # noqa: E402
from pipelines.config import JobConfig, RouterSpec, SelectionConfig  # noqa: E402
from pipelines.experiment import run_experiment  # noqa: E402
from pipelines.gate import paired_gain  # noqa: E402
from router.data.labels import RoutingData  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.evaluation.metrics import evaluate_router, mean_model_costs  # noqa: E402

# Variants drop a model that dominates its pool: in practice it is often too dear or unavailable,
# and without it routing has real headroom (the README of each set gives the numbers).
# The "small" pools keep the open-weight models of at most ~10B parameters (a self-hosted pool),
# chosen by size from the model names, never by their results.
_SMALL = re.compile(r"(^|[-_])(2b|6b|7b|8b|9b|mini)([-_]|$)", re.I)
_OPEN = ("Meta-Llama", "Qwen2", "gemma-2", "Yi-1.5", "Phi-3.5")
VARIANTS = {
    "theoremqa_no_gpt4": ("theoremqa", lambda m: not m.startswith("GPT4"), "without GPT4 and GPT4_PoT"),
    "zeroeval_no_o1": ("zeroeval", lambda m: not m.startswith("o1-"), "without o1-mini"),
    "zeroeval_small": ("zeroeval", lambda m: m.startswith(_OPEN) and bool(_SMALL.search(m)),
                       "open-weight models of <= 10B parameters only"),
    "mmlu_pro_small": ("mmlu_pro", lambda m: bool(_SMALL.search(m)), "open-weight models of <= 8B parameters only"),
}
SETS = ["theoremqa", "theoremqa_no_gpt4", "zeroeval", "zeroeval_no_o1", "zeroeval_small", "mmlu_pro",
        "mmlu_pro_no_top", "mmlu_pro_small", "routerbench", "nq", "routellm_mmlu"]


def load_any(name: str) -> tuple[RoutingData, str]:
    if name in VARIANTS:
        base, keep, note = VARIANTS[name]
        data, base_note = load_set(base)
        return data.select_models([m for m in data.models if keep(m)]), ", ".join(x for x in (base_note, note) if x)
    return load_set(name)


@dataclass
class Row:
    label: str
    quality: float
    gap_closed: float
    aiq: float | None
    per_query: np.ndarray  # held-out score of the chosen model, evaluated rows
    seconds: float
    delta: tuple[float, float, float] | None = None  # mean, lower, upper of (row - job), 90% two-sided


def paired_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b and its two-sided 90% bootstrap interval: the gate's paired bootstrap, both ways
    (same seed, same resamples), so the bounds are its 5% quantile and minus that of b - a."""
    mean, lower = paired_gain(a, b, confidence=0.95)
    return mean, lower, -paired_gain(b, a, confidence=0.95)[1]


def run_set(name: str, folds: int, embedder: Embedder, extra: list[str], tags: bool = False
            ) -> tuple[str, RoutingData, list[Row], dict]:
    data, note = load_any(name)
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    t = time.perf_counter()
    job = JobConfig(export_router="auto", selection=SelectionConfig(folds=folds), task_at_serving=tags)
    job = job.model_copy(update={"routers": job.routers + [RouterSpec(family=f) for f in extra]})
    exp = run_experiment(data, X, job)
    job_s = time.perf_counter() - t
    train, test, rows = exp.train, exp.test, exp.eval_rows
    X_tr, X_te = X[exp.split.train], X[exp.split.test]
    costs = mean_model_costs(train)
    has_cost = exp.report.baselines.has_cost
    shipped = exp.fitted[exp.exported].result
    out = [Row(f"**job: {exp.exported}**" + (f" (selected {exp.selected})" if exp.selected != exp.exported else ""),
               shipped.quality, shipped.gap_closed, shipped.aiq,
               test.scores[rows, shipped.choices], job_s)]
    for label, f in exp.fitted.items():  # every candidate the job tried, losers included
        tag = " (selected)" if label == exp.selected else ""
        out.append(Row(f"candidate {label}{tag}", f.result.quality, f.result.gap_closed, f.result.aiq,
                       test.scores[rows, f.result.choices], f.fit_seconds))
    for peer_name in peer_names(test.tasks is not None):
        t = time.perf_counter()
        peer = PEERS[peer_name]().fit(X_tr, train.scores, train.costs if has_cost else None, train.mask, train.tasks)
        pred = peer.predict_scores(X_te, test.tasks)
        res = evaluate_router(pred, test, train, costs, 0.0, n_boot=200)
        out.append(Row(peer_name, res.quality, res.gap_closed, res.aiq, test.scores[rows, res.choices],
                       time.perf_counter() - t))
        print(f"  {peer_name}: {res.quality:.4f} ({time.perf_counter() - t:.0f}s)", flush=True)
    for r in out[1:]:
        r.delta = paired_interval(r.per_query, out[0].per_query)
    b = exp.report.baselines
    info = {"note": note, "best": f"{b.models[b.best_single]} {b.single_quality[b.best_single]:.4f}",
            "oracle": b.oracle_quality, "n_eval": len(rows), "has_cost": has_cost, "split": exp.split.how,
            "selection": exp.outcome_lines(JobConfig())[0] if exp.selection else ""}
    print(f"{name}: job ships {exp.exported} {shipped.quality:.4f} ({job_s:.0f}s)", flush=True)
    return name, data, out, info


def fmt(x, spec: str) -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, spec)


def table(name: str, data: RoutingData, rows: list[Row], info: dict) -> list[str]:
    head = f"### {name}" + (f" ({info['note']})" if info["note"] else "")
    lines = [head, "",
             f"{data.n_queries:,} queries x {data.n_models} models, {info['n_eval']:,} held out ({info['split']}); "
             f"best single {info['best']}, oracle {info['oracle']:.4f}.", "",
             "| router | quality | gap closed | " + ("AIQ | " if info["has_cost"] else "")
             + "minus job (90% CI) | fit + predict s |",
             "|---|---:|---:|" + ("---:|" if info["has_cost"] else "") + "---|---:|"]
    for r in sorted(rows, key=lambda r: -r.quality):
        d = "" if r.delta is None else f"{r.delta[0]:+.4f} [{r.delta[1]:+.4f}, {r.delta[2]:+.4f}]"
        aiq = f"{fmt(r.aiq, '.4f')} | " if info["has_cost"] else ""
        lines.append(f"| {r.label} | {r.quality:.4f} | {fmt(r.gap_closed, '+.1%')} | {aiq}{d} | {r.seconds:.0f} |")
    return lines


def verdict(name: str, rows: list[Row]) -> str:
    job, peers = rows[0], [r for r in rows[1:] if not r.label.startswith("candidate ")]
    best = max(peers, key=lambda r: r.quality)
    above = [r.label for r in peers if r.delta[1] > 0]
    tail = f"; peers significantly above the job: {', '.join(above)}" if above else "; no peer significantly above"
    return (f"{name}: job {job.quality:.4f} (gap closed {fmt(job.gap_closed, '+.1%')}) vs best peer {best.label} "
            f"{best.quality:.4f} ({best.delta[0]:+.4f} [{best.delta[1]:+.4f}, {best.delta[2]:+.4f}]){tail}")


def fit_time(embedder: Embedder, extra: list[str]) -> str:
    """Seconds of the default job's select-fit-evaluate on 10,000 MMLU-Pro queries x 10 models."""
    data, _ = load_any("mmlu_pro")
    data = data.subset(np.arange(10_000)).select_models(list(data.models[:10]))
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    job = JobConfig(export_router="auto")
    job = job.model_copy(update={"routers": job.routers + [RouterSpec(family=f) for f in extra]})
    t = time.perf_counter()
    exp = run_experiment(data, X, job)
    seconds = time.perf_counter() - t
    fits = ", ".join(f"{k} {f.fit_seconds:.0f}" for k, f in exp.fitted.items())
    return (f"Fit time: the job's select, fit and evaluate step (`run_experiment`, {job.selection.folds}-fold "
            f"selection over {len(job.candidates())} candidates) on the first 10,000 MMLU-Pro queries x its first "
            f"10 models took **{seconds:.0f} s** (final fits, s: {fits}).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--big-folds", type=int, default=3)
    ap.add_argument("--big", type=int, default=10_000)
    ap.add_argument("--extra", default="lgbm,irt", help="families added to the default candidates (default: "
                                                       "the ones not in it, so every family is measured)")
    ap.add_argument("--task-at-serving", action="store_true",
                    help="the job's task family is given each held-out query's task tag (task_at_serving)")
    ap.add_argument("--section", default="peers", help="the RESULTS.md section to write")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--fit-time", action="store_true",
                    help="instead: time the job on 10,000 x 10 (MMLU-Pro), section fit_time")
    args = ap.parse_args()
    names = [s for s in args.sets.split(",") if s]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        raise SystemExit(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    embedder = Embedder(show_progress=False)
    extra = [f for f in args.extra.split(",") if f]
    if args.fit_time:
        line = fit_time(embedder, extra) + (f" Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python "
                                            f"benchmarks/bench_peers.py --fit-time --extra {args.extra}` on {machine()}.")
        print(line)
        if not args.no_write:
            write_section("fit_time", "## Job fit time at 10,000 queries x 10 models\n\n" + line)
        return
    t0 = time.perf_counter()
    results = []
    for name in names:
        print(f"{name} ...", flush=True)
        data, _ = load_any(name)
        results.append(run_set(name, args.big_folds if data.n_queries > args.big else args.folds, embedder, extra,
                               args.task_at_serving))
    total = time.perf_counter() - t0
    lines = ["## The job's router vs the published routers"
             + (", task tags known at serving (`task_at_serving: true`)" if args.task_at_serving else ""), ""]
    lines += [f"- {verdict(n, rows)}" for n, _, rows, _ in results] + [""]
    for res in results:
        lines += table(*res) + [""]
    lines += [
        "Quality: mean held-out score of the chosen model at lambda 0 (accuracy on 0/1 sets). Gap closed: "
        "(router - best single) / (oracle - best single), best single chosen on train. minus job: paired "
        "bootstrap over held-out queries (2,000 resamples) of the row's per-query score minus the job's. "
        "The job row is what `router train` would ship (the gate may replace the selected router by the "
        "best single model); the candidate rows are every family the job fitted (default candidates plus "
        "--extra), with their fit seconds, losers included. Peers: see `benchmarks/peers.py` for what each faithful version keeps and changes.",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_peers.py --sets {','.join(names)} "
        f"--folds {args.folds} --big-folds {args.big_folds} --big {args.big} --extra {args.extra}"
        f"{' --task-at-serving --section ' + args.section if args.task_at_serving else ''}` on {machine()}; "
        f"{total / 60:.1f} min in all.",
    ]
    body = "\n".join(lines)
    publish(args.section, body, write=not args.no_write)


if __name__ == "__main__":
    main()
