"""A readable summary of routing data: who is good, how much the oracle leaves on the table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from router.data.labels import RoutingData, best_model_labels, model_means, oracle_scores
from router.data.schema import counted
from router.data.validate import LogStats


@dataclass(frozen=True)
class ModelRow:
    model: str
    mean_score: float
    mean_cost: float | None  # $ per query where known
    coverage: float  # share of queries this model answered
    best_share: float  # share of queries where it is the (tie-broken) best model


@dataclass(frozen=True)
class DataSummary:
    queries: int
    models: int
    rows: int | None
    missing_cells: int  # (query, model) pairs with no score: masked, never filled
    duplicate_rows: int | None
    complete_models: list[str]
    scope: str  # which models the headline figures use
    best_single: str
    best_single_score: float
    oracle_score: float | None  # None: no query has two scored models (partial feedback alone)
    per_model: list[ModelRow] = field(default_factory=list)
    tasks: dict[str, int] | None = None
    splits: dict[str, int] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        lines = [
            f"**{counted(self.queries, 'query')} x {counted(self.models, 'model')}**"
            + (f" from {counted(self.rows, 'row')}" if self.rows is not None else ""),
            f"- missing (query, model) scores, masked: {self.missing_cells:,}",
        ]
        if self.duplicate_rows:
            lines.append(f"- repeated rows merged: {self.duplicate_rows:,}")
        lines += [
            f"- headline figures on {self.scope}",
            f"- best single model: {self.best_single} ({self.best_single_score:.3f})",
            f"- oracle: {self.oracle_score:.3f} (gap +{self.oracle_score - self.best_single_score:.3f})"
            if self.oracle_score is not None else
            "- oracle: not measurable (no query has two scored models: the logs hold one answer per query, as "
            "a router's own traffic does)",
        ]
        if self.splits:
            lines.append("- splits: " + ", ".join(f"{k} {v:,}" for k, v in self.splits.items()))
        lines += ["", "| model | mean score | $ per 1k queries | coverage | best on |", "|---|---|---|---|---|"]
        for r in self.per_model:
            cost = "" if r.mean_cost is None else f"{r.mean_cost * 1000:.4g}"
            lines.append(f"| {r.model} | {r.mean_score:.3f} | {cost} | {r.coverage:.1%} | {r.best_share:.1%} |")
        return "\n".join(lines)


def summarize(data: RoutingData, stats: LogStats | None = None) -> DataSummary:
    """Per-model means, costs, coverage and best-model shares; best single and oracle.

    When some models miss queries, the best single model and oracle are computed on the models
    complete on every query (comparable means); if none is complete, on the observed answers.
    """
    complete = list(data.complete_models())
    scoped = data.select_models(complete) if 1 <= len(complete) < data.n_models else data
    if len(complete) == data.n_models:
        scope = f"all {counted(data.n_models, 'model')} (every model answered every query)"
    elif complete:
        scope = f"the {counted(len(complete), 'model')} complete on all {counted(data.n_queries, 'query')}"
    else:
        scope = "the answers observed (no model answered every query)"
    means = model_means(data.scores, data.mask)
    scoped_means = model_means(scoped.scores, scoped.mask)
    best = int(np.nanargmax(scoped_means))
    labels = best_model_labels(data.scores, data.mask, data.costs)
    answered = labels >= 0
    best_counts = np.bincount(labels[answered], minlength=data.n_models)
    known_cost = np.isfinite(data.costs)
    rows = []
    for j, model in enumerate(data.models):
        cost = float(np.nanmean(data.costs[:, j])) if known_cost[:, j].any() else None
        rows.append(ModelRow(model=model, mean_score=float(means[j]), mean_cost=cost,
                             coverage=float(data.mask[:, j].mean()),
                             best_share=float(best_counts[j] / max(answered.sum(), 1))))
    rows.sort(key=lambda r: -r.mean_score)
    count = lambda a: None if a is None else dict(zip(*np.unique(a[a != None].astype(str), return_counts=True)))  # noqa: E711,E731
    return DataSummary(
        queries=data.n_queries,
        models=data.n_models,
        rows=stats.rows if stats else None,
        missing_cells=int((~data.mask).sum()),
        duplicate_rows=stats.duplicate_rows if stats else None,
        complete_models=complete,
        scope=scope,
        best_single=scoped.models[best],
        best_single_score=float(scoped_means[best]),
        oracle_score=_oracle(scoped),
        per_model=rows,
        tasks={k: int(v) for k, v in count(data.tasks).items()} if data.tasks is not None else None,
        splits={k: int(v) for k, v in count(data.splits).items()} if data.splits is not None else None,
    )


def _oracle(data: RoutingData) -> float | None:
    """Mean best observed score over the queries with at least two scored models (a query with one has no
    choice to make: its 'best' would be whatever the logging router picked)."""
    rows = data.mask.sum(axis=1) >= 2
    if not rows.any():
        return None
    return float(np.nanmean(oracle_scores(data.scores[rows], data.mask[rows])))
