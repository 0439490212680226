"""A new model from N answers: the job with N probe-chosen vs N random answers of a withheld model (issue 25).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probe.py [--sets nq,routerbench,...] [--seeds 3]

On each set with at least five models (queries every model answered; above ``--max-queries`` a seeded sample),
the job (``run_experiment``: its selection, sparse-model estimates, min_answers rule and gate; the candidate
families of ``--routers``, objective quality) runs on one split (seed 0, 30% held out):

- (b) knowing every answer of every model, once per set;
- (a) without model j, for each j that may change routing: every model on sets of up to ``--screen-above``
  models, else those a ridge router's held-out quality depends on (a cheap screen: it gains >= MIN_GAIN
  from knowing j) plus the best single model;
- (c) with only N of j's answers (N = 50, 100, 200, 500), chosen by ``router probe`` (``choose_probes``)
  or at random from all queries, ``--seeds`` draws each, for each j whose full knowledge gains >= MIN_GAIN.

Every run's exported router routes the held-out queries and is scored with the true scores. The table gives,
over those models and draws, the mean share of (b)'s gain over (a) that (c) recovers, with a 95% interval
from resampling the held-out queries (paired: every run on the same resample). Writes the ``probe`` section.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_routers import CACHE, load  # noqa: E402
from benchmarks.bench_selection import load_set  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.config import JobConfig  # noqa: E402
from pipelines.experiment import run_experiment, split_data  # noqa: E402
from pipelines.probe import choose_probes, random_probes  # noqa: E402
from router.data.labels import RoutingData  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.routers import RidgeRouter  # noqa: E402

SIZES = (50, 100, 200, 500)
MIN_GAIN = 0.002
HOW = ("probe", "random")


def load_complete(name: str, max_queries: int) -> RoutingData:
    data = load_set(name)[0] if name in ("zeroeval", "theoremqa") else load(name)
    data = data.subset(np.flatnonzero(data.mask.all(axis=1)))  # every model scored: full knowledge is known
    if data.n_queries > max_queries:
        data = data.subset(np.sort(np.random.default_rng(0).choice(data.n_queries, max_queries, replace=False)))
    return data


def held_out_scores(data: RoutingData, X: np.ndarray, job: JobConfig, test: np.ndarray,
                    truth: RoutingData | None = None) -> np.ndarray:
    """Per held-out query, the true score (``truth``'s, by default ``data``'s) of the model the job's exported
    router, fitted on ``data``, picks."""
    exp = run_experiment(data, X, job)
    data = data if truth is None else truth
    if not np.array_equal(np.sort(exp.split.test), np.sort(test)) or len(exp.eval_rows) != len(test):
        raise RuntimeError("the job evaluated other held-out queries than the benchmark's split")
    picks = np.array([data.models.index(m) for m in exp.test.models])[exp.fitted[exp.exported].result.choices]
    order = np.argsort(exp.split.test)
    return np.take_along_axis(data.scores[exp.split.test], picks[:, None], axis=1)[:, 0][order]


def with_answers(data: RoutingData, j: int, rows: np.ndarray) -> RoutingData:
    mask = data.mask.copy()
    mask[:, j] = False
    mask[rows, j] = True
    return replace(data, mask=mask, scores=np.where(mask, data.scores, np.nan),
                   costs=np.where(mask, data.costs, np.nan))


def screen(data: RoutingData, X: np.ndarray, train: np.ndarray, test: np.ndarray, limit: int) -> list[int]:
    """The models whose withholding may change the job's routing (every one on small pools)."""
    if data.n_models <= limit:
        return list(range(data.n_models))
    def ridge_quality(d: RoutingData) -> float:
        r = RidgeRouter().fit(X[train], d.scores[train], d.costs[train], d.mask[train])
        return float(np.take_along_axis(d.scores[test], r.route(X[test])[:, None], axis=1).mean())
    full = ridge_quality(data)
    best = int(np.argmax(data.scores[train].mean(axis=0)))
    keep = [j for j in range(data.n_models)
            if j == best or full - ridge_quality(data.select_models(
                [m for k, m in enumerate(data.models) if k != j])) >= MIN_GAIN]
    return keep


