"""Data checks on a canonical LazyFrame: fail early with errors that name file, column and rows.

Schema problems (missing columns, unreadable files) are caught by the adapters; this module runs
the data checks in one streaming pass of aggregations and, only when a check fails, a second
query for a sample of the offending rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from router import schema as S
from router.schema import LogValidationError

_SAMPLE = 5


@dataclass(frozen=True)
class LogStats:
    """What validation counted: rows in, what was merged, what is missing."""

    rows: int
    queries: int
    models: int
    missing_scores: int  # rows whose score is empty: the answer is masked, not dropped
    duplicate_rows: int  # repeated (query_id, model) rows with the same score, merged into one
    files: int


def _row_cols(schema: pl.Schema, *cols: str) -> list[str]:
    return [c for c in (S.SOURCE_FILE, S.SOURCE_ROW, *cols) if c in schema]


def _first_file(rows: pl.DataFrame) -> str | None:
    if S.SOURCE_FILE in rows.columns and rows.height:
        return str(rows[S.SOURCE_FILE][0])
    return None


def _fail(problem: str, lf: pl.LazyFrame, bad: pl.Expr, column: str, expected: str, n_bad: int,
          show: tuple[str, ...]) -> None:
    schema = lf.collect_schema()
    rows = lf.filter(bad).select(_row_cols(schema, *show)).head(_SAMPLE).collect()
    raise LogValidationError(problem, file=_first_file(rows), column=column, rows=rows, expected=expected, n_bad=n_bad)


def validate_logs(lf: pl.LazyFrame, source: str | None = None) -> LogStats:
    """Raise ``LogValidationError`` on the first failed check; return counts when all pass.

    ``source`` names the input in the error for empty logs (no row is left to name it).
    Checks: no rows; empty query_id/model/prompt; non-numeric or NaN scores; non-numeric or
    negative costs; unknown split values; duplicate (query_id, model) rows with different scores;
    a query_id with two different prompts.
    """
    schema = lf.collect_schema()
    has = set(schema.names())

    row_checks: list[tuple[str, pl.Expr, str, str, tuple[str, ...]]] = [
        ("empty query_id", pl.col(S.QUERY_ID).is_null() | (pl.col(S.QUERY_ID) == ""), S.QUERY_ID,
         "a non-empty id", (S.QUERY_ID, S.MODEL)),
        ("empty model name", pl.col(S.MODEL).is_null() | (pl.col(S.MODEL) == ""), S.MODEL,
         "a non-empty model name", (S.QUERY_ID, S.MODEL)),
        ("empty prompt", pl.col(S.PROMPT).is_null(), S.PROMPT, "the query text", (S.QUERY_ID, S.MODEL)),
        ("NaN score", pl.col(S.SCORE).is_nan(), S.SCORE,
         "a finite number (leave the cell empty if the model did not answer)", (S.QUERY_ID, S.MODEL, S.SCORE)),
        ("infinite score", pl.col(S.SCORE).is_infinite(), S.SCORE, "a finite number",
         (S.QUERY_ID, S.MODEL, S.SCORE)),
    ]
    if "_invalid_score" in has:
        row_checks.insert(3, ("non-numeric score", pl.col("_invalid_score"), S.SCORE,
                              "a number such as 0, 1, 0.75 or 7.5 (or true/false)", (S.QUERY_ID, S.MODEL)))
    if S.COST in has:
        row_checks += [
            ("negative cost", pl.col(S.COST) < 0, S.COST, "a cost >= 0 in $", (S.QUERY_ID, S.MODEL, S.COST)),
            ("NaN cost", pl.col(S.COST).is_nan(), S.COST, "a number, or an empty cell when unknown",
             (S.QUERY_ID, S.MODEL, S.COST)),
        ]
    if "_invalid_cost" in has:
        row_checks.append(("non-numeric cost", pl.col("_invalid_cost"), S.COST, "a number in $", (S.QUERY_ID, S.MODEL)))
    if S.SPLIT in has:
        row_checks.append(("unknown split", pl.col(S.SPLIT).is_not_null() & ~pl.col(S.SPLIT).is_in(S.SPLIT_VALUES),
                           S.SPLIT, f"one of {', '.join(S.SPLIT_VALUES)}", (S.QUERY_ID, S.SPLIT)))

    counts = lf.select(
        pl.len().alias("rows"),
        pl.col(S.SCORE).is_null().sum().alias("missing_scores"),
        pl.col(S.QUERY_ID).n_unique().alias("queries"),
        pl.col(S.MODEL).n_unique().alias("models"),
        (pl.col(S.SOURCE_FILE).n_unique() if S.SOURCE_FILE in has else pl.lit(1)).alias("files"),
        *[expr.fill_null(False).sum().alias(f"bad{i}") for i, (_, expr, *_rest) in enumerate(row_checks)],
    )
    per_cell = (
        lf.filter(pl.col(S.SCORE).is_not_null())
        .group_by(S.QUERY_ID, S.MODEL)
        .agg(pl.len().alias("n"), pl.col(S.SCORE).n_unique().alias("distinct"))
        .select(
            (pl.col("n") - 1).sum().alias("duplicate_rows"),
            (pl.col("distinct") > 1).sum().alias("conflicts"),
        )
    )
    per_query = (
        lf.group_by(S.QUERY_ID)
        .agg(pl.col(S.PROMPT).n_unique().alias("prompts"))
        .select((pl.col("prompts") > 1).sum().alias("prompt_conflicts"))
    )
    stats, cells, queries = (
        df.row(0, named=True) for df in pl.collect_all([counts, per_cell, per_query], engine="streaming")
    )

    if stats["rows"] == 0:
        raise LogValidationError("no rows", file=source, expected="at least one (query, model, score) row")
    for i, (problem, expr, column, expected, show) in enumerate(row_checks):
        if stats[f"bad{i}"]:
            _fail(problem, lf, expr.fill_null(False), column, expected, stats[f"bad{i}"], show)

    if cells["conflicts"]:
        conflicting = (
            lf.filter(pl.col(S.SCORE).is_not_null())
            .filter(pl.col(S.SCORE).n_unique().over(S.QUERY_ID, S.MODEL) > 1)
            .select(_row_cols(schema, S.QUERY_ID, S.MODEL, S.SCORE))
            .sort(S.QUERY_ID, S.MODEL, S.SOURCE_ROW if S.SOURCE_ROW in has else S.SCORE)
            .head(_SAMPLE)
            .collect()
        )
        raise LogValidationError(
            "duplicate (query_id, model) rows with different scores", file=_first_file(conflicting),
            column=S.SCORE, rows=conflicting, n_bad=cells["conflicts"],
            expected="one score per query and model (repeated rows must agree)",
        )
    if queries["prompt_conflicts"]:
        # One row per distinct prompt, with its length: long prompts often differ only past the
        # part an error message can show.
        conflicting = (
            lf.filter(pl.col(S.PROMPT).n_unique().over(S.QUERY_ID) > 1)
            .group_by(S.QUERY_ID, S.PROMPT)
            .agg([pl.col(c).first() for c in _row_cols(schema)])
            .with_columns(pl.col(S.PROMPT).str.len_chars().alias("prompt_chars"))
            .select(*_row_cols(schema, S.QUERY_ID, S.PROMPT), "prompt_chars")
            .sort(S.QUERY_ID, *( [S.SOURCE_ROW] if S.SOURCE_ROW in has else []))
            .head(_SAMPLE)
            .collect()
        )
        raise LogValidationError(
            "one query_id has different prompts", file=_first_file(conflicting), column=S.PROMPT,
            rows=conflicting, n_bad=queries["prompt_conflicts"],
            expected="the same prompt text on every row of a query_id",
        )
    return LogStats(
        rows=stats["rows"],
        queries=stats["queries"],
        models=stats["models"],
        missing_scores=stats["missing_scores"],
        duplicate_rows=cells["duplicate_rows"] or 0,
        files=stats["files"],
    )
