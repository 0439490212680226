"""A new model from N answers: probe-chosen vs random queries (issue 25; a first measurement, ridge router).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probe.py [--sets nq,routerbench] [--seeds 3]

On each set with at least five models, each model in turn is withheld: a ridge router is fitted on the
training split (a) without it, (b) knowing all its training answers, and (c) knowing only N of them
(N = 50, 100, 200, 500), chosen by ``router probe`` (``pipelines.probe.choose_probes`` over the training
queries: a sample stratified by k-means clusters of the embeddings) or at random, ``--seeds`` draws of
each. Each routes the held-out split at lam 0; the table reports, over the withheld models whose full
knowledge changes held-out quality by at least 0.002, the mean share of (b)'s gain over (a) that (c) recovers, with
a 95% bootstrap interval over those models. This is the ridge family alone,
not the whole job (selection, gate): a proxy for what the job would recover. Writes the ``probe`` section.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_routers import CACHE, load  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.probe import choose_probes, random_probes  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.evaluation.splits import split_queries  # noqa: E402
from router.routers import RidgeRouter  # noqa: E402

SIZES = (50, 100, 200, 500)
MIN_GAIN = 0.002


def held_out_quality(X, data, train, test, mask) -> float:
    """Mean held-out score of the ridge router fitted with ``mask`` on the training rows, at lam 0."""
    router = RidgeRouter().fit(X[train], data.scores[train], data.costs[train], mask[train])
    picks = router.route(X[test], lam=0.0)
    return float(data.scores[test, picks].mean())


def run_set(name: str, seeds: int, embedder: Embedder) -> list[dict]:
    data = load(name)
    data = data.subset(np.flatnonzero(data.mask.all(axis=1)))  # every model scored: full knowledge is known
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    split = split_queries(data, test_size=0.3, seed=0)
    train, test = split.train, split.test
    rows = []
    for j, model in enumerate(data.models):
        without = data.mask.copy()
        without[:, j] = False
        keep = [k for k in range(data.n_models) if k != j]
        sub = data.select_models([data.models[k] for k in keep])
        q0 = held_out_quality(X, sub, train, test, sub.mask)
        q_full = held_out_quality(X, data, train, test, data.mask)
        row = {"set": name, "model": model, "gain": q_full - q0, "recovered": {}}
        for n in SIZES:
            if n > len(train):
                continue
            chosen = {"probe": [train[choose_probes(X[train], data.subset(train), n, seed=s)] for s in range(seeds)],
                      "random": [train[random_probes(n, data.subset(train), seed=s)] for s in range(seeds)]}
            for how, draws in chosen.items():
                values = []
                for picked in draws:
                    mask = without.copy()
                    mask[picked, j] = True
                    values.append(held_out_quality(X, data, train, test, mask))
                row["recovered"][(n, how)] = (np.mean(values) - q0) / row["gain"] if row["gain"] else np.nan
        rows.append(row)
        print(f"{name} {model}: gain {row['gain']:+.4f}", {k: round(v, 2) for k, v in row["recovered"].items()},
              flush=True)
    return rows


def interval(values: list[float], seed: int = 0) -> str:
    v = np.asarray(values)
    boot = np.random.default_rng(seed).choice(v, size=(2000, len(v))).mean(axis=1)
    return f"{v.mean():.0%} [{np.quantile(boot, 0.025):.0%}, {np.quantile(boot, 0.975):.0%}]"


def table(rows: list[dict], args) -> str:
    lines = [
        "## A new model from N answers: probe-chosen vs random (ridge router)",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_probe.py --sets {args.sets} --seeds "
        f"{args.seeds}` on {machine()}. Each model withheld in turn; queries every model scored; split seed 0 "
        f"(30% held out). Share of the full-knowledge gain recovered with N of the withheld model's training "
        f"answers, mean over the withheld models whose full knowledge changes held-out quality by >= {MIN_GAIN} "
        "(95% bootstrap interval over those models), each the mean of the seeds' draws. A proxy: the ridge family "
        "alone at lam 0, not the job; and with one model per set whose knowledge changes routing, not yet evidence "
        "either way (issue 25 is open).",
        "",
        "| set | models that change routing | N | probe | random |",
        "|---|---|---|---|---|",
    ]
    for name in args.sets.split(","):
        moving = [r for r in rows if r["set"] == name and r["gain"] >= MIN_GAIN]
        for n in SIZES:
            if not moving or (n, "probe") not in moving[0]["recovered"]:
                continue
            cells = [interval([r["recovered"][(n, how)] for r in moving]) for how in ("probe", "random")]
            lines.append(f"| {name} | {len(moving)} of {sum(r['set'] == name for r in rows)} | {n} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="nq,routerbench")
    ap.add_argument("--seeds", type=int, default=5, help="draws per N and strategy")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    embedder = Embedder(show_progress=False)
    rows = [r for name in args.sets.split(",") for r in run_set(name, args.seeds, embedder)]
    publish("probe", table(rows, args), write=not args.no_write)


if __name__ == "__main__":
    main()
