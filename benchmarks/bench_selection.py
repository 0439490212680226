"""Router selection on real data: does cross-validation on the training split pick the router that
wins on the held-out split, does the gate stop routers that do not pay, and what does routing buy at
matched spend.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_selection.py [--sets mmlu_pro,...] [--folds 5]
        [--big-folds 3 --big 10000]

Sets (all in ../shared/data, see ``benchmarks.shared``):
- mmlu_pro, routerbench, nq, routellm_mmlu: the loaders of ``benchmarks/bench_routers.py``;
- mmlu_pro_no_top: MMLU-Pro without its dominant model (the best single model by mean over all its
  queries, gpt4o_repo_json), a harder pool where the best single model is less far ahead;
- theoremqa: TheoremQA, 800 questions x 14 model/prompting setups (MIT), no cost;
- zeroeval: ZeroEval GSM8K + MATH level 5 + CRUXEval-O, 2,840 questions x 27 models (Apache-2.0), no cost.
theoremqa, zeroeval and routerbench carry their own train/test split column, which the job uses; the
others use the job's default split (a hash of query ids, test_size 0.3, seed 0).

Each set runs ``pipelines.experiment.run_experiment`` with the default ``JobConfig()`` candidates and
``export_router: auto`` (nested K-fold selection on the training split, then the baseline gate on the
held-out split). Writes the section "selection" of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_routers import CACHE, load  # noqa: E402
from benchmarks.results import machine, write_section  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from pipelines.config import JobConfig, SelectionConfig  # noqa: E402
from pipelines.experiment import run_experiment  # noqa: E402
from pipelines.result import Experiment  # noqa: E402
from pipelines.gate import BASELINE, paired_gain  # noqa: E402
from router.data.scan import scan_logs  # noqa: E402
from router.data.labels import RoutingData, build_routing_data, model_means  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.evaluation.curves import cost_at_quality, quality_at_cost, single_model_hull_quality  # noqa: E402

SETS = ["mmlu_pro", "mmlu_pro_no_top", "routerbench", "nq", "routellm_mmlu", "theoremqa", "zeroeval"]
TIE = 1e-12  # held-out qualities closer than this are tied


def load_long(*parts: str) -> RoutingData:
    """A canonical long Parquet file (query_id, prompt, model, score, [cost, task, split]); extra
    columns (theoremqa's subfield, zeroeval's output_chars) are not canonical and are left out."""
    return build_routing_data(scan_logs(shared_data(*parts), format="long"))


def load_set(name: str) -> tuple[RoutingData, str]:
    """The set's routing data and a note on how it was made."""
    if name == "mmlu_pro_no_top":
        data = load("mmlu_pro")
        means = model_means(data.scores, data.mask)
        top = int(np.nanargmax(means))
        keep = [m for i, m in enumerate(data.models) if i != top]
        return data.select_models(keep), f"without {data.models[top]} (best mean over all queries, {means[top]:.3f})"
    if name == "theoremqa":
        return load_long("theoremqa", "theoremqa_long.parquet"), "no cost"
    if name == "zeroeval":
        return load_long("zeroeval", "zeroeval_long.parquet"), "no cost (output_chars not used)"
    if name not in SETS:
        raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")
    return load(name), ""


@dataclass
class SetResult:
    name: str
    note: str
    data: RoutingData
    exp: Experiment
    folds: int
    load_s: float
    run_s: float
    fit_s: float  # the final fits of all candidates (the rest of run_s is selection + evaluation)


def run_set(name: str, folds_for, embedder: Embedder) -> SetResult:
    """One set through the job; ``folds_for(n_queries)`` is the number of selection folds."""
    t = time.perf_counter()
    data, note = load_set(name)
    folds = folds_for(data.n_queries)
    X, st = embed_with_cache(embedder, data.prompts, CACHE)
    load_s = time.perf_counter() - t
    job = JobConfig(export_router="auto", selection=SelectionConfig(folds=folds))
    t = time.perf_counter()
    exp = run_experiment(data, X, job)
    run_s = time.perf_counter() - t
    res = SetResult(name, note, data, exp, folds, load_s, run_s, sum(f.fit_seconds for f in exp.fitted.values()))
    print(f"{name}: {data.n_queries:,} x {data.n_models}, load+embed {load_s:.0f}s ({st.embedded:,} embedded), "
          f"run_experiment {run_s:.0f}s; selected {exp.selected}, ships {exp.exported}", flush=True)
    print("  " + detail_line(res), flush=True)
    return res


