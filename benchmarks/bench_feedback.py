"""The feedback loop simulated on real full-information logs: does a router that explores and retrains
with inverse-propensity weights beat naive retraining on its own greedy traffic?

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_feedback.py [--sets mmlu_pro,routerbench,...]
        [--seeds 3] [--rounds 5] [--exploration epsilon:0.1,softmax:0.05] [--family ridge] [--max-queries 6000]
        [--no-write]

Per set and seed: 30% of the queries are held out; of the rest, a seed slice (``--seed-share``, every model
observed, as from one full benchmark run) trains the first router and the remainder arrives as a stream in
``--rounds`` equal batches. Each round the deployed router of each arm serves the next batch, only the served
model's score (and its propensity) is logged, and the arm retrains on the seed slice + its logged rows.
Since the logs are complete, every counterfactual (oracle, the true value of any policy) is known exactly.
Arms: naive (greedy serving, retrain on the masked logs), each exploration with the default fit
(``fit(..., propensities=)``: unweighted regression, IPS-valued CV), the first exploration with IPS-weighted
regression (``ips_weights=True``) and without propensities at all (exploration's data alone), the
full-information router (seed + all stream queries so far, every model observed; the upper reference) and the
best single model of the seed slice. Also checks off-policy evaluation (IPS, SNIPS, DR, DM of ``ope``) of
greedy target policies on each exploring arm's logged batches against their true values.
Writes the ``feedback`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_peers import load_any  # noqa: E402
from benchmarks.bench_routers import CACHE  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from router.data.labels import RoutingData  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.policy.exploration import Exploration, policy_probabilities, sample_choices
from router.policy.rule import choose  # noqa: E402
from router.evaluation.metrics import mean_model_costs  # noqa: E402
from router.evaluation.offpolicy import reward_model  # noqa: E402
from router.evaluation.offpolicy import off_policy_estimates
from router.policy.propensity import one_hot, partial_feedback  # noqa: E402
from router.routers import make_router  # noqa: E402

# The first three are dominated by one model (full information barely beats the best single model at lambda
# 0); the two "small" pools (``bench_peers.VARIANTS``) are where routing has headroom.
SETS = ["mmlu_pro", "routerbench", "zeroeval_no_o1", "zeroeval_small", "mmlu_pro_small"]
TEST_SHARE = 0.3
PARAMS = {"knn": {"n_neighbors": (10, 30, 100), "weighting": ("uniform",), "prior_weight": (0.3, 3.0)}}
ESTIMATORS = ("ips", "snips", "dr", "dm")


@dataclass
class Arm:
    name: str
    exploration: Exploration  # how it serves; "off" = its greedy pick
    fit_mode: str  # "naive" (no propensities), "propensities" (the default fit), "ips weights" (ips_weights=True)
    rng: np.random.Generator
    router: object = None
    rows: list = field(default_factory=list)  # logged stream query indices, actions, propensities per batch
    acts: list = field(default_factory=list)
    props: list = field(default_factory=list)


def load(name: str) -> tuple[RoutingData, np.ndarray, str]:
    data, note = load_any(name)
    full = data.mask.all(axis=1)
    if not full.all():  # full information needs every model's score
        note = ", ".join(x for x in (note, f"{int(full.sum()):,} of {data.n_queries:,} queries complete") if x)
        data = data.subset(np.flatnonzero(full))
    X, _ = embed_with_cache(Embedder(show_progress=False), data.prompts, CACHE)
    return data, X, note


def fit(family: str, X, Y, mask, P=None, ips_weights: bool = False):
    params = PARAMS.get(family, {}) | ({"ips_weights": True} if ips_weights and family != "best_single" else {})
    router = make_router(family, **params)
    return router.fit(X, np.where(mask, Y, np.nan), None, mask, **({} if P is None else {"propensities": P}))


def logged(arm: Arm, seed_rows: np.ndarray, Y: np.ndarray):
    """Rows (seed slice, then logged stream queries), masked scores, mask and propensities of an arm's logs."""
    rows = np.concatenate([seed_rows, *arm.rows]).astype(int)
    n_seed, m = len(seed_rows), Y.shape[1]
    mask = np.zeros((len(rows), m), dtype=bool)
    mask[:n_seed] = True
    P = np.full((len(rows), m), np.nan)
    if arm.rows:
        acts, props = np.concatenate(arm.acts), np.concatenate(arm.props)
        bandit = np.arange(n_seed, len(rows))
        mask[bandit, acts] = True
        P[bandit, acts] = props
    return rows, np.where(mask, Y[rows], np.nan), mask, P


