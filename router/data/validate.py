"""Data checks on a canonical LazyFrame: fail early with errors that name file, column and rows.

Schema problems (missing columns, unreadable files) are caught by the adapters; this module runs
the data checks in one streaming pass of aggregations and, only when a check fails, a second
query for a sample of the offending rows. Repeated (query, model) rows are then found exactly by
a second streaming pass that reduces the scored rows to (query index, model index, score)
numbers, sorted with numpy. Memory is one entry per query plus a few tens of bytes per row: never
the rows themselves, and a hash instead of each prompt (10M rows of ~300-character prompts
validate in about 1 GiB; see benchmarks/bench_scale.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from router.data import schema as S
from router.data.diagnose import base_suffix, check_csv_fields, read_error, source_paths
from router.data.labels import cell_numbers
from router.data.schema import LogValidationError

_SAMPLE = 5
_SEED = 0x5EED


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
    rows = lf.filter(bad).select(_row_cols(schema, *show)).head(_SAMPLE).collect(engine="streaming")
    # ``_bad_<col>`` holds the text that did not parse: show it as the column the user wrote.
    rows = rows.rename({c: c.removeprefix("_bad_") for c in rows.columns if c.startswith("_bad_")})
    raise LogValidationError(problem, file=_first_file(rows), column=column, rows=rows, expected=expected, n_bad=n_bad)


def _repeated_cells(lf: pl.LazyFrame, query_ids: pl.DataFrame, models: list[str]) -> tuple[int, np.ndarray]:
    """Scored rows repeating a (query, model) cell: how many, and the cells whose scores differ.

    Cells are numbered ``query index * n_models + model index``; sorting those numbers (with the
    scores alongside) puts the repeats of a cell next to each other.
    """
    cells = cell_numbers(lf, query_ids, models)
    flat = cells["_q"].to_numpy().astype(np.int64) * len(models) + cells["_m"].to_numpy()
    score = cells[S.SCORE].to_numpy()
    del cells
    order = np.argsort(flat, kind="stable")
    flat, score = flat[order], score[order]
    del order
    repeat = flat[1:] == flat[:-1]
    conflict = repeat & (score[1:] != score[:-1])
    return int(repeat.sum()), np.unique(flat[1:][conflict])


def _unscored_models(lf: pl.LazyFrame, unscored: pl.DataFrame) -> None:
    """Refuse models none of whose rows has a score: nothing can be learned about them."""
    names = unscored[S.MODEL].to_list()
    schema = lf.collect_schema()
    files = []
    if S.SOURCE_FILE in schema:
        files = (lf.filter(pl.col(S.MODEL).is_in(names)).select(pl.col(S.SOURCE_FILE).cast(pl.String).unique())
                 .collect(engine="streaming").to_series().sort().to_list())
    shown = ", ".join(repr(m) for m in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    problem = f"model{'s' if len(names) > 1 else ''} {shown} ha{'ve' if len(names) > 1 else 's'} no score on any row"
    if len(files) > 1:
        problem += f" in files {', '.join(files[:5])}{' ...' if len(files) > 5 else ''}"
    rows = lf.filter(pl.col(S.MODEL).is_in(names)).select(_row_cols(schema, S.QUERY_ID, S.MODEL, S.SCORE))
    raise LogValidationError(
        problem, file=files[0] if len(files) == 1 else None, column=S.SCORE,
        rows=rows.head(_SAMPLE).collect(engine="streaming"), n_bad=int(unscored["rows"].sum()),
        expected="at least one scored answer per model (drop the model's rows or column, or fill its scores)",
    )


_MAX_SCORE = 1e12  # any real rating scale is far below; 1e308 overflowed later in training
_MAX_COST = 1e6  # $ per call: a million dollars is a unit mistake, not a price


def validate_logs(lf: pl.LazyFrame, source: str | None = None) -> LogStats:
    """Raise ``LogValidationError`` on the first failed check; return counts when all pass.

    ``source`` names the input in the error for empty logs (no row is left to name it).
    Checks: CSV rows with as many fields as the header; no rows; empty query_id/model/prompt;
    non-numeric or NaN scores; non-numeric or negative costs; propensities outside (0, 1];
    unparseable timestamps; unknown split values; models with no score at all; duplicate (query_id, model)
    rows with different scores; a query_id with two different prompts. A file polars cannot read (not UTF-8, broken
    JSON) is named with its first bad line.
    """
    paths: list = []
    try:
        paths = source_paths(lf.collect_schema())
        for path in paths:
            if base_suffix(path) in (".csv", ".tsv"):
                check_csv_fields(path)
        return _validate(lf, source)
    except pl.exceptions.PolarsError as exc:
        raise read_error(exc, paths, source) from exc


@dataclass(frozen=True)
class _RowCheck:
    """A per-row check: the problem's name, the expression true on offending rows, the column to name,
    what was expected, and the columns an error shows of the offending rows."""

    problem: str
    bad: pl.Expr
    column: str
    expected: str
    show: tuple[str, ...]


def _validate(lf: pl.LazyFrame, source: str | None) -> LogStats:
    schema = lf.collect_schema()
    checks = _row_checks(set(schema.names()))
    stats, queries, models, files = _aggregates(lf, checks)
    if stats["rows"] == 0:
        raise LogValidationError("no rows", file=source, expected="at least one (query, model, score) row")
    for i, check in enumerate(checks):
        if stats[f"bad{i}"]:
            _fail(check.problem, lf, check.bad.fill_null(False), check.column, check.expected, stats[f"bad{i}"],
                  check.show)
    if stats["missing_scores"] == stats["rows"]:
        _fail("no row has a score", lf, pl.lit(True), S.SCORE, "a number on the rows of scored answers",
              stats["rows"], (S.QUERY_ID, S.MODEL, S.SCORE))
    unscored = models.filter(pl.col("scored") == 0)
    if unscored.height:
        _unscored_models(lf, unscored)
    model_names = models[S.MODEL].to_list()
    duplicates = _check_repeated_cells(lf, schema, queries, model_names)
    _check_one_prompt_per_query(lf, schema, queries)
    return LogStats(rows=stats["rows"], queries=queries.height, models=len(model_names),
                    missing_scores=stats["missing_scores"], duplicate_rows=duplicates, files=files.height)


def _row_checks(has: set[str]) -> list[_RowCheck]:
    """The per-row checks that apply to a frame with the columns ``has``, in the order errors are reported."""
    ids = (S.QUERY_ID, S.MODEL)
    checks = [
        _RowCheck("empty query_id", pl.col(S.QUERY_ID).is_null() | (pl.col(S.QUERY_ID) == ""), S.QUERY_ID,
                  "a non-empty id", ids),
        _RowCheck("empty model name", pl.col(S.MODEL).is_null() | (pl.col(S.MODEL) == ""), S.MODEL,
                  "a non-empty model name", ids),
        _RowCheck("empty prompt", pl.col(S.PROMPT).is_null() | (pl.col(S.PROMPT).str.strip_chars() == ""), S.PROMPT,
                  "the query text (not empty, not only whitespace)", ids),
        # A lone UTF-16 surrogate (\ud800) in JSON is read as NUL: refused here as /v1/route refuses both.
        _RowCheck("NUL character in prompt", pl.col(S.PROMPT).str.contains("\x00", literal=True), S.PROMPT,
                  "text without NUL (U+0000) characters; a lone UTF-16 surrogate such as \\ud800 in JSON reads as "
                  "one: fix the text that wrote it", ids),
        _RowCheck("NaN score", pl.col(S.SCORE).is_nan(), S.SCORE,
                  "a finite number (leave the cell empty if the model did not answer)", (*ids, S.SCORE)),
        _RowCheck("infinite score", pl.col(S.SCORE).is_infinite(), S.SCORE, "a finite number", (*ids, S.SCORE)),
        # Finite but absurd (1e308): sums and model fits overflow to inf far from here.
        _RowCheck("score out of range", pl.col(S.SCORE).abs() > _MAX_SCORE, S.SCORE,
                  f"a score of plausible magnitude (|score| <= {_MAX_SCORE:g})", (*ids, S.SCORE)),
    ]
    if "_bad_score" in has:
        checks.insert(3, _RowCheck("non-numeric score", pl.col("_bad_score").is_not_null(), S.SCORE,
                                   "a number such as 0, 1, 0.75 or 7.5 (or true/false, or empty when unscored)",
                                   (*ids, "_bad_score")))
    if S.COST in has:
        checks += [_RowCheck("negative cost", pl.col(S.COST) < 0, S.COST, "a cost >= 0 in $", (*ids, S.COST)),
                   _RowCheck("NaN cost", pl.col(S.COST).is_nan(), S.COST, "a number, or an empty cell when unknown",
                             (*ids, S.COST)),
                   # 1e308 or inf: sums, means and lam x cost overflow to inf in summaries and decisions
                   _RowCheck("cost out of range", pl.col(S.COST) > _MAX_COST, S.COST,
                             f"a cost in $ per call of plausible size (<= {_MAX_COST:g})", (*ids, S.COST))]
    if "_bad_cost" in has:
        checks.append(_RowCheck("non-numeric cost", pl.col("_bad_cost").is_not_null(), S.COST, "a number in $",
                                (*ids, "_bad_cost")))
    if S.PROPENSITY in has:
        p = pl.col(S.PROPENSITY)
        checks.append(_RowCheck("propensity out of (0, 1]", p.is_nan() | (p <= 0) | (p > 1), S.PROPENSITY,
                                "the probability (0 < p <= 1) with which the logging policy chose the row's model, "
                                "or an empty cell when unknown", (*ids, S.PROPENSITY)))
    if "_bad_propensity" in has:
        checks.append(_RowCheck("non-numeric propensity", pl.col("_bad_propensity").is_not_null(), S.PROPENSITY,
                                "a probability in (0, 1]", (*ids, "_bad_propensity")))
    if "_bad_timestamp" in has:
        checks.append(_RowCheck("unparseable timestamp", pl.col("_bad_timestamp").is_not_null(), S.TIMESTAMP,
                                "an ISO date or time such as 2025-06-01 or 2025-06-01T12:00:00Z (or an empty cell)",
                                (*ids, "_bad_timestamp")))
    if S.SPLIT in has:
        unknown = pl.col(S.SPLIT).is_not_null() & ~pl.col(S.SPLIT).is_in(S.SPLIT_VALUES)
        checks.append(_RowCheck("unknown split", unknown, S.SPLIT, f"one of {', '.join(S.SPLIT_VALUES)}",
                                (S.QUERY_ID, S.SPLIT)))
    return checks


def _aggregates(lf: pl.LazyFrame, checks: list[_RowCheck]) -> tuple[dict, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One streaming pass each: (row counts with each check's offenders ``bad<i>``, one row per query with the
    min and max hash of its prompts, per model its rows and scored rows, the files with rows)."""
    counts = lf.select(
        pl.len().alias("rows"),
        pl.col(S.SCORE).is_null().sum().alias("missing_scores"),
        *[check.bad.fill_null(False).sum().alias(f"bad{i}") for i, check in enumerate(checks)],
    )
    # One row per query with the min and max 64-bit hash of its prompts: they differ exactly when
    # the query has two prompts (a differing hash is always a different text), and 16 bytes per
    # query replace the prompt texts. Its height is the number of queries.
    prompt_hash = pl.col(S.PROMPT).hash(seed=_SEED)
    per_query = lf.group_by(S.QUERY_ID).agg(prompt_hash.min().alias("lo"), prompt_hash.max().alias("hi"))
    models_q = (lf.group_by(S.MODEL).agg(pl.len().alias("rows"), pl.col(S.SCORE).count().alias("scored"))
                .drop_nulls(S.MODEL).sort(S.MODEL))
    # Files with rows, by a group_by: an n_unique beside the sums above cost ~0.5 GiB more at 10M rows.
    has_files = S.SOURCE_FILE in lf.collect_schema()
    files_q = lf.group_by(S.SOURCE_FILE).agg(pl.len()) if has_files else pl.LazyFrame({"n": [1]})
    # Separate collects: one plan over a shared scan caches the scan for all its consumers (3.6 GiB
    # at 10M rows grouped by model, 0.9 GiB for the largest of these alone).
    stats, queries, models, files = (q.collect(engine="streaming") for q in (counts, per_query, models_q, files_q))
    return stats.row(0, named=True), queries, models, files