# --------------------------------------------------------------------------- selection table


def ranks(exp: Experiment) -> dict[str, int]:
    """Competition rank of each candidate by held-out quality at its operating lambda (1 = best)."""
    q = {k: f.result.quality for k, f in exp.fitted.items()}
    return {k: 1 + sum(v > q[k] + TIE for v in q.values()) for k in q}


def hindsight_best(exp: Experiment) -> list[str]:
    """The candidates with the best held-out quality (ties: all of them, in candidate order)."""
    q = {k: f.result.quality for k, f in exp.fitted.items()}
    top = max(q.values())
    return [k for k, v in q.items() if v >= top - TIE]


def reference(exp: Experiment) -> str:
    """The hindsight-best candidate regret is measured against: the selected one when it is tied best."""
    best = hindsight_best(exp)
    return exp.selected if exp.selected in best else best[0]


def ships(exp: Experiment) -> str:
    if exp.exported == BASELINE:
        return f"always call {exp.test.models[exp.fitted[BASELINE].result.choices[0]]}"
    return exp.exported


def gate_cell(exp: Experiment) -> str:
    g = exp.gate
    if g is None:
        return "none (best_single selected)"
    verdict = "passed" if g.passed else "failed"
    return f"{verdict} (gain {g.gain:+.4f}, lower {g.lower:+.4f})"


def regret_test(exp: Experiment, best: str) -> tuple[float, float]:
    """Held-out regret of the selection and its one-sided 90% lower bound (paired bootstrap over queries)."""
    if best == exp.selected:
        return 0.0, 0.0
    return paired_gain(exp.held_out(best), exp.held_out(exp.selected), confidence=0.9)


def pct(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:+.1%}"


def selection_row(r: SetResult) -> str:
    exp = r.exp
    rk = ranks(exp)
    best = hindsight_best(exp)
    sel, top = exp.fitted[exp.selected].result, exp.fitted[reference(exp)].result
    regret = top.quality - sel.quality
    tied = [k for k, v in rk.items() if v == rk[exp.selected] and k != exp.selected]
    rank = f"{rk[exp.selected]} of {len(rk)}"
    if tied:
        rank += f" ({len(tied) + 1}-way tie" + (", best_single among them)" if BASELINE in tied else ")")
    best_cell = ", ".join(best) if len(best) <= 2 else f"{best[0]} (+{len(best) - 1} tied)"
    if exp.selected in best:
        best_cell = f"{exp.selected} (selected)" + (f" +{len(best) - 1} tied" if len(best) > 1 else "")
    name = r.name + (f", {r.note}" if r.note else "")
    return (f"| {name} | {r.data.n_queries:,} x {r.data.n_models} | {r.folds} | **{exp.selected}** | {rank} | "
            f"{best_cell} | {regret:.4f} | {pct(sel.gap_closed)} / {pct(top.gap_closed)} | {gate_cell(exp)} | "
            f"{ships(exp)} | {r.run_s:.0f} ({r.fit_s:.0f}) |")


def detail_line(r: SetResult) -> str:
    """Per candidate: out-of-fold objective on train (selection) -> held-out quality."""
    exp = r.exp
    oof = exp.selection.oof if exp.selection else {}
    cells = [f"{k} {oof.get(k, math.nan):.4f} -> {f.result.quality:.4f}" for k, f in exp.fitted.items()]
    best = reference(exp)
    reg, lower = regret_test(exp, best)
    b = exp.report.baselines
    tail = (f"; regret {reg:+.4f}, 90% lower bound {lower:+.4f}" if best != exp.selected else "")
    sel = exp.fitted[exp.selected].result
    tail += f"; {exp.selected} sends {sel.routing_share[b.best_single]:.1%} of the queries to the best single model"
    return (f"**{r.name}** ({exp.split.how}; best single {b.models[b.best_single]} "
            f"{b.single_quality[b.best_single]:.4f}, oracle {b.oracle_quality:.4f}{tail}): " + "; ".join(cells))


# --------------------------------------------------------------------------- matched spend