def simulate(data: RoutingData, X: np.ndarray, seed: int, args, explorations: list[Exploration]) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(data.n_queries)[: args.max_queries or None]
    n_test = round(TEST_SHARE * len(perm))
    test, rest = perm[:n_test], perm[n_test:]
    n_seed = max(25, round(args.seed_share * len(rest)))
    seed_rows, batches = rest[:n_seed], np.array_split(rest[n_seed:], args.rounds)
    Y, m = data.scores, data.n_models
    costs = mean_model_costs(data.subset(seed_rows))  # lambda 0: costs only break exact ties
    arms = [Arm("naive (greedy)", Exploration("off"), "naive", None)]
    arms += [Arm(f"{e} (default fit)", e, "propensities", None) for e in explorations]
    arms += [Arm(f"{explorations[0]} + IPS weights", explorations[0], "ips weights", None),
             Arm(f"{explorations[0]}, no propensities", explorations[0], "naive", None)]
    for i, arm in enumerate(arms):
        arm.rng = np.random.default_rng([seed, i])
    first = fit(args.family, X[seed_rows], Y[seed_rows], np.ones((n_seed, m), bool))
    for arm in arms:
        arm.router = first
    full_router = first
    best = int(np.argmax(Y[seed_rows].mean(axis=0) - 1e-12 * costs))  # best single on the seed slice
    names = [a.name for a in arms] + ["full information", "best single"]

    def held_out(router) -> float:
        return float(Y[test, choose(router.predict_scores(X[test]), costs)].mean())

    quality = {n: [] for n in names}  # per round 0..K: held-out quality of the greedy router
    regret = {n: [] for n in names}  # per batch: sum of (oracle - served)
    vs_full = {n: [] for n in names}  # per batch: sum of (full-information router's pick - served)
    served, greedy_served, off_greedy = ({n: [] for n in names} for _ in range(3))
    ope = []  # (logger, target, round, estimator, value, lower, upper, truth)
    for k, batch in enumerate(batches):
        for n, r in [(a.name, a.router) for a in arms] + [("full information", full_router)]:
            quality[n].append(held_out(r))
        quality["best single"].append(float(Y[test, best].mean()))
        Yb, rows_b = Y[batch], np.arange(len(batch))
        oracle = Yb.max(axis=1)
        full_pick = choose(full_router.predict_scores(X[batch]), costs)
        greedy = {}
        for arm in arms:
            pred = arm.router.predict_scores(X[batch])
            greedy[arm.name] = choose(pred, costs)
            if arm.exploration.mode == "off":
                acts, props = greedy[arm.name], np.ones(len(batch))
            else:
                probs = policy_probabilities(pred, costs, 0.0, exploration=arm.exploration)
                acts, props = sample_choices(probs, arm.rng)
            arm.rows.append(batch), arm.acts.append(acts), arm.props.append(props)
        picks = {a.name: a.acts[-1] for a in arms} | {"full information": full_pick,
                                                       "best single": np.full(len(batch), best)}
        greedy |= {"full information": full_pick, "best single": picks["best single"]}
        for n in names:
            s = Yb[rows_b, picks[n]]
            regret[n].append(float((oracle - s).sum()))
            vs_full[n].append(float((Yb[rows_b, full_pick] - s).sum()))
            served[n].append(float(s.sum()))
            greedy_served[n].append(float(Yb[rows_b, greedy[n]].sum()))
            off_greedy[n].append(int((picks[n] != greedy[n]).sum()))
        # OPE on this batch's bandit logs of each exploring arm (q_hat on the logs before this batch)
        targets = {"own greedy": None, "naive router": greedy[arms[0].name], "full-info router": full_pick}
        for arm in arms:
            if arm.fit_mode == "naive":
                continue
            rows_q, Yq, mask_q, P_q = logged(replace(arm, rows=arm.rows[:-1], acts=arm.acts[:-1],
                                                    props=arm.props[:-1]), seed_rows, Y)
            fit_data = replace(data.subset(rows_q), scores=Yq, mask=mask_q, propensities=P_q)
            q_hat = reward_model(X[rows_q], fit_data).predict_scores(X[batch])
            acts, props = arm.acts[-1], arm.props[-1]
            for t, pick in targets.items():
                pick = greedy[arm.name] if pick is None else pick
                est = off_policy_estimates(acts, Yb[rows_b, acts], props, one_hot(pick, m), q_hat=q_hat,
                                           n_boot=args.n_boot, seed=[seed, k])
                truth = float(Yb[rows_b, pick].mean())
                ope += [(arm.name, t, k, e, est[e].value, est[e].lower, est[e].upper, truth) for e in ESTIMATORS]
        # retrain every arm on the seed slice + its logs so far; the full-information router on everything
        for arm in arms:
            rows, Ym, mask, P = logged(arm, seed_rows, Y)
            arm.router = fit(args.family, X[rows], Ym, mask, None if arm.fit_mode == "naive" else P,
                             ips_weights=arm.fit_mode == "ips weights")
        seen = np.concatenate([seed_rows, *batches[: k + 1]])
        full_router = fit(args.family, X[seen], Y[seen], np.ones((len(seen), m), bool))
    for n, r in [(a.name, a.router) for a in arms] + [("full information", full_router)]:
        quality[n].append(held_out(r))
    quality["best single"].append(float(Y[test, best].mean()))
    ess = {}  # median over models of the effective sample size of the last fit's weights / scored cells
    for arm in arms:
        _, Ym, mask, P = logged(arm, seed_rows, Y)
        weighted = arm.fit_mode == "ips weights" or (arm.fit_mode == "propensities" and args.family == "best_single")
        w = partial_feedback(Ym, mask, P).weights if weighted else mask.astype(float)
        ess[arm.name] = float(np.median(w.sum(0) ** 2 / (w**2).sum(0) / mask.sum(0)))
    return {"ess": ess, "names": names, "quality": quality, "regret": regret, "vs_full": vs_full, "served": served,
            "greedy_served": greedy_served, "off_greedy": off_greedy, "ope": ope,
            "n": (len(test), n_seed, [len(b) for b in batches]), "oracle_test": float(Y[test].max(axis=1).mean())}


