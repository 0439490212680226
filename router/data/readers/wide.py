"""Wide files (RouterBench style): one row per query, one score column per model, optional
``<model>|total_cost`` columns; prompts may sit in a separate table joined on the id column."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.read import concat, match_case, normalize, read_table, resolve_paths, schema_of, source_file_dtype
from router.data.schema import LogValidationError


@dataclass(frozen=True)
class WideSpec:
    """How to read a wide file: one row per query, one score column per model.

    Defaults fit RouterBench (``sample_id, prompt, eval_name, <model>..., <model>|total_cost``).
    ``prompts_file`` joins prompt (and task) text kept in a separate table on ``id_column``.
    """

    id_column: str = "sample_id"
    prompt_column: str = "prompt"
    task_column: str | None = "eval_name"
    cost_suffix: str = "|total_cost"
    models: tuple[str, ...] | None = None
    prompts_file: str | None = None


_NOT_MODELS = {"", "unnamed: 0", "index", "oracle_model_to_route_to", S.SPLIT, S.TIMESTAMP, S.PROPENSITY}


def wide_model_columns(names: Iterable[str], spec: WideSpec) -> list[str]:
    """Model score columns of a wide table: not meta columns, not ``<model>|...`` side columns.

    When any ``<model><cost_suffix>`` column exists, only columns with one count as models.
    """
    names = list(names)
    if spec.models:
        absent = [m for m in spec.models if m not in names]
        if absent:
            raise LogValidationError(f"model columns {absent} not found", column=absent[0])
        return list(spec.models)
    meta = {spec.id_column, spec.prompt_column, spec.task_column} | _NOT_MODELS
    candidates = [n for n in names if n not in meta and n.lower() not in _NOT_MODELS and "|" not in n]
    with_cost = [n for n in candidates if f"{n}{spec.cost_suffix}" in names]
    return with_cost or candidates


def scan_wide(source: str | Path | Sequence[str | Path], spec: WideSpec | None = None) -> pl.LazyFrame:
    """Wide files (RouterBench style) -> canonical long rows, one per (query, model column)."""
    spec = spec or WideSpec()
    prompts: pl.LazyFrame | None = None
    meta = [c for c in (spec.id_column, spec.prompt_column, spec.task_column) if c]
    if spec.prompts_file:
        prompts = read_table(Path(spec.prompts_file))
        prompts, _ = match_case(prompts, schema_of(prompts, Path(spec.prompts_file)), meta)
    paths = resolve_paths(source)
    # The prompts file is listed too, so that validation checks its CSV rows like the scores'.
    file_dtype = source_file_dtype([*paths, *([Path(spec.prompts_file)] if spec.prompts_file else [])])
    frames = []
    for path in paths:
        lf = read_table(path)
        lf, _ = match_case(lf, schema_of(lf, path), meta)
        if prompts is not None:
            psch = schema_of(prompts, Path(spec.prompts_file))
            miss = [c for c in meta if c not in psch]
            if miss:
                raise LogValidationError("missing column in prompts file", file=spec.prompts_file, column=miss[0])
            scores_schema = schema_of(lf, path)
            lf = lf.drop([c for c in meta[1:] if c in scores_schema]).join(
                prompts.select(meta), on=spec.id_column, how="left"
            )
        schema = schema_of(lf, path)
        for needed in (spec.id_column, spec.prompt_column):
            if needed not in schema:
                raise LogValidationError(
                    "missing column of the wide format",
                    file=str(path),
                    column=needed,
                    expected=f"an id column '{spec.id_column}' and a prompt column '{spec.prompt_column}' "
                    f"(found: {', '.join(schema.names())})",
                )
        models = wide_model_columns(schema.names(), spec)
        if not models:
            raise LogValidationError("no model score columns found", file=str(path))
        base = [pl.col(spec.id_column).cast(pl.String).alias(S.QUERY_ID), pl.col(spec.prompt_column).alias(S.PROMPT)]
        if spec.task_column and spec.task_column in schema:
            base.append(pl.col(spec.task_column).alias(S.TASK))
        for extra in (S.SPLIT, S.TIMESTAMP):
            if extra in schema:
                base.append(pl.col(extra))
        lf = lf.with_row_index("_wide_row", offset=1)
        per_model = []
        for model in models:
            cols = [*base, pl.lit(model).alias(S.MODEL), pl.col(model).alias(S.SCORE), pl.col("_wide_row")]
            cost_col = f"{model}{spec.cost_suffix}"
            if cost_col in schema:
                cols.append(pl.col(cost_col).alias(S.COST))
            per_model.append(lf.select(cols))
        long = pl.concat(per_model, how="diagonal_relaxed")
        # Row numbers name the wide row, which is what a user can find in their file.
        frames.append(normalize(long, schema_of(long, path), path, row_column="_wide_row", file_dtype=file_dtype))
    return concat(frames)