def spend_table(r: SetResult) -> list[str]:
    """Quality at the best single model's spend and spend for its quality, per family, on the held-out split."""
    exp = r.exp
    b = exp.report.baselines
    bc, bq = float(b.single_cost[b.best_single]), float(b.single_quality[b.best_single])
    sc, sq = np.asarray(b.single_cost, dtype=float), np.asarray(b.single_quality, dtype=float)
    hull_q = single_model_hull_quality(sc, sq, bc)

    def row(label: str, costs, quals) -> str:
        q = quality_at_cost(costs, quals, bc)
        c95, c100 = cost_at_quality(costs, quals, 0.95 * bq), cost_at_quality(costs, quals, bq)
        share = lambda c: "not reached" if not math.isfinite(c) else f"{c / bc:.0%}"  # noqa: E731
        return (f"| {label} | {q:.4f} | {share(c95)} | {share(c100)} | "
                f"{'n/a' if not math.isfinite(q) else f'{q - hull_q:+.4f}'} |")

    lines = [f"### Matched spend on {r.name}: held-out split, best single {b.models[b.best_single]} "
             f"(chosen on train) at ${bc:.6f}/query, quality {bq:.4f}",
             "",
             "| router | quality at the best single's cost | cost for 95% of its quality | cost for 100% | "
             "gain over the single-model hull at that cost |",
             "|---|---|---|---|---|"]
    for label, f in exp.fitted.items():
        name = f"{label} (its lambda sweep switches single models)" if label == BASELINE else label
        lines.append(row(name, f.result.curve["cost"], f.result.curve["quality"]))
    lines.append(row(f"best single model {b.models[b.best_single]} (one point)", [bc], [bq]))
    lines.append(row("single-model hull (random mix of single models)", sc, sq))
    lines += ["", f"Costs as % of the best single model's ${bc:.6f}/query. Single-model hull at that cost: "
                  f"{hull_q:.4f} ({hull_q - bq:+.4f} over the best single model alone). Router curves: "
                  "the lambda sweep of each router on the held-out queries (realised costs), hull by "
                  "`router.evaluation.curves.nondecreasing_hull`."]
    return lines


def spend_findings(r: SetResult) -> str:
    """One sentence on what routing buys at matched spend on the set."""
    exp = r.exp
    b = exp.report.baselines
    bc, bq = float(b.single_cost[b.best_single]), float(b.single_quality[b.best_single])
    hull_q = single_model_hull_quality(b.single_cost, b.single_quality, bc)
    curves = {k: (f.result.curve["cost"], f.result.curve["quality"]) for k, f in exp.fitted.items() if k != BASELINE}
    at = {k: quality_at_cost(c, q, bc) for k, (c, q) in curves.items()}
    top = max(at, key=lambda k: at[k])
    need = {k: cost_at_quality(c, q, bq) for k, (c, q) in curves.items()}
    reach = {k: v for k, v in need.items() if math.isfinite(v)}
    cheap = min(reach, key=lambda k: reach[k]) if reach else None
    sel = exp.selected
    text = (f"Matched spend on {r.name}: at the best single model's cost the best router curve ({top}) is "
            f"{at[top] - hull_q:+.4f} above the single-model hull")
    if cheap:
        text += f"; {cheap} reaches the best single model's quality at {reach[cheap] / bc:.0%} of its cost"
    if sel in at:
        text += f"; the selected {sel} gives {at[sel] - hull_q:+.4f} at matched spend"
        if exp.exported == BASELINE:
            text += (", yet at lambda 0 (the job's operating point, quality only) the gate found no gain and the "
                     "job ships the best single model")
    return text + (". These are held-out curves: shipping a cheaper operating point means calibrating its lambda "
                   "on train (`budget:`), which lands near, not on, these points.")


# --------------------------------------------------------------------------- summary


