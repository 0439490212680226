"""The evaluation report: routers side by side with their baselines (no I/O).

``build_report`` collects ``RouterResult``s (see ``metrics``) with the baselines computed on the
same train/test queries; ``EvaluationReport.to_dict`` is JSON-ready and ``to_markdown`` renders
the comparison tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from router.data.labels import RoutingData
from router.evaluation.curves import cost_at_quality, quality_at_cost, single_model_hull_quality
from router.evaluation.metrics import Baselines, RouterResult, json_number, baselines, gap_closed


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class EvaluationReport:
    """Routers side by side with the baselines; ``to_dict`` is JSON-ready, ``to_markdown`` readable."""

    baselines: Baselines
    routers: dict[str, RouterResult]
    split: str | None = None
    budget: float | None = None  # $/query each router was calibrated to, if any
    # On bandit held-out logs: router -> {"ips", "snips", "dr", "dm": ope.Estimate} (DR decided)
    offpolicy: dict | None = None

    def matched_spend(self) -> dict[str, dict[str, float]]:
        """Per router, at equal spend with the reference model (the best single model, chosen on train
        without a budget), as RouterBench and RouteLLM compare: its hull quality at the reference's cost
        (or at the budget), the gain over randomly mixing single models at that spend, and the cost, as
        a share of the reference's, at which its hull reaches 95% and 100% of the reference's quality."""
        b = self.baselines
        if not b.has_cost:
            return {}
        q0, c0 = float(b.single_quality[b.reference]), float(b.single_cost[b.reference])
        spend = c0 if self.budget is None else float(self.budget)
        mix = single_model_hull_quality(b.single_cost, b.single_quality, spend)
        out = {}
        for name, r in self.routers.items():
            at = quality_at_cost(r.curve["cost"], r.curve["quality"], spend)
            out[name] = {"quality_at_spend": at, "gain_over_single_model_mix": at - mix,
                         "cost_share_for_95pct": cost_at_quality(r.curve["cost"], r.curve["quality"], 0.95 * q0) / c0,
                         "cost_share_for_100pct": cost_at_quality(r.curve["cost"], r.curve["quality"], q0) / c0}
        return out

    def headline(self) -> str | None:
        """One line on matched spend: the best router at the reference's cost (or the budget), and how
        cheaply a router reaches the reference's quality."""
        ms = self.matched_spend()
        if not ms:
            return None
        b = self.baselines
        ref, q0, c0 = b.models[b.reference], b.single_quality[b.reference], b.single_cost[b.reference]
        at = {k: v["quality_at_spend"] for k, v in ms.items() if v["quality_at_spend"] == v["quality_at_spend"]}
        cheap = {k: v["cost_share_for_95pct"] for k, v in ms.items()
                 if v["cost_share_for_95pct"] == v["cost_share_for_95pct"]}
        where = f"the budget (${self.budget:.3g}/query)" if self.budget is not None else f"{ref}'s cost"
        parts = [f"{ref} scores {q0:.3f} at ${c0:.3g}/query."]
        if at:
            best = max(at, key=at.get)
            parts.append(f"At {where}, {best} reaches {at[best]:.3f} "
                         f"({ms[best]['gain_over_single_model_mix']:+.3f} over mixing single models).")
        if cheap:
            best = min(cheap, key=cheap.get)
            parts.append(f"{best} reaches 95% of {ref}'s quality at {_pct(cheap[best])} of its cost"
                         + (f", 100% at {_pct(ms[best]['cost_share_for_100pct'])}."
                            if ms[best]["cost_share_for_100pct"] == ms[best]["cost_share_for_100pct"] else "."))
        return " ".join(parts)

    def to_dict(self) -> dict:
        b = self.baselines

        def single(j: int) -> dict:
            return {"name": b.models[j], "quality": json_number(b.single_quality[j]),
                    "cost": json_number(b.single_cost[j])}

        return {
            "models": list(b.models),
            "split": self.split,
            "n_train": b.n_train,
            "n_test": b.n_test,
            "n_eval": b.n_eval,
            "n_dropped_incomplete": b.n_dropped_incomplete,
            "has_cost": b.has_cost,
            "best_single": single(b.best_single),
            "hindsight_best_single": single(b.hindsight_best),
            "oracle": {"quality": json_number(b.oracle_quality), "cost": json_number(b.oracle_cost)},
            "random": {"quality": json_number(b.random_quality), "cost": json_number(b.random_cost)},
            "single_models": {m: {"quality": json_number(q), "cost": json_number(c)}
                              for m, q, c in zip(b.models, b.single_quality, b.single_cost)},
            "routers": {name: r.to_dict() for name, r in self.routers.items()},
            "budget": self.budget,
            "matched_spend": {k: {m: json_number(x) for m, x in v.items()} for k, v in self.matched_spend().items()},
            "offpolicy": None if self.offpolicy is None else {
                name: {k: {f: json_number(x) if f != "n" else x for f, x in e.to_dict().items()}
                       for k, e in est.items()}
                for name, est in self.offpolicy.items()},
        }

    def to_markdown(self) -> str:
        b = self.baselines
        lines = [
            "## Router evaluation",
            "",
            f"Train {b.n_train} queries; test {b.n_test} queries, {b.n_eval} evaluated "
            f"({b.n_dropped_incomplete} dropped: not scored by every model)."
            + (f" Split: {self.split}." if self.split else ""),
        ]
        if self.matched_spend() and self.headline():
            lines += [f"**Matched spend.** {self.headline()}", ""]
        if self.budget is not None:
            lines += [f"Budget ${self.budget:.3g}/query: each router runs at a lambda calibrated to it on the "
                      f"training split (the cost column is the spend it achieved); gap closed is measured from "
                      f"the best single model within the budget, {b.models[b.best_single]}.", ""]
        lines += ["", self._routers_table()]
        lines += self._matched_spend_lines() + self._offpolicy_lines() + self._task_lines()
        return "\n".join(lines) + "\n"

    def _routers_table(self) -> str:
        """Every router beside the best single model (train and hindsight), the oracle and random."""
        b = self.baselines
        best_q = b.single_quality[b.best_single]
        ci = f"{_ci_level(self)} CI"

        def top_share(r: RouterResult) -> str:
            j = int(np.argmax(r.routing_share))
            return f"{b.models[j]} ({_pct(r.routing_share[j])})"

        # (header, cell for a router, cell for a baseline row from its (quality, cost) or None)
        cols = [("quality", lambda r: _f(r.quality), lambda q, c: _f(q)),
                (ci, lambda r: _ci(r.ci["quality"]), None)]
        if b.has_cost:
            cols.append(("cost $/query", lambda r: _cost(r.cost), lambda q, c: _cost(c)))
        cols += [("gap closed", lambda r: _f(r.gap_closed), lambda q, c: _f(gap_closed(q, best_q, b.oracle_quality))),
                 (f"gap closed {ci}", lambda r: _ci(r.ci["gap_closed"]), None)]
        if b.has_cost:
            cols.append(("AIQ", lambda r: _f(r.aiq), None))
        if len(b.models) == 2:
            cols += [("APGR", lambda r: _f(r.apgr), None), ("CPT(50%)", lambda r: _pct(r.cpt50), None),
                     ("CPT(80%)", lambda r: _pct(r.cpt80), None)]
        cols.append(("top model (share)", top_share, None))
        fixed = [
            (f"best single (train): {b.models[b.best_single]}", best_q, b.single_cost[b.best_single]),
            (f"best single (hindsight): {b.models[b.hindsight_best]}", b.single_quality[b.hindsight_best],
             b.single_cost[b.hindsight_best]),
            ("oracle", b.oracle_quality, b.oracle_cost),
            ("random (uniform)", b.random_quality, b.random_cost),
        ]
        rows = [[f"**{name}**"] + [cell(r) for _, cell, _ in cols] for name, r in self.routers.items()]
        rows += [[label] + ["" if cell is None else cell(q, c) for _, _, cell in cols] for label, q, c in fixed]
        return _table([""] + [h for h, _, _ in cols], rows)

    def _matched_spend_lines(self) -> list[str]:
        ms = self.matched_spend()
        if not ms:
            return []
        head = ["", "quality at " + ("the budget" if self.budget is not None else "its cost"),
                "vs mixing single models", "cost for 95% of its quality", "cost for 100%"]
        rows = [[f"**{k}**", _f(v["quality_at_spend"]), _signed(v["gain_over_single_model_mix"]),
                 _pct(v["cost_share_for_95pct"]), _pct(v["cost_share_for_100pct"])] for k, v in ms.items()]
        reference = self.baselines.models[self.baselines.reference]
        return ["", f"### Matched spend with {reference} (costs as a share of its cost)", "", _table(head, rows)]

    def _offpolicy_lines(self) -> list[str]:
        if not self.offpolicy:
            return []
        n = next(iter(next(iter(self.offpolicy.values())).values())).n
        est_names = [k for k in ("dr", "ips", "snips", "dm") if k in next(iter(self.offpolicy.values()))]
        rows = [[f"**{name}**"] + [f"{_f(e[k].value)} {_ci((e[k].lower, e[k].upper))}" for k in est_names]
                for name, e in self.offpolicy.items()]
        return ["", f"### Off-policy estimates on the {n} held-out queries of the router's own traffic", "",
                "Quality above is the doubly robust (DR) estimate on those queries; it decided selection "
                "and the gate. IPS and SNIPS need no reward model; DM is the reward model alone. 95% "
                "bootstrap intervals.", "",
                _table([""] + [k.upper() for k in est_names], rows)]

    def _task_lines(self) -> list[str]:
        tasks = sorted({t for r in self.routers.values() for t in r.per_task})
        if len(tasks) <= 1:
            return []
        names = list(self.routers)
        first = self.routers[names[0]].per_task
        rows = [[t, str(first[t]["n"]), _f(first[t]["best_single"]), _f(first[t]["oracle"])]
                + [_routed(self.routers[n].per_task[t]) for n in names] for t in tasks]
        return ["", "### Quality per task (and the model each router sends most of the task to)", "",
                _table(["task", "n", "best single", "oracle"] + names, rows)]


