"""What an experiment found: every candidate fitted and evaluated, the selection, the gate, what ships, and
how to say it (the outcome lines, the one-line verdict, the JSON beside the report).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.config import JobConfig, RouterSpec
from pipelines.gate import BASELINE, Gate, Goal, Outcomes, objective, realised_cost
from pipelines.selection import Selection
from router.data.labels import RoutingData
from router.evaluation.metrics import RouterResult, complete_rows, json_number, mean_model_costs
from router.evaluation.report import EvaluationReport
from router.evaluation.sparse import Imputer
from router.evaluation.splits import Split
from router.policy.operating_point import Calibration, OperatingPoint
from router.policy.propensity import IPS_CLIP
from router.routers import BaseRouter


@dataclass
class FittedRouter:
    spec: RouterSpec
    router: BaseRouter
    result: RouterResult
    fit_seconds: float
    predict_seconds: float
    test_scores: np.ndarray = field(repr=False)
    calibration: Calibration  # measured on out-of-fold training predictions; exported with the router
    seconds: float = 0.0  # every fit of the family in the job: searches, selection and operating-point folds, cross-fit

    @property
    def point(self) -> OperatingPoint:
        """Where the router runs: the job's setting resolved on its calibration."""
        return self.calibration.default

    @property
    def lam(self) -> float:
        return self.point.lam


@dataclass(frozen=True)
class SparseModels:
    """Models that answered under half of the training queries: those routed to (``models``, their missing scores
    estimated by ``imputer``) and those held back (``held_back``: name -> why, ``router.evaluation.sparse``)."""

    imputer: Imputer
    models: tuple[str, ...]
    held_back: dict[str, str]
    min_answers: int
    gains: dict = field(default_factory=dict)  # per partial model kept, ``versus_best_other``'s (model, gain, lower, n)

    @property
    def unproven(self) -> tuple[str, ...]:
        """Partial models that may not be the best single model: not shown better than the best other one on the
        queries both answered (one scored only in the router's own traffic never is)."""
        return tuple(m for m, g in self.gains.items() if g is None or g[2] <= 0)

    def to_dict(self) -> dict:
        """Per sparse model its evidence, per held-back one why (``report.json``'s ``sparse``)."""
        imp = self.imputer
        return {"models": {m: {"answers": int(imp.answers[k]), "mean": json_number(imp.mean[k]),
                               "se": json_number(imp.se[k]), "estimate_rmse": json_number(imp.rmse[k]),
                               "best_single_allowed": m not in self.unproven}
                           for k, m in enumerate(self.models)},
                "held_back": dict(self.held_back), "min_answers": self.min_answers}

    def lines(self, n_train: int) -> list[str]:
        """Per sparse model, its evidence; per held-back one, why it takes no traffic and what to do."""
        imp, out = self.imputer, []
        for k, name in enumerate(self.models):
            out.append(f"{name} answered {imp.answers[k]:,} of {n_train:,} training queries: mean score "
                       f"{imp.mean[k]:.3f} +- {imp.se[k]:.3f}, per-query estimate error {imp.rmse[k]:.3f} "
                       "(leave-one-out; from the other models' scores and the embedding). The routers learn its "
                       "estimated scores; the held-out evaluation and the gate use doubly robust values, so its "
                       "uncertainty widens their intervals")
            gain = self.gains.get(name)
            if gain is not None:
                best, mean, lower, n = gain
                out[-1] += (f". Against {best} on the {n:,} queries both answered: {mean:+.3f} (lower bound "
                            f"{lower:+.3f}): " + ("it may be the best single model" if lower > 0 else
                                                  "not shown better, so never the best single model"))
        for name, why in self.held_back.items():
            out.append(f"held back (it takes no traffic): {name} {why}")
        return out


