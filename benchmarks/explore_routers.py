"""Exploration benchmark for the router families: test quality, gap closed, fit/predict times.

    .venv/bin/python benchmarks/explore_routers.py [--data mmlu_pro routerbench nq] [--only NAME ...]

mmlu_pro: the 27 models complete on all 12,032 questions, seeded 70/30 split by query
(np.random.default_rng(0).permutation). routerbench: its own train/test files. nq: the bundled
500-query sample, same seeded 70/30 split. Hyper-parameters are chosen inside each router by CV
on the training rows only; the test rows are touched once, for the numbers printed here.
gap closed = (router - best single) / (oracle - best single), best single = best TRAINING mean.
Results are appended as JSON lines to benchmarks/explore_results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.shared import shared_data  # noqa: E402

CACHE = ROOT / ".cache" / "bench-embeddings"


def load(name: str, seed: int = 0):
    """(RoutingData, X, train rows, test rows) for a benchmark dataset; ``seed`` draws the 70/30
    split where the data has no fixed one."""
    from router.data.readers.wide import WideSpec, scan_wide
    from router.data.scan import scan_logs
    from router.data import labels
    from router.embed import Embedder, EmbeddingCache, embed_with_cache

    if name == "mmlu_pro":
        spec = WideSpec(id_column="question_id", prompt_column="question", task_column="category",
                                prompts_file=str(shared_data("mmlu_pro", "questions.csv.gz")))
        d = labels.build_routing_data(scan_wide(shared_data("mmlu_pro", "correct_wide.csv.gz"), spec))
        d = d.select_models(d.complete_models())
    elif name == "routerbench":
        d = labels.build_routing_data(scan_logs(shared_data("routerbench_subset", "routerbench_zs"),
                                                        wide=WideSpec(id_column="")))
    elif name == "nq":
        d = labels.build_routing_data(scan_logs(ROOT / "data" / "nq_sample.jsonl"))
    else:
        raise ValueError(f"unknown dataset {name!r}")
    X, _ = embed_with_cache(Embedder(), d.prompts, EmbeddingCache(CACHE))
    if d.splits is not None and name == "routerbench":
        tr, te = np.flatnonzero(d.splits == "train"), np.flatnonzero(d.splits == "test")
    else:
        perm = np.random.default_rng(seed).permutation(d.n_queries)
        cut = int(round(0.7 * d.n_queries))
        tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    return d, X, tr, te


def quality(Y, M, S) -> float:
    from router.routers._common import routing_quality

    return routing_quality(Y, M, S)


def configs(d):
    """(label, features, router factory): features "emb" or "emb+task" (task one-hot appended)."""
    from router.routers import make_router

    def ens(*names, **params):
        return lambda: make_router("ensemble", routers=[(n, make_router(n)) for n in names], **params)

    out = [
        ("best_single", "emb", lambda: make_router("best_single")),
        ("random", "emb", lambda: make_router("random")),
        # The classic tuned kNN: k and uniform/cosine weighting by CV, light shrinkage.
        ("knn_classic", "emb", lambda: make_router("knn", n_neighbors=(10, 20, 50, 100, 200),
                                                   weighting=("uniform", "similarity"), prior_weight=1.0)),
        ("knn", "emb", lambda: make_router("knn")),
        ("ridge", "emb", lambda: make_router("ridge")),
        ("ridge_per_model_centred", "emb", lambda: make_router("ridge", alpha_per_model=True, target="centred")),
        ("logistic", "emb", lambda: make_router("logistic")),
        ("lgbm", "emb", lambda: make_router("lgbm")),
        ("lgbm_raw", "emb", lambda: make_router("lgbm", target="raw")),
        ("classifier_hard", "emb", lambda: make_router("classifier", label="hard")),
        ("classifier", "emb", lambda: make_router("classifier")),
        ("classifier_balanced", "emb", lambda: make_router("classifier", class_weight="balanced")),
        ("mf", "emb", lambda: make_router("mf")),
        ("ensemble", "emb", lambda: make_router("ensemble")),
        ("ensemble_equal", "emb", lambda: make_router("ensemble", weights="equal", shrink=0.0)),
        ("ensemble_rank", "emb", lambda: make_router("ensemble", normalise="rank")),
        ("ensemble_all", "emb", ens("knn", "ridge", "lgbm", "logistic", "classifier", "mf")),
    ]
    if d.tasks is not None and len(np.unique(d.tasks)) > 1:
        out += [(f"{label}+task", "emb+task", f) for label, _, f in out
                if label in ("knn", "ridge", "lgbm", "logistic", "ensemble")]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["mmlu_pro", "routerbench", "nq"])
    parser.add_argument("--only", nargs="*", default=None, help="config labels to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="split seeds (mmlu_pro, nq)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "explore_results.jsonl"))
    args = parser.parse_args()

    from threadpoolctl import threadpool_limits

    from router.routers.features import TaskOneHot

    # One BLAS thread: on the shared 2-core machine a 2-thread OpenBLAS under load is 10-40x slower.
    threadpool_limits(1)
    for name, seed in [(n, s) for n in args.data for s in (args.seeds if n != "routerbench" else [0])]:
        d, X, tr, te = load(name, seed)
        Y, M, C = d.scores, d.mask, d.costs
        means = np.nanmean(np.where(M[tr], Y[tr], np.nan), axis=0)
        best = int(np.nanargmax(means))
        bs = quality(Y[te], M[te], np.broadcast_to(np.eye(d.n_models)[best], (len(te), d.n_models)))
        orc = quality(Y[te], M[te], np.where(M[te], Y[te], -np.inf))
        print(f"\n== {name} (split seed {seed}): {d.n_queries} queries x {d.n_models} models, "
              f"train {len(tr)} / test {len(te)}; best single {d.models[best]} test {bs:.4f}, oracle {orc:.4f}",
              flush=True)
        feats = {"emb": (X[tr], X[te])}
        if d.tasks is not None:
            enc = TaskOneHot().fit(d.tasks[tr])
            feats["emb+task"] = (enc.transform(X[tr], d.tasks[tr]), enc.transform(X[te], d.tasks[te]))
        for label, feat, factory in configs(d):
            if args.only and label not in args.only:
                continue
            Xtr, Xte = feats[feat]
            router = factory()
            t0 = time.perf_counter()
            router.fit(Xtr, Y[tr], C[tr], M[tr])
            t1 = time.perf_counter()
            S = router.predict_scores(Xte)
            t2 = time.perf_counter()
            router.predict_scores(Xte[:1])
            t3 = time.perf_counter()
            q = quality(Y[te], M[te], S)
            row = {"data": name, "seed": seed, "router": label, "test_quality": round(q, 4),
                   "best_single": round(bs, 4), "oracle": round(orc, 4), "gap_closed": round((q - bs) / (orc - bs), 4),
                   "fit_s": round(t1 - t0, 2), "predict_s": round(t2 - t1, 3),
                   "predict_one_ms": round(1e3 * (t3 - t2), 2),
                   "chosen": {k: _plain(v) for k, v in getattr(router, "best_params_", {}).items()}}
            extra = ""
            if d.has_cost:
                row["half_cost"] = half_cost_quality(router, S, Y[te], M[te], C[te], C[tr][:, best])
                extra = f"  | at <=50% of best-single cost: {row['half_cost']:.4f}"
            print(f"{label:28s} quality {q:.4f}  gap closed {row['gap_closed']:+.3f}  fit {row['fit_s']:7.2f}s  "
                  f"predict {row['predict_s']:.3f}s ({row['predict_one_ms']:.1f} ms/1){extra}", flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


def half_cost_quality(router, S, Y, M, C, best_train_costs) -> float:
    """Best test quality over a lam sweep among routings whose mean test $ cost is at most half the
    best single model's (a point of the cost-quality curve; for best_single it is the best cheaper
    fixed model). Unknown per-call costs count at the model's mean training cost."""
    budget = 0.5 * float(np.nanmean(best_train_costs))
    cost = np.where(np.isfinite(C), C, router.model_costs_)
    feasible = []
    rows = np.arange(len(S))
    for lam in np.concatenate([[0.0], np.logspace(-3, 3, 61) / budget]):
        pick = np.argmax(np.where(M, S - lam * router.model_costs_, -np.inf), axis=1)
        if cost[rows, pick].mean() <= budget:
            feasible.append(float(Y[rows, pick].mean()))
    return round(max(feasible), 4) if feasible else float("nan")


def _plain(v):
    if isinstance(v, np.ndarray):
        return [float(x) for x in np.unique(v)]
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v if isinstance(v, (int, float, str, bool, type(None), tuple, list)) else repr(v)


if __name__ == "__main__":
    main()