def build_report(
    results: dict[str, RouterResult],
    train: RoutingData,
    test: RoutingData,
    model_costs: np.ndarray | None = None,
    *,
    split: str | None = None,
    budget: float | None = None,
    offpolicy: dict | None = None,
    exclude: list[int] | None = None,
) -> EvaluationReport:
    """Collect router results with the baselines computed on the same train/test queries (``exclude``: models
    that may not be the best single one)."""
    base = baselines(train, test, model_costs, budget, exclude)
    for name, r in results.items():
        if r.baselines.n_eval != base.n_eval or r.baselines.models != base.models:
            raise ValueError(f"router {name!r} was evaluated on other queries or models than this report")
    return EvaluationReport(baselines=base, routers=dict(results), split=split, budget=budget, offpolicy=offpolicy)


# --------------------------------------------------------------------------- formatting helpers


def _f(x) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.3f}"


def _pct(x) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}%"


def _cost(x) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.3g}"


def _ci(bounds) -> str:
    lo, hi = bounds
    return "-" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.3f}, {hi:.3f}]"


def _ci_level(report: EvaluationReport) -> str:
    levels = {r.ci["level"] for r in report.routers.values()} or {0.95}
    return "/".join(f"{100 * level:g}%" for level in sorted(levels))


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _signed(x) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):+.3f}"


def _routed(cell: dict) -> str:
    """A task's quality for one router, and the model it routes most of the task to, with its share."""
    if "routed_to" not in cell:
        return _f(cell["router"])
    return f"{_f(cell['router'])} ({_short_name(cell['routed_to'])} {_pct(cell['routed_share'])})"


def _short_name(model: str) -> str:
    return model.rsplit("/", 1)[-1]