def findings(results: list[SetResult]) -> list[str]:
    """Sentences read off the numbers (so they stay true when the benchmark is re-run)."""
    out = []
    hits = [r.name for r in results if r.exp.selected in hindsight_best(r.exp)]
    hollow = [r.name for r in results if r.exp.selected != BASELINE and r.exp.selected in hindsight_best(r.exp)
              and abs(r.exp.fitted[r.exp.selected].result.quality - r.exp.fitted[BASELINE].result.quality) <= TIE]
    out.append(f"Selection picked a held-out-best family (ties included) on {len(hits)} of {len(results)} sets"
               + (f" ({', '.join(hits)})" if hits else "")
               + (f"; on {', '.join(hollow)} that family only ties always calling the best single model, so "
                  "the choice did not matter." if hollow else "."))
    for r in results:
        exp = r.exp
        best = hindsight_best(exp)
        if exp.selected in best:
            continue
        reg, lower = regret_test(exp, best[0])
        oof = exp.selection.oof
        sig = ("its 90% lower bound is above 0" if lower > 0 else
               "within noise (its 90% lower bound is <= 0)")
        alt_gain, alt_lower = paired_gain(exp.held_out(best[0]), exp.held_out(BASELINE), confidence=0.9)
        out.append(f"{r.name}: CV chose {exp.selected} (out-of-fold {oof[exp.selected]:.5f} vs {best[0]} "
                   f"{oof[best[0]]:.5f}); held out, {best[0]} was better by {reg:.4f}, {sig}; against the best "
                   f"single model {best[0]} gains {alt_gain:+.4f} (90% lower bound {alt_lower:+.4f}).")
    for r in results:
        exp = r.exp
        if exp.exported == BASELINE:
            why = ("best_single had the best out-of-fold objective" if exp.selected == BASELINE else
                   f"the gate stopped {exp.selected} (gain {exp.gate.gain:+.4f}, lower bound {exp.gate.lower:+.4f})")
            out.append(f"{r.name}: routing did not pay, the job ships the best single model: {ships(exp)} ({why}).")
        else:
            out.append(f"{r.name}: ships {exp.exported}, held-out gain {exp.gate.gain:+.4f} over the best single "
                       f"model (lower bound {exp.gate.lower:+.4f}).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {','.join(SETS)}")
    ap.add_argument("--folds", type=int, default=JobConfig().selection.folds, help="selection folds")
    ap.add_argument("--big-folds", type=int, default=None, help="selection folds for sets above --big queries")
    ap.add_argument("--big", type=int, default=10_000, help="queries above which a set is big")
    ap.add_argument("--spend-sets", default="routerbench", help="sets with costs for the matched-spend table")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    names = [s for s in args.sets.split(",") if s]
    embedder = Embedder(show_progress=False)
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    results = []
    for name in names:
        results.append(run_set(name, lambda n: args.big_folds if args.big_folds and n > args.big else args.folds,
                               embedder))
    total = time.perf_counter() - t0

    head = ("| set | queries x models | folds | selected by CV | held-out rank | hindsight best | regret | "
            "gap closed selected / best | gate (held-out, 90% lower bound) | ships | run s (final fits s) |")
    lines = ["## Router selection on real data", "",
             head, "|" + "---|" * (head.count("|") - 1)]
    lines += [selection_row(r) for r in results]
    lines += ["", "Selected: best mean out-of-fold objective on the training split (nested K-fold; ties to the "
                  "earlier candidate, best_single first). Held-out rank: by held-out quality among the "
                  f"{len(JobConfig().candidates())} default candidates (ties share a rank). Regret: held-out "
                  "quality of the hindsight-best family minus the selected one's (mean score; accuracy on 0/1 "
                  "sets); the hindsight best is picked on the held-out split itself, so it is an optimistic "
                  "reference. Gap closed = (router - best single) / (oracle - best single). Gate: paired "
                  "bootstrap over held-out queries of selected minus best single. run s: the whole "
                  "`run_experiment` (selection + final fits + evaluation); in brackets the final fits alone.",
              "", "Out-of-fold objective on train -> held-out quality, per candidate:", ""]
    lines += [f"- {detail_line(r)}" for r in results]
    spend = [r for r in results if r.name in args.spend_sets.split(",") and r.exp.report.baselines.has_cost]
    for r in spend:
        lines += [""] + spend_table(r)
    folds_note = (f"--folds {args.folds}" + (f" --big-folds {args.big_folds} --big {args.big}"
                                             if args.big_folds is not None else "")
                  + (f" --spend-sets {args.spend_sets}" if args.spend_sets != "routerbench" else ""))
    cmd = f"OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_selection.py --sets {','.join(names)} {folds_note}"
    lines += ["", f"Command: `{cmd}` on {machine()}; {total / 60:.1f} min in all, 1-min load average "
                  f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (other work shares the "
                  "2 cores: the seconds are noisy). "
                  "Default `JobConfig()` candidates, `export_router: auto`, lambda 0 (routers chase quality; "
                  "cost only enters the matched-spend table through the lambda sweep), min_gain 0, "
                  "confidence 0.9.", ""]
    lines += findings(results)
    lines += [spend_findings(r) for r in spend]
    text = "\n".join(lines)
    print("\n" + text)
    if not args.no_write:
        write_section("selection", text)


if __name__ == "__main__":
    main()