def run_set(name: str, args, embedder: Embedder) -> dict:
    data = load_complete(name, args.max_queries)
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    job = JobConfig(routers=[{"family": f} for f in args.routers.split(",")], objective="quality")
    split = split_data(data, job)  # the job's own (RouterBench's logs carry a split column)
    test = np.sort(split.test)
    t0 = time.perf_counter()
    full = held_out_scores(data, X, job, test)
    out = {"set": name, "n": data.n_queries, "models": data.n_models, "test": len(test), "runs": {}, "gain": {}}
    for j in screen(data, X, split.train, test, args.screen_above):
        others = [m for k, m in enumerate(data.models) if k != j]
        without = held_out_scores(data.select_models(others), X, job, test)
        gain = full.mean() - without.mean()
        out["gain"][data.models[j]] = gain
        print(f"{name} {data.models[j]}: full-knowledge gain {gain:+.4f}", flush=True)
        if gain < MIN_GAIN:
            continue
        for n in SIZES:
            for s in range(args.seeds):
                picks = {"probe": choose_probes(X, data, n, seed=s), "random": random_probes(n, data, seed=s)}
                for how in HOW:
                    got = held_out_scores(with_answers(data, j, picks[how]), X, job, test, truth=data)
                    out["runs"].setdefault((n, how), []).append((without, full, got))
            print(f"  N={n}: " + ", ".join(f"{how} {share(out['runs'][(n, how)]):.0%}" for how in HOW), flush=True)
    out["seconds"] = time.perf_counter() - t0
    return out


def share(runs: list, idx: np.ndarray | None = None) -> float:
    """Mean over runs of (c - a) / (b - a), each on the held-out queries ``idx`` (all by default)."""
    vals = []
    for a, b, c in runs:
        a, b, c = (v if idx is None else v[idx] for v in (a, b, c))
        gain = b.mean() - a.mean()
        vals.append((c.mean() - a.mean()) / gain if gain > 0 else np.nan)
    return float(np.nanmean(vals)) if not np.all(np.isnan(vals)) else float("nan")


def interval(runs: list, n_test: int, n_boot: int = 500, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    boots = [share(runs, rng.integers(0, n_test, n_test)) for _ in range(n_boot)]
    lo, hi = np.nanquantile(boots, [0.025, 0.975])
    return f"{share(runs):.0%} [{lo:.0%}, {hi:.0%}]"


def table(results: list[dict], args) -> str:
    lines = [
        "## A new model from N answers: the job with probe-chosen vs random answers",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probe.py --sets {args.sets} --seeds "
        f"{args.seeds} --routers {args.routers} --max-queries {args.max_queries}` on {machine()}. The job "
        "(`run_experiment`: selection, the sparse-model estimates, `min_answers` 100 and the gate; objective "
        "quality; those candidate families) on queries every model answered, the job's split (seed 0, 30% held out; "
        "RouterBench's logs carry their own). "
        "Each model that may change routing withheld in turn (on pools over "
        f"{args.screen_above} models, those a ridge router gains >= {MIN_GAIN} from, and the best single model); "
        f"those whose full knowledge raises the exported router's held-out quality by >= {MIN_GAIN} get N of "
        "their answers, chosen by `router probe` or at random, over all queries. Share of the full-knowledge gain "
        "recovered, mean over those models and the draws, 95% interval from resampling held-out queries. "
        "Below 100 answers in the training split the job holds the model back: it recovers nothing by design.",
        "",
        "| set | queries x models | models that change routing (of screened) | N | probe | random |",
        "|---|---|---|---|---|---|",
    ]
    pooled: dict = {}
    for r in results:
        moving = sum(g >= MIN_GAIN for g in r["gain"].values())
        for n in SIZES:
            if (n, "probe") not in r["runs"]:
                continue
            cells = [interval(r["runs"][(n, how)], r["test"]) for how in HOW]
            lines.append(f"| {r['set']} | {r['n']:,} x {r['models']} | {moving} of {len(r['gain'])} | {n} | "
                         + " | ".join(cells) + " |")
            for how in HOW:
                pooled.setdefault((n, how), []).extend(share([run]) for run in r["runs"][(n, how)])
    lines += ["", "Over every set (mean of the per-model, per-draw shares; the spread is over those):", "",
              "| N | probe | random |", "|---|---|---|"]
    for n in SIZES:
        if (n, "probe") in pooled:
            lines.append(f"| {n} | " + " | ".join(
                f"{np.nanmean(pooled[(n, h)]):.0%} (sd {np.nanstd(pooled[(n, h)]):.0%}, {len(pooled[(n, h)])} runs)"
                for h in HOW) + " |")
    lines += ["", "Full-knowledge gains (held-out quality with all of the model's answers minus without it): "
              + "; ".join(f"{r['set']}: " + ", ".join(f"{m} {g:+.4f}" for m, g in r["gain"].items())
                          for r in results)]
    lines += ["", "Seconds per set: " + ", ".join(f"{r['set']} {r['seconds']:.0f}" for r in results)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="nq,routerbench,zeroeval,mmlu_pro")
    ap.add_argument("--seeds", type=int, default=3, help="draws per N and strategy")
    ap.add_argument("--routers", default="best_single,ridge,knn,classifier")
    ap.add_argument("--max-queries", type=int, default=3000)
    ap.add_argument("--screen-above", type=int, default=11, help="pools above this many models are screened")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    embedder = Embedder(show_progress=False)
    results = [run_set(name, args, embedder) for name in args.sets.split(",")]
    publish("probe", table(results, args), write=not args.no_write)


if __name__ == "__main__":
    main()