@dataclass
class Experiment:
    split: Split
    train: RoutingData
    test: RoutingData
    fitted: dict[str, FittedRouter]
    report: EvaluationReport
    goal: Goal  # the objective (savings, quality, budget, share) and the gate's thresholds
    reference: int  # the best single model (index, chosen on train): what savings and the gate compare with
    evidence: Outcomes | None  # the training queries cross-fitted (``pipelines.evidence``); None: not used
    selection: Selection | None  # None when the config names the router to export
    selected: str  # chosen by selection on train, or named by the config
    gate: Gate | None  # None when the selected router is the baseline itself
    exported: str  # what the job exports: the selected router if it passed the gate, else the baseline
    sparse: SparseModels | None = None  # models with part of the answers; None: every model answered (nearly) all

    @property
    def eval_rows(self) -> np.ndarray:
        """The held-out queries every model answered: the ones evaluation scores (``metrics``)."""
        return np.flatnonzero(complete_rows(self.test))

    @property
    def lam(self) -> float:
        """The configured cost weight (under a budget, a share or savings each router has its own)."""
        return self.goal.lam

    @property
    def quality_only(self) -> bool:
        return self.goal.quality_only

    def held_out(self, label: str) -> np.ndarray:
        """Per-query objective of a router's choices on the evaluated held-out queries."""
        f = self.fitted[label]
        return objective(self.test, self.eval_rows, f.result.choices, f.point.lam, f.router.model_costs_,
                         self.quality_only)

    def outcomes(self, choices: np.ndarray, model_costs: np.ndarray) -> Outcomes:
        """What ``choices`` (one per evaluated held-out query) scored and cost, beside the best single router's
        choices (at its operating point: under savings the best single model)."""
        rows, ref, test = self.eval_rows, self.fitted[BASELINE].result.choices, self.test
        return Outcomes(score=test.scores[rows, choices], cost=realised_cost(test, rows, choices, model_costs),
                        ref_score=test.scores[rows, ref], ref_cost=realised_cost(test, rows, ref, model_costs))

    def value(self, label: str) -> float:
        """The number a champion is compared by (``Outcomes.value``) for one of this job's routers."""
        f = self.fitted[label]
        return self.outcomes(f.result.choices, f.router.model_costs_).value(self.goal)

    def feedback_lines(self) -> list[str]:
        """How partial feedback (the router's own traffic) entered the fit and the held-out values, if it did."""
        lines = []
        n_bandit = int(self.train.is_bandit.sum())
        if n_bandit:
            lines.append(f"trained on partial feedback: {n_bandit:,} of {self.train.n_queries:,} training queries "
                         "have one scored model (the deployed router's choice, with its propensity); best_single, "
                         f"ridge and knn learn from them (inverse-propensity weighted means, weights clipped at "
                         f"{IPS_CLIP:g}), the other families fit on the fully logged queries only")
        estimated = self.test.estimated
        if estimated is not None and estimated.any():
            why = "bandit feedback" if self.sparse is None or not self.sparse.models else \
                "models with part of the answers"
            lines.append(f"held-out values: doubly robust estimates on {int(estimated.sum()):,} of "
                         f"{self.test.n_queries:,} held-out queries ({why}); the report and the gate "
                         "used them; the oracle is not estimable there")
        return lines

    def outcome_lines(self, job: JobConfig) -> list[str]:
        """What was selected (out-of-fold ranking), what ships and why, and the realised share if targeted."""
        lines = self.feedback_lines()
        sel = self.selection
        if sel is not None:
            what = (f"saving at quality within {self.goal.margin:g} of {self.test.models[self.reference]}"
                    if sel.kind == "savings" else "objective")
            ranked = [f"{k} {sel.oof[k]:.1%}" if sel.kind == "savings" else f"{k} {sel.oof[k]:.4f}"
                      for k in sel.ranking() if k not in sel.excluded]
            lines.append(f"selection on the training split (out-of-fold {what}, {sel.folds} folds"
                         + (f", on {sel.n_queries:,} of {self.train.n_queries:,} queries"
                            if sel.n_queries < self.train.n_queries else "")
                         + ("" if sel.nested else ", hyper-parameters searched once on them") + "): "
                         + ", ".join(ranked)
                         + (f"; quality not within the margin: {', '.join(sel.excluded)}" if sel.excluded else ""))
        lines.append("time per family (its searches, final fit, selection and operating-point folds, cross-fit): "
                     + ", ".join(f"{k} {f.seconds:.1f}s" for k, f in self.fitted.items()))
        budget = [self.budget_line(job)] if job.budget is not None and self.budget_line(job) else []
        partial = self.sparse.lines(self.train.n_queries) if self.sparse is not None else []
        return lines + partial + budget + [self.decision] + ([self.share_line(job)] if job.share is not None else [])

    def budget_line(self, job: JobConfig) -> str | None:
        """A word when the budget does not bind (at or above every model's mean cost); one below every routing's
        spend is refused by the resolver."""
        costs = mean_model_costs(self.train)
        top = int(np.nanargmax(costs))
        if job.budget >= costs[top]:
            return (f"note: the budget ${job.budget:g} per query is at or above the dearest model's mean cost "
                    f"(${costs[top]:.3g}, {self.train.models[top]}): it does not limit the routers")
        return None

    def share_line(self, job: JobConfig) -> str | None:
        """The share target against the share the exported router realised on the held-out queries."""
        if job.share is None:
            return None
        realised = self.fitted[self.exported].result.routing_share[self.test.models.index(job.share.model)]
        return (f"share of calls to {job.share.model}: target {job.share.value:.1%} (calibrated on the training "
                f"split), realised {realised:.1%} on the held-out queries")

    @property
    def decision(self) -> str:
        """One line: what ships and why."""
        if self.gate is not None:
            return self.gate.reason
        model = self.test.models[self.fitted[BASELINE].result.choices[0]] if self.exported == BASELINE else None
        if self.selection is not None and self.selected == BASELINE:
            why = ("no candidate saved more at quality within the margin, out of fold on the training split"
                   if self.goal.kind == "savings" else
                   "best_single had the best out-of-fold objective on the training split")
            return f"routing does not pay on these logs: always call {model} ({why})"
        return f"{self.exported} exported as configured" + (f": always call {model}" if model else "")

    @property
    def baseline_model(self) -> str:
        """The model the best single router calls (under a budget, the best one within it)."""
        return self.test.models[self.fitted[BASELINE].result.choices[0]]

    @property
    def verdict(self) -> str:
        """What ships, the way users count it: the saving (or gain) and the quality beside always calling
        the best single model, with its interval; or that routing does not pay."""
        g, model = self.gate, self.baseline_model
        if g is None or not g.passed:
            return f"always calls {model}: routing does not pay on these logs"
        conf, on = f"{g.confidence:.0%}", f"on {g.n:,} queries it never trained on"
        if g.saved_per_query is not None:  # every figure from the gate's queries
            saved, lo, hi = (x * 1000 for x in g.saved_per_query)
            return (f"{self.exported} saves ${saved:.4g} per 1,000 queries ({conf} CI {lo:.4g}-{hi:.4g}), "
                    f"{1 - g.saving:.0%} of {model}'s cost, at quality {g.quality[0]:.3f} vs {g.quality[1]:.3f} "
                    f"(always {model}), {on}")
        return (f"{self.exported} gains {g.gain:+.4f} ({conf} lower bound {g.lower:+.4f}) over always calling "
                f"{model}, {on}")

    def to_dict(self) -> dict:
        """The objective, what ships at which operating point and why, and the gate's figures: the JSON the
        job logs beside the report (``evaluation/report.json``) and ``router evaluate --report-json`` writes."""
        f = self.fitted[self.exported]
        g = self.gate
        gate = None if g is None else {
            "passed": g.passed, "gain": json_number(g.gain), "lower": json_number(g.lower),
            "bound": json_number(g.min_gain), "confidence": g.confidence, "queries": g.n,
            "saving": json_number(g.saving), "saving_lower": json_number(g.saving_lower),
            "saved_per_1k_queries": None if g.saved_per_query is None else [json_number(x * 1000)
                                                                             for x in g.saved_per_query]}
        goal = self.goal
        return {"objective": {"kind": goal.kind, "margin": goal.margin, "min_savings": goal.min_savings,
                              "lam": goal.lam, "min_gain": goal.min_gain, "confidence": goal.confidence},
                "selected": self.selected, "exported": self.exported, "baseline_model": self.baseline_model,
                "operating_point": f.point.to_dict(), "gate": gate, "decision": self.decision, "verdict": self.verdict,
                "sparse": None if self.sparse is None else self.sparse.to_dict()}
