"""Router quality on four real data sets: every family side by side.

    .venv/bin/python benchmarks/bench_routers.py [--sets mmlu_pro,routerbench,nq,routellm_mmlu] [--routers ...]

- mmlu_pro: 12,032 questions x the 27 models complete on all of them, seeded 70/30 split by query;
- routerbench: the RouterBench subset with its own train/test files and real $ cost;
- nq: LLMRouter's NQ (the bundled sample), seeded 70/30, real $ cost;
- routellm_mmlu: RouteLLM's MMLU logs, GPT-4 vs Mixtral (two models), seeded 70/30.
Prints one table per set (test quality, gap closed, AIQ where costs exist, fit and predict time)
and the cost target on RouterBench (cheapest curve point reaching the best single model's
quality, as a share of its cost); writes it all to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import machine, write_section  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from router.data.readers.wide import WideSpec, scan_wide
from router.data.scan import scan_logs  # noqa: E402
from pipelines.config import JobConfig, RouterSpec  # noqa: E402
from router.embed import Embedder, EmbeddingCache, embed_with_cache  # noqa: E402
from pipelines.experiment import run_experiment  # noqa: E402
from router.data.labels import RoutingData, build_routing_data  # noqa: E402

CACHE = EmbeddingCache(ROOT / ".cache" / "bench-embeddings")
ALL = ["best_single", "random", "knn", "ridge", "logistic", "lgbm", "classifier", "mf", "ensemble"]


def load(name: str) -> RoutingData:
    if name == "mmlu_pro":
        spec = WideSpec(id_column="question_id", prompt_column="question", task_column="category",
                                prompts_file=str(shared_data("mmlu_pro", "questions.csv.gz")))
        d = build_routing_data(scan_wide(shared_data("mmlu_pro", "correct_wide.csv.gz"), spec))
        return d.select_models(d.complete_models())
    if name == "routerbench":
        # sample_id repeats across 14 different prompts in this subset: key on the unique row index
        return build_routing_data(scan_logs(shared_data("routerbench_subset", "routerbench_zs"),
                                                    wide=WideSpec(id_column="")))
    if name == "nq":
        return build_routing_data(scan_logs(ROOT / "data" / "nq_sample.jsonl"))
    if name == "routellm_mmlu":
        lf = scan_wide(str(shared_data("routellm", "mmlu") / "mmlu_*.csv"),
                               WideSpec(id_column="prompt", task_column=None))
        return build_routing_data(lf.unique(subset=["query_id", "model"], keep="first"))
    raise ValueError(f"unknown set {name!r}")


def cost_target(exp, label: str) -> str:
    """Cheapest point of the router's curve at >= the best single model's quality, vs its cost."""
    b = exp.report.baselines
    best_q, best_c = b.single_quality[b.best_single], b.single_cost[b.best_single]
    curve = exp.fitted[label].result.curve
    ok = [(c, q) for c, q in zip(curve["cost"], curve["quality"]) if q >= best_q]
    if not ok:
        return f"{label}: no point of its curve reaches the best single quality {best_q:.3f}"
    c, q = min(ok)
    return (f"{label}: quality {q:.3f} >= best single {best_q:.3f} at ${c:.5f}/query = "
            f"**{c / best_c:.0%} of the best single model's cost** (${best_c:.5f})")


def run_set(name: str, routers: list[str]) -> str:
    t = time.perf_counter()
    data = load(name)
    X, st = embed_with_cache(Embedder(show_progress=False), data.prompts, CACHE)
    load_s = time.perf_counter() - t
    job = JobConfig(routers=[RouterSpec(family=r) for r in routers])
    exp = run_experiment(data, X, job)
    b = exp.report.baselines
    has_cost = b.has_cost
    head = "| router | test quality | gap closed (95% CI) | " + ("AIQ | cost $/query | " if has_cost else "") + \
        "fit s | predict ms |"
    lines = [f"### {name}: {data.n_queries:,} queries x {data.n_models} models; {exp.split.how}",
             "",
             f"best single (train) {b.models[b.best_single]} {b.single_quality[b.best_single]:.3f}; "
             f"oracle {b.oracle_quality:.3f}; random {b.random_quality:.3f}; "
             f"test {b.n_eval:,} evaluated ({b.n_dropped_incomplete} incomplete dropped). "
             f"Data + embeddings {load_s:.0f}s ({st.embedded:,} embedded, {st.reused:,} cached).",
             "", head, "|" + "---|" * (head.count("|") - 1)]
    best = max(exp.fitted, key=lambda k: exp.fitted[k].result.quality if k not in ("best_single", "random") else -1)
    for label, f in exp.fitted.items():
        r = f.result
        lo, hi = r.ci["gap_closed"]
        row = f"| {'**' + label + '**' if label == best else label} | {r.quality:.4f} | " \
              f"{r.gap_closed:+.1%} ({lo:+.1%}, {hi:+.1%}) | "
        if has_cost:
            row += f"{r.aiq:.4f} | {r.cost:.6f} | "
        row += f"{f.fit_seconds:.1f} | {f.predict_seconds * 1e3:.1f} |"
        lines.append(row)
    if len(b.models) == 2:
        lines += ["", "APGR / CPT(50%) / CPT(80%): " + "; ".join(
            f"{k} {f.result.apgr:.3f} / {f.result.cpt50:.1%} / {f.result.cpt80:.1%}"
            for k, f in exp.fitted.items() if f.result.apgr is not None)]
    if has_cost:
        lines += ["", "Cost target: " + cost_target(exp, best)]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="mmlu_pro,routerbench,nq,routellm_mmlu")
    ap.add_argument("--routers", default=",".join(ALL))
    args = ap.parse_args()
    routers = [r for r in args.routers.split(",") if r]
    parts = [run_set(s, routers) for s in args.sets.split(",") if s]
    cmd = f".venv/bin/python benchmarks/bench_routers.py --sets {args.sets} --routers {args.routers}"
    write_section("routers", "\n\n".join([
        "## Router quality on real data",
        f"Command: `{cmd}` on {machine()}. Gap closed = (router - best single) / (oracle - best single), "
        "best single chosen on the training split; bold = best learned router by test quality.",
        *parts]))


if __name__ == "__main__":
    main()