# --------------------------------------------------------------------------------------- tables

def ms(values, spec=".4f", sd=True) -> str:
    v = np.asarray(values, dtype=float)
    return format(v.mean(), spec) + (f" ± {v.std(ddof=1):{spec.lstrip('+')}}" if sd and len(v) > 1 else "")


def set_table(name: str, note: str, data: RoutingData, runs: list[dict]) -> list[str]:
    names, K = runs[0]["names"], len(runs[0]["regret"][runs[0]["names"][0]])
    n_test, n_seed, sizes = runs[0]["n"]
    lines = [f"### {name}" + (f" ({note})" if note else ""), "",
             f"{data.n_queries:,} queries x {data.n_models} models; per seed {n_test:,} held out, a seed slice of "
             f"{n_seed:,} (all models), a stream of {sum(sizes):,} in {K} batches of ~{sizes[0]:,}. Oracle on the "
             f"held-out queries {ms([r['oracle_test'] for r in runs])}. Mean ± sd over {len(runs)} seeds.", "",
             "Held-out quality of the greedy router after each round (round 0: the seed slice only):", "",
             "| round | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for k in range(K + 1):
        lines.append(f"| {k} | " + " | ".join(ms([r["quality"][n][k] for r in runs]) for n in names) + " |")
    lines += ["", "Cumulative regret on the stream (sum over served queries of oracle score - served score; "
              "in brackets: vs the full-information router's pick):", "",
              "| after batch | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for k in range(K):
        cells = [f"{ms([sum(r['regret'][n][:k + 1]) for r in runs], '.0f')} "
                 f"({ms([sum(r['vs_full'][n][:k + 1]) for r in runs], '+.0f', sd=False)})" for n in names]
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    return lines


def cost_rows(name: str, runs: list[dict]) -> list[str]:
    out = []
    n_stream = sum(runs[0]["n"][2])
    for n in runs[0]["names"]:
        srv = [sum(r["served"][n]) / n_stream for r in runs]
        grd = [sum(r["greedy_served"][n]) / n_stream for r in runs]
        off = [sum(r["off_greedy"][n]) / n_stream for r in runs]
        final = [r["quality"][n][-1] - r["quality"]["naive (greedy)"][-1] for r in runs]
        ess = ms([r["ess"][n] for r in runs], ".0%", sd=False) if n in runs[0]["ess"] else "n/a"
        out.append(f"| {name} | {n} | {ms(srv)} | {ms(np.subtract(grd, srv), '+.4f')} | {ms(off, '.1%', sd=False)} "
                   f"| {ess} | {ms(final, '+.4f')} |")
    return out


def ope_table(rows: list[tuple], last: int) -> list[str]:
    a = np.array([r[4:] for r in rows], dtype=float)  # value, lower, upper, truth
    keys = [(r[0], r[1], r[3]) for r in rows]
    is_last = np.array([r[2] == last for r in rows])
    lines = ["| logging arm | target policy | estimator | bias (last) | mean abs err (last) | 95% coverage (last) "
             "| bias (all) | mean abs err (all) | 95% coverage (all) | CI width (all) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in dict.fromkeys(keys):
        sel = np.array([k == key for k in keys])
        cells = []
        for s in (sel & is_last, sel):
            v, lo, hi, t = a[s].T
            cells += [f"{np.mean(v - t):+.4f}", f"{np.mean(np.abs(v - t)):.4f}",
                      f"{np.mean((lo <= t) & (t <= hi)):.0%} of {int(s.sum())}"]
        v, lo, hi, t = a[sel].T
        width = f"{np.mean(hi - lo):.4f}"
        lines.append(f"| {key[0]} | {key[1]} | {key[2].upper()} | " + " | ".join(cells) + f" | {width} |")
    return lines


def verdict(results: list[tuple], ope: list[tuple], last: int) -> list[str]:
    names, out, words = results[0][3][0]["names"], [], {}
    headline = next(n for n in names if n.endswith("(default fit)"))
    weighted = next(n for n in names if n.endswith("+ IPS weights"))
    for other in [n for n in names if n not in ("naive (greedy)", "best single")]:
        per_set, pooled = [], []
        for name, _, _, runs in results:
            d = [r["quality"][other][-1] - r["quality"]["naive (greedy)"][-1] for r in runs]
            g = [sum(r["regret"]["naive (greedy)"]) - sum(r["regret"][other]) for r in runs]
            per_set.append(f"{name} {ms(d, '+.4f')} (regret saved {ms(g, '+.0f')})")
            pooled += d
        wins, se = sum(x > 0 for x in pooled), np.std(pooled, ddof=1) / np.sqrt(len(pooled))
        word = "beats" if np.mean(pooled) > 2 * se else "loses to" if np.mean(pooled) < -2 * se else \
            "is within 2 standard errors of"
        words[other] = word
        out.append(f"- {'**' if other == headline else ''}{other}{'**' if other == headline else ''} {word} naive: "
                   f"final held-out quality {ms(pooled, '+.4f')} over all {len(pooled)} runs, better in {wins}; "
                   "per set " + "; ".join(per_set))
    gap = lambda r: r["quality"]["full information"][-1] - r["quality"]["best single"][-1]  # noqa: E731
    room = [f"{name} {ms([gap(r) for r in runs], '+.4f')}" for name, _, _, runs in results]
    out.append("- Headroom: full information minus best single at the last round: " + "; ".join(room) + ".")
    cover = []
    for est in ESTIMATORS:
        for tag, keep in (("last batch", lambda r: r[2] == last), ("all batches", lambda r: True)):
            rows = [r for r in ope if keep(r) and r[3] == est]
            hit = sum(lo <= t <= hi for *_, _, lo, hi, t in rows)
            cover.append(f"{est.upper()} {tag} {hit}/{len(rows)}")
    out.append("- 95% intervals covering the true value, all loggers and targets: " + ", ".join(cover) + ".")
    ess = np.median([r["ess"][weighted] for *_, runs in results for r in runs])
    why = "What the weights cost" if words[weighted] == "beats" else "Why IPS-weighted regression does not help"
    out.append(f"- {why} ({weighted}): at the last fit the IPS weights leave each model a median "
               f"effective sample of {ess:.0%} of its scored cells (ESS column below). A rarely served model's few "
               "explored rows each weigh up to `IPS_CLIP` (20) seed rows, so a model that was lucky on a handful of "
               "explored queries gets an inflated weighted mean and the greedy router chases it (a winner's curse "
               "over the pool); the same rows unweighted do not mislead, because the logging choice depends on the "
               "query only, so E[score | query, model] is the same on the logged rows.")
    return ["Final round, each arm minus the naive arm (positive = better than naive; mean ± sd over seeds):",
            ""] + out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--exploration", default="epsilon:0.1,softmax:0.05",
                    help="comma-separated exploring arms (each retrained with IPS); the first is the headline")
    ap.add_argument("--family", default="ridge", choices=["ridge", "knn", "best_single"])
    ap.add_argument("--max-queries", type=int, default=6000, help="subsample larger sets per seed (0: all)")
    ap.add_argument("--seed-share", type=float, default=0.05, help="share of the non-test queries fully logged")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    names = [s for s in args.sets.split(",") if s]
    explorations = [Exploration.parse(e) for e in args.exploration.split(",") if e]
    if not explorations or any(e.mode == "off" for e in explorations):
        raise SystemExit("--exploration needs one or more exploring modes (epsilon:E, softmax:T)")
    t0 = time.perf_counter()
    results = []
    for name in names:
        data, X, note = load(name)
        runs = []
        for seed in range(args.seeds):
            t = time.perf_counter()
            runs.append(simulate(data, X, seed, args, explorations))
            q = runs[-1]["quality"]
            print(f"{name} seed {seed}: final " + ", ".join(f"{n} {q[n][-1]:.4f}" for n in runs[-1]["names"])
                  + f" ({time.perf_counter() - t:.0f}s)", flush=True)
        results.append((name, note, data, runs))
    total = time.perf_counter() - t0
    cmd = (f"OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_feedback.py --sets {','.join(names)} "
           f"--seeds {args.seeds} --rounds {args.rounds} --exploration {args.exploration} --family {args.family} "
           f"--max-queries {args.max_queries} --seed-share {args.seed_share} --n-boot {args.n_boot}")
    lines = ["## The feedback loop: exploration and retraining on the router's own traffic vs naive retraining", ""]
    ope = [row for _, _, _, runs in results for r in runs for row in r["ope"]]
    lines += verdict(results, ope, args.rounds - 1) + [""]
    for name, note, data, runs in results:
        lines += set_table(name, note, data, runs) + [""]
    lines += ["### The cost of exploration", "",
              "Served quality: mean true score of the served model over the whole stream. Cost of exploring: what "
              "the arm's own greedy pick would have scored on the same queries minus what was served. Final vs "
              "naive: held-out quality after the last round minus the naive arm's (the benefit it bought). ESS / "
              "cells: median over models of the effective sample size (sum w)^2 / sum w^2 of the last fit's "
              "per-cell weights over the model's scored cells (100% when unweighted).", "",
              "| set | arm | served quality | cost of exploring | served off-greedy | ESS / cells | final vs naive |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, _, _, runs in results:
        lines += cost_rows(name, runs)
    lines += ["", "### Off-policy evaluation on the logged batches", "",
              "Each exploring arm's logged batch (only the served model's score and its propensity), target = a "
              "greedy policy: the arm's own deployed router (the greedy part of the logging policy), the naive "
              "arm's router, the full-information router, each as deployed on that batch. Truth: the target's mean "
              "true score on the batch from the full logs. DR/DM: q_hat = `reward_model` fitted on the seed slice + "
              "the arm's earlier logged rows (IPS-weighted). No clipping; 95% percentile bootstrap intervals "
              f"({args.n_boot} resamples). (last): the last batch only, {len(results)} sets x {args.seeds} seeds; "
              f"(all): every batch.", ""]
    lines += ope_table(ope, args.rounds - 1)
    lines += ["", "Arms: **naive (greedy)** serves its greedy pick and retrains on the seed slice + the one scored "
              "model of every served query (masked Y, no propensities). **<exploration> (default fit)** serves from "
              "`policy_probabilities` with that exploration and retrains with `propensities=` (the library's "
              "default: unweighted regression, hyper-parameters by the IPS value of the routing in CV). "
              "**<exploration> + IPS weights** also weights the regression by clipped inverse propensities "
              "(`ips_weights=True`). **<exploration>, no propensities** explores like the headline arm but "
              "retrains as naive does (the data exploration buys, without the IPS-valued CV). "
              "**full information** retrains on the seed slice + every stream query so far with all models scored "
              "(upper reference; also the reference pick of the regret in brackets). **best single**: the model with "
              f"the best mean on the seed slice, fixed. All: `{args.family}` family (its default grid), routing at "
              "lambda 0 (costs only break exact ties), held-out quality = mean true score of the greedy pick on the "
              f"same {TEST_SHARE:.0%} held-out queries.", "",
              f"Command: `{cmd}` on {machine()}; {total / 60:.1f} min in all."]
    body = "\n".join(lines)
    publish("feedback", body, write=not args.no_write)


if __name__ == "__main__":
    main()
