"""The model card of a registered router: what it was trained on, what was chosen and why, with evidence.

Markdown, logged as the run's ``model_card.md`` and set as the registered version's description.
Pure: the job's results in, text out.
"""

from __future__ import annotations

from pipelines.config import JobConfig
from pipelines.result import Experiment
from pipelines.prepare import Prepared


def _f(x) -> str:
    return "n/a" if x is None or x != x else f"{x:.3f}"


def _time_range(prep: Prepared) -> str:
    ts = prep.data.timestamps
    known = [] if ts is None else [t for t in ts if t is not None and t == t]
    return f"{min(known)} .. {max(known)}" if known else "(no timestamps)"


def _choice_lines(job: JobConfig, exp: Experiment) -> list[str]:
    """How the router was chosen: selection ranking, objective, the gate's verdict, the share."""
    lines = []
    if exp.selection is not None:
        ranking = ", ".join(f"{k} {exp.selection.oof[k]:.4f}" for k in exp.selection.ranking())
        sample = (f" on {exp.selection.n_queries:,} of its {exp.train.n_queries:,} queries"
                  if exp.selection.n_queries < exp.train.n_queries else "")
        how = "" if exp.selection.nested else ", hyper-parameters searched once on that sample"
        lines.append(f"- selected on the training split{sample} by {exp.selection.folds}-fold cross-validation "
                     f"(out-of-fold objective{how}): {ranking}")
    goal = exp.goal
    lines.append(f"- objective: {goal.kind}" + (f" (quality within {goal.margin:g} of the best single model's, "
                                                 f"a saving of at least {goal.min_savings:.0%} to ship)"
                                                 if goal.kind == "savings" else ""))
    if exp.gate is not None:
        g = exp.gate
        where = ("the held-out split and the training queries cross-fitted" if exp.evidence is not None
                 else "the held-out split")
        lines.append(f"- the gate, on {g.n:,} queries ({where}): {'passed' if g.passed else 'failed'}: {g.reason}")
    if exp.share_line(job):
        lines.append(f"- {exp.share_line(job)}")
    return lines


def model_card(job: JobConfig, prep: Prepared, exp: Experiment, data_sha256: str, provenance: dict) -> str:
    """The card's markdown; ``provenance``: package version and source commit."""
    f = exp.fitted[exp.exported]
    r, base = f.result, f.result.baselines
    best_params = getattr(f.router, "best_params_", {}) or {}
    lines = [
        f"# {job.name}: {exp.exported} router",
        "",
        f"**Decision:** {exp.decision}",
        "",
        f"**Verdict:** {exp.verdict}",
        "",
        "## Data",
        f"- logs: `{job.logs.path}` (sha256 `{data_sha256[:16]}...`)",
        f"- {prep.data.n_queries:,} queries x {prep.data.n_models} models; logged {_time_range(prep)}",
        f"- split: {exp.split.how}; train {len(exp.split.train):,}, held out {len(exp.split.test):,}",
        f"- embedder: `{prep.embedder.id}`",
        *(f"- {line}" for line in exp.feedback_lines()),
        *(f"- {line}" for line in (exp.sparse.lines(exp.train.n_queries) if exp.sparse is not None else [])),
        "",
        "## The router",
        f"- family `{f.spec.family}`, operating lambda {f.lam:g} ({f.point.target}; calibrated on out-of-fold "
        "predictions for the training queries, exported with the router so a per-call budget or share is "
        "resolved the same way)",
        f"- chosen hyper-parameters: {best_params or 'none (no search)'}",
    ]
    lines += _choice_lines(job, exp)
    ci = r.ci.get("quality", (None, None))
    lines += [
        "",
        "## Held-out evidence",
        f"- quality {_f(r.quality)} (95% CI {_f(ci[0])} .. {_f(ci[1])}), cost ${r.cost:.3g}/query"
        if r.cost == r.cost else f"- quality {_f(r.quality)} (95% CI {_f(ci[0])} .. {_f(ci[1])})",
        f"- best single model (chosen on train) {base.models[base.best_single]}: "
        f"{_f(float(base.single_quality[base.best_single]))}; "
        f"oracle {_f(base.oracle_quality)}; gap closed {_f(r.gap_closed)}",
        "",
        "All candidates on the same held-out queries (losers included), per-task quality below; the "
        "cost-quality plot is the run's `plots/cost_quality.png`.",
        "",
        exp.report.to_markdown(),
        "",
        "## Provenance",
        f"- learned-router {provenance.get('package_version', 'unknown')}, source commit "
        f"{provenance.get('source_commit', 'unknown')}",
        "- configuration: the run's `config/resolved_config.json`",
    ]
    return "\n".join(lines) + "\n"
