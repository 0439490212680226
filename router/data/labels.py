"""Validated canonical logs -> query x model score and cost matrices, labels and utilities.

``build_routing_data`` is the one place the long table becomes arrays. It works on a LazyFrame
with the streaming engine and keeps only numbers and one prompt per query in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from router.data import schema as S
from router.policy import rule
from router.policy.propensity import bandit_rows

UNTAGGED = "(untagged)"  # the task of a query without a tag, in logs that tag others


@dataclass(frozen=True)
class RoutingData:
    """Everything the routers and the evaluation need, row-aligned by query.

    ``scores``/``costs`` are (n_queries, n_models) float64 with NaN where unknown; ``mask`` is True
    where a model's answer was scored. Optional per-query columns are None when the logs lack them.
    ``propensities`` (n_queries, n_models): the chance the logging policy chose each scored answer's
    model, NaN where none was logged; None when no scored row of the logs carries one.
    ``estimated`` (n_queries,) bool: rows whose scores are doubly robust pseudo-outcomes of bandit
    feedback (``router.evaluation.offpolicy``), not observed scores; None when there are none.
    """

    query_ids: np.ndarray  # (n,) str
    prompts: np.ndarray  # (n,) str
    models: tuple[str, ...]
    scores: np.ndarray
    mask: np.ndarray
    costs: np.ndarray
    tasks: np.ndarray | None = None
    splits: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    propensities: np.ndarray | None = None
    estimated: np.ndarray | None = None

    @property
    def n_queries(self) -> int:
        return len(self.query_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def has_cost(self) -> bool:
        return bool(np.isfinite(self.costs).any())

    @property
    def is_bandit(self) -> np.ndarray:
        """(n,) bool: queries with exactly one scored model, whose propensity was logged (bandit feedback)."""
        if self.propensities is None:
            return np.zeros(self.n_queries, dtype=bool)
        return bandit_rows(self.mask, self.propensities)

    def subset(self, rows: np.ndarray) -> RoutingData:
        """The queries at ``rows`` (indices or a boolean mask)."""
        take = lambda a: None if a is None else a[rows]  # noqa: E731
        return replace(
            self,
            query_ids=self.query_ids[rows],
            prompts=self.prompts[rows],
            scores=self.scores[rows],
            mask=self.mask[rows],
            costs=self.costs[rows],
            tasks=take(self.tasks),
            splits=take(self.splits),
            timestamps=take(self.timestamps),
            propensities=take(self.propensities),
            estimated=take(self.estimated),
        )

    def select_models(self, models: list[str] | tuple[str, ...]) -> RoutingData:
        """Keep only ``models`` (in that order)."""
        unknown = [m for m in models if m not in self.models]
        if unknown:
            raise ValueError(f"unknown models {unknown}; the logs have {list(self.models)}")
        idx = [self.models.index(m) for m in models]
        return replace(self, models=tuple(models), scores=self.scores[:, idx], mask=self.mask[:, idx],
                       costs=self.costs[:, idx],
                       propensities=None if self.propensities is None else self.propensities[:, idx])

    def complete_models(self) -> tuple[str, ...]:
        """Models scored on every query."""
        return tuple(m for m, full in zip(self.models, self.mask.all(axis=0)) if full)


def cell_numbers(lf: pl.LazyFrame, query_ids: pl.DataFrame, models: list[str] | tuple[str, ...],
                 cost: bool = False, propensity: bool = False) -> pl.DataFrame:
    """The scored rows as numbers: ``_q`` (row of ``query_ids``), ``_m`` (index in ``models``), score.

    One streaming pass; the prompt and other text columns are never read. Rows whose query or
    model is not listed are left out. With ``cost`` / ``propensity``, those columns too (null when
    unknown or absent from the logs).
    """
    has = set(lf.collect_schema().names())
    query_index = query_ids.select(S.QUERY_ID).with_row_index("_q")
    model_index = pl.col(S.MODEL).replace_strict(
        list(models), list(range(len(models))), default=None, return_dtype=pl.UInt32
    )
    wanted = [name for name, on in ((S.COST, cost), (S.PROPENSITY, propensity)) if on]
    extra = [(pl.col(c).cast(pl.Float64) if c in has else pl.lit(None, pl.Float64)).alias(c) for c in wanted]
    return (
        lf.filter(pl.col(S.SCORE).is_not_null())
        .select(S.QUERY_ID, model_index.alias("_m"), pl.col(S.SCORE), *extra)
        .filter(pl.col("_m").is_not_null())
        .join(query_index.lazy(), on=S.QUERY_ID, how="inner")
        .select("_q", "_m", S.SCORE, *wanted)
        .collect(engine="streaming")
    )


def build_routing_data(lf: pl.LazyFrame, models: list[str] | None = None) -> RoutingData:
    """Pivot validated canonical rows into a ``RoutingData`` (queries sorted by query_id).

    Rows with an empty score leave their cell masked; repeated rows (already checked to agree)
    collapse to one; known costs (and propensities) of repeated rows are averaged.

    Streaming passes, none holding the rows or their text: (1) one row per query (the position of
    its first row, its task, split and latest timestamp) and, separately, the model names; (2) the
    prompt of each query's first row; (3) the scored rows reduced to (query index, model index,
    score, cost, propensity) numbers by a join on the query table, scattered into the matrices with
    numpy. Memory is the query table plus ~24 bytes per row (~32 with propensities), whatever the
    row order: a prompt is never carried through a group-by (polars keeps every page a string was
    read from alive while it holds the string: 4.7 GiB at 10M rows grouped by model).
    """
    has = set(lf.collect_schema().names())
    queries = _query_table(lf)
    model_names = tuple(models) if models else tuple(
        lf.select(pl.col(S.MODEL).unique().drop_nulls().sort()).collect(engine="streaming").to_series().to_list())

    n, m = queries.height, len(model_names)
    has_prop = S.PROPENSITY in has
    cells = cell_numbers(lf, queries.select(S.QUERY_ID), model_names, cost=True, propensity=has_prop)
    flat = cells["_q"].to_numpy().astype(np.int64) * m + cells["_m"].to_numpy()
    scores = np.full(n * m, np.nan)
    scores[flat] = cells[S.SCORE].to_numpy()  # repeated rows agree on the score (validated)
    costs = _cell_means(flat, cells[S.COST].to_numpy(), n * m).reshape(n, m)
    propensities = None
    if has_prop and cells[S.PROPENSITY].null_count() < cells.height:
        propensities = _cell_means(flat, cells[S.PROPENSITY].to_numpy(), n * m).reshape(n, m)
    del cells, flat
    scores = scores.reshape(n, m)
    column = lambda name: queries[name].to_numpy() if name in queries.columns else None  # noqa: E731
    tasks = None
    if S.TASK in queries.columns and queries[S.TASK].null_count() < n:
        # Logs that tag only some queries (e.g. served decisions beside tagged benchmark logs): the
        # untagged ones form a group of their own, so every consumer sees strings only.
        tasks = queries[S.TASK].fill_null(UNTAGGED).to_numpy()
    return RoutingData(
        query_ids=queries[S.QUERY_ID].to_numpy(),
        prompts=queries[S.PROMPT].to_numpy(),
        models=model_names,
        scores=scores,
        mask=~np.isnan(scores),
        costs=costs,
        tasks=tasks,
        splits=column(S.SPLIT),
        timestamps=column(S.TIMESTAMP),
        propensities=propensities,
    )


def _query_table(lf: pl.LazyFrame) -> pl.DataFrame:
    """One row per query, sorted by query_id: its prompt (that of its first row), task, split and latest
    timestamp (the columns the logs have)."""
    schema = lf.collect_schema()
    key = _row_position(schema)
    per_query = [key.min().alias("_first")] if key is not None else [pl.col(S.PROMPT).first()]
    for optional in (S.TASK, S.SPLIT):
        if optional in schema:
            per_query.append(pl.col(optional).drop_nulls().first())
    if S.TIMESTAMP in schema:
        per_query.append(pl.col(S.TIMESTAMP).max())
    # Separate collects: one plan over a shared scan caches the scan for all its consumers.
    queries = lf.group_by(S.QUERY_ID).agg(per_query).sort(S.QUERY_ID).collect(engine="streaming")
    if key is None:
        return queries
    # The prompt copied out of the page it was read from (``+ ""``): a view would keep the page alive.
    prompts = (lf.filter(key.is_in(queries["_first"].implode()))
               .select(S.QUERY_ID, (pl.col(S.PROMPT) + "").alias(S.PROMPT))
               .collect(engine="streaming").unique(S.QUERY_ID, keep="any"))
    return queries.drop("_first").join(prompts, on=S.QUERY_ID, how="left", maintain_order="left")


def _row_position(schema: pl.Schema) -> pl.Expr | None:
    """A row's position in the logs as one integer, (file, row within file), or None when the adapter
    did not record rows. A file column of names (not an Enum) is ordered by a hash of the name."""
    if S.SOURCE_ROW not in schema:
        return None
    file = schema.get(S.SOURCE_FILE)
    if isinstance(file, pl.Enum):
        code = pl.col(S.SOURCE_FILE).to_physical().cast(pl.Int64)
    elif file is None:
        code = pl.lit(0, pl.Int64)
    else:
        code = (pl.col(S.SOURCE_FILE).cast(pl.String).hash(seed=0) // 2**41).cast(pl.Int64)  # < 2**23
    return code * 2**40 + pl.col(S.SOURCE_ROW).cast(pl.Int64)


def _cell_means(flat: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """(size,) mean of the known (non-NaN) ``values`` per cell number ``flat``; NaN where none is known."""
    known = ~np.isnan(values)
    total = np.bincount(flat[known], weights=values[known], minlength=size)
    count = np.bincount(flat[known], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def model_means(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean observed score per model (NaN for a model with no scored answer)."""
    counts = mask.sum(axis=0)
    sums = np.where(mask, scores, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def utility(scores: np.ndarray, costs: np.ndarray, lam: float) -> np.ndarray:
    """Cost-aware utility ``score - lam * cost`` of logged answers (the rule's ``utility``); unknown costs
    count as 0 (quality only)."""
    if lam == 0:
        return scores.copy()
    return rule.utility(scores, np.nan_to_num(costs, nan=0.0), lam)


def best_model_labels(
    scores: np.ndarray, mask: np.ndarray, costs: np.ndarray | None = None, lam: float = 0.0
) -> np.ndarray:
    """Index of the best model per query (-1 where no model was scored).

    Best = highest utility (score - lam * cost); ties go to the lower cost (unknown cost ranks
    last), then to the model with the higher mean score, then to the lower index.
    """
    costs = np.full_like(scores, np.nan) if costs is None else costs
    value = np.where(mask, utility(scores, costs, lam), -np.inf)
    cand = mask & (value == value.max(axis=1, keepdims=True))
    cost_rank = np.where(cand, np.nan_to_num(costs, nan=np.inf), np.inf)
    cand &= cost_rank == cost_rank.min(axis=1, keepdims=True)
    means = np.nan_to_num(model_means(scores, mask), nan=-np.inf)
    mean_rank = np.where(cand, means[None, :], -np.inf)
    cand &= mean_rank == mean_rank.max(axis=1, keepdims=True)
    labels = cand.argmax(axis=1)
    labels[~mask.any(axis=1)] = -1
    return labels


def oracle_scores(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-query best observed score (NaN where no model was scored)."""
    best = np.where(mask, scores, -np.inf).max(axis=1)
    return np.where(mask.any(axis=1), best, np.nan)