def _check_repeated_cells(lf: pl.LazyFrame, schema: pl.Schema, queries: pl.DataFrame, model_names: list[str]) -> int:
    """Refuse repeated (query_id, model) rows with different scores; return how many repeats agreed."""
    duplicates, conflicts = _repeated_cells(lf, queries.select(S.QUERY_ID), model_names)
    if not len(conflicts):
        return duplicates
    keys = pl.DataFrame({
        S.QUERY_ID: queries[S.QUERY_ID].gather(conflicts // len(model_names)),
        S.MODEL: pl.Series(model_names, dtype=pl.String).gather(conflicts % len(model_names)),
    })
    conflicting = (
        lf.filter(pl.col(S.SCORE).is_not_null())
        .join(keys.lazy(), on=[S.QUERY_ID, S.MODEL], how="semi", maintain_order="left")
        .select(_row_cols(schema, S.QUERY_ID, S.MODEL, S.SCORE))
        .sort(S.QUERY_ID, S.MODEL, *(_row_cols(schema) or [S.SCORE]))
        .head(_SAMPLE)
        .collect(engine="streaming")
    )
    raise LogValidationError(
        "duplicate (query_id, model) rows with different scores", file=_first_file(conflicting),
        column=S.SCORE, rows=conflicting, n_bad=len(conflicts), unit="query-model pair",
        expected="one score per query and model (repeated rows must agree)",
    )


def _check_one_prompt_per_query(lf: pl.LazyFrame, schema: pl.Schema, queries: pl.DataFrame) -> None:
    """Refuse a query_id whose rows carry different prompts."""
    two_prompts = queries.filter(pl.col("lo") != pl.col("hi")).select(S.QUERY_ID)
    if not two_prompts.height:
        return
    # One row per distinct prompt, with its length: long prompts often differ only past the
    # part an error message can show.
    conflicting = (
        lf.join(two_prompts.lazy(), on=S.QUERY_ID, how="semi", maintain_order="left")
        .group_by(S.QUERY_ID, S.PROMPT)
        .agg([pl.col(c).first() for c in _row_cols(schema)])
        .with_columns(pl.col(S.PROMPT).str.len_chars().alias("prompt_chars"))
        .select(*_row_cols(schema, S.QUERY_ID, S.PROMPT), "prompt_chars")
        .sort(S.QUERY_ID, *_row_cols(schema))
        .head(_SAMPLE)
        .collect(engine="streaming")
    )
    raise LogValidationError(
        "one query_id has different prompts", file=_first_file(conflicting), column=S.PROMPT,
        rows=conflicting, n_bad=two_prompts.height, unit="query",
        expected="the same prompt text on every row of a query_id",
    )
