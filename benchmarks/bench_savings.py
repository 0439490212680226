"""Route for the money: what the default job ships on every priced set, and what it saves.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_savings.py [--sets demo,routerbench,nq] [--seeds 0]

Priced sets (real $ per call, or token counts at list prices):
- demo: the bundled sample (data/mmlu_pro_sample.jsonl.gz: 6,000 MMLU-Pro questions x GPT-4o and
  two Gemini models, $ from token counts at list prices);
- routerbench: the RouterBench subset in ../shared/data (11 models, real $, its own train/test split);
- nq: the NQ sample (LLMRouter, 6 models, real $).

Each set runs ``run_experiment`` with the default ``JobConfig()`` (objective auto: savings, margin 0.01,
min_savings 0.05; every default candidate; the gate on the held-out split and the training queries
cross-fitted). Reported per set: what ships and the decision line; on the held-out split, the shipped
router's quality and cost against the best single model (chosen on train); whether it stays within the
margin there; and, for comparison, the cheapest point of any candidate's held-out lambda sweep within the
margin (what an oracle choice of router and lambda would have saved: an upper reference, not a target the
job can see). Targets (issue 23): on RouterBench a router with held-out quality >= 99% of GPT-4's at <= 40%
of its cost; on every set never below best single x (1 - margin) on held-out queries, and >= 30% saved
wherever the sweep shows such a point. Writes the ``savings`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_routers import CACHE, load  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.config import SAMPLE_LOGS, JobConfig  # noqa: E402
from pipelines.experiment import run_experiment  # noqa: E402
from router.data.labels import build_routing_data  # noqa: E402
from router.data.scan import scan_logs  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402

SETS = ("demo", "routerbench", "nq")


def load_set(name: str):
    if name == "demo":
        return build_routing_data(scan_logs(SAMPLE_LOGS))
    if name in ("routerbench", "nq"):
        return load(name)
    raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")


def sweep_saving(exp, margin: float) -> tuple[str, float]:
    """The cheapest held-out lambda-sweep point of any candidate with quality >= best single x (1 - margin):
    (router, cost as a share of the best single model's)."""
    b = exp.report.baselines
    q0, c0 = b.single_quality[b.reference], b.single_cost[b.reference]
    best = ("-", 1.0)
    for label, f in exp.fitted.items():
        for q, c in zip(f.result.curve["quality"], f.result.curve["cost"]):
            if q >= q0 - margin * abs(q0) and c / c0 < best[1]:
                best = (label, c / c0)
    return best


def run_set(name: str, seed: int, embedder: Embedder) -> dict:
    data = load_set(name)
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    start = time.perf_counter()
    exp = run_experiment(data, X, JobConfig(split={"seed": seed}))
    seconds = time.perf_counter() - start
    b = exp.report.baselines
    q0, c0 = b.single_quality[b.reference], b.single_cost[b.reference]
    r = exp.fitted[exp.exported].result
    sweep_router, sweep_share = sweep_saving(exp, exp.goal.margin)
    row = {"set": name, "seed": seed, "queries": data.n_queries, "models": data.n_models, "kind": exp.goal.kind,
           "ships": exp.exported, "best": b.models[b.reference], "q0": q0, "c0": c0, "q": r.quality, "c": r.cost,
           "within": r.quality >= q0 - exp.goal.margin * abs(q0), "decision": exp.decision, "seconds": seconds,
           "sweep": (sweep_router, sweep_share), "gate_n": exp.gate.n if exp.gate else 0}
    print(f"{name} seed {seed}: {exp.decision} ({seconds:.0f}s)", flush=True)
    return row


def table(rows: list[dict], args) -> str:
    lines = [
        "## Savings: what the default job ships on the priced sets",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_savings.py --sets {args.sets} "
        f"--seeds {args.seeds}` on {machine()}. The default `JobConfig()` (objective savings: the cheapest "
        "operating point within 1% of the best single model's quality, shipped only if the gate's lower bounds "
        "of the quality difference and of the saving, on the held-out split plus the training queries "
        "cross-fitted, clear -1% and 5%). Held-out: the shipped router against the best single model chosen on "
        "train, on the held-out split. Sweep: the cheapest held-out lambda-sweep point of any candidate within "
        "the margin, as a share of the best single model's cost (an upper reference the job cannot see: it "
        "picks the router and the lambda on the held-out queries themselves).",
        "",
        "| set | split seed | queries x models | ships | held-out quality vs best single | held-out cost share | "
        "within the margin | sweep: cheapest within the margin | gate queries | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['set']} | {r['seed']} | {r['queries']:,} x {r['models']} | {r['ships']} | "
                     f"{r['q']:.4f} vs {r['q0']:.4f} ({r['best']}) | {r['c'] / r['c0']:.0%} | "
                     f"{'yes' if r['within'] else '**no**'} | {r['sweep'][0]} at {r['sweep'][1]:.0%} | "
                     f"{r['gate_n']:,} | {r['seconds']:.0f} |")
    lines += ["", "Decision lines:", ""]
    lines += [f"- {r['set']} (seed {r['seed']}): {r['decision']}" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", default="0", help="comma-separated split seeds")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    embedder = Embedder(show_progress=False)
    rows = [run_set(name, int(seed), embedder) for name in args.sets.split(",") for seed in args.seeds.split(",")]
    publish("savings", table(rows, args), write=not args.no_write)


if __name__ == "__main__":
    main()
