"""Log files -> the canonical LazyFrame (see ``schema``): paths, reading, normalising, long files.

``scan_long`` reads canonical long files; the other formats (wide, pairwise) and the entry point
``scan_logs`` live in ``formats`` and build on the readers here. Every adapter is lazy where the
file format allows it (plain CSV, JSONL and Parquet are scanned; gzip files are decompressed on
read). Each output row carries ``_source_file`` and ``_source_row`` so that validation errors can
name the file and row. A file whose name ends in ``_train``, ``_test`` or ``_ood`` (before its
extensions) and has no ``split`` column gets that split. ``filter_since`` and ``cap_queries``
narrow a canonical frame to a time window or a sample of queries.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.schema import LogValidationError

LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv")
_TEXT_COLUMNS = (S.QUERY_ID, S.PROMPT, S.MODEL, S.TASK, S.SPLIT)


# ----------------------------------------------------------------------------- files


def resolve_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """One file, a glob, a directory (its log files, recursively) or a list of those."""
    if isinstance(source, (list, tuple)):
        return [p for item in source for p in resolve_paths(item)]
    text = str(source)
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        paths = [p for p in paths if p.is_file()]
    elif Path(text).is_dir():
        paths = sorted(p for p in Path(text).rglob("*") if p.is_file() and _is_log_file(p))
    elif Path(text).is_file():
        paths = [Path(text)]
    else:
        raise LogValidationError("no such file, directory or glob", file=text)
    if not paths:
        raise LogValidationError(
            "matched no log files", file=text, expected=f"files ending in {', '.join(LOG_SUFFIXES)} (optionally .gz)"
        )
    return paths


def _is_log_file(path: Path) -> bool:
    return _base_suffix(path) in LOG_SUFFIXES


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _split_from_name(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    for split in S.SPLIT_VALUES:
        if stem.endswith(f"_{split}") or stem.endswith(f"-{split}"):
            return split
    return None


def read_table(path: Path) -> pl.LazyFrame:
    """Scan one file as text-preserving columns (CSV cells stay strings until normalised)."""
    suffix = _base_suffix(path)
    gz = path.suffix.lower() == ".gz"
    try:
        if suffix in (".csv", ".tsv"):
            sep = "\t" if suffix == ".tsv" else ","
            # All-string read: a stray "n/a" in row 900,000 must become a named validation error,
            # not a schema-inference crash.
            if gz:
                return pl.read_csv(path, separator=sep, infer_schema=False).lazy()
            return pl.scan_csv(path, separator=sep, infer_schema=False)
        if suffix in (".jsonl", ".ndjson"):
            if gz:
                return pl.read_ndjson(path, infer_schema_length=None).lazy()
            return pl.scan_ndjson(path, infer_schema_length=10_000)
        if suffix == ".json":
            return pl.read_json(path, infer_schema_length=None).lazy()
        if suffix in (".parquet", ".pq"):
            return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise LogValidationError(f"could not be read: {exc}", file=str(path)) from exc
    raise LogValidationError(f"unknown file type '{suffix}'", file=str(path), expected=", ".join(LOG_SUFFIXES))


def _schema(lf: pl.LazyFrame, path: Path) -> pl.Schema:
    try:
        return lf.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise LogValidationError(f"could not be read: {exc}", file=str(path)) from exc


# ----------------------------------------------------------------------------- normalising


def _numeric(column: str, dtype: pl.DataType, target: pl.DataType) -> pl.Expr:
    """Cast to ``target``; text 'true'/'false' count as 1/0 (RouteLLM logs correctness that way)."""
    col = pl.col(column)
    if dtype == pl.String:
        lowered = col.str.strip_chars().str.to_lowercase()
        col = (
            pl.when(lowered == "true")
            .then(pl.lit("1"))
            .when(lowered == "false")
            .then(pl.lit("0"))
            .when(lowered == "")
            .then(pl.lit(None, pl.String))
            .otherwise(col.str.strip_chars())
        )
        if target.is_integer():
            return col.cast(pl.Float64, strict=False).round(0).cast(target, strict=False)
    return col.cast(target, strict=False)


def _invalid_number(column: str, dtype: pl.DataType) -> pl.Expr:
    """True where a text cell is present but is not a number."""
    if dtype != pl.String:
        return pl.lit(False)
    text = pl.col(column).str.strip_chars()
    parsed = _numeric(column, dtype, pl.Float64())
    return text.is_not_null() & (text != "") & parsed.is_null()


def _timestamp(dtype: pl.DataType) -> pl.Expr:
    col = pl.col(S.TIMESTAMP)
    if dtype == pl.String:
        return col.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.cast_time_unit("us")
        return col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")
    if dtype.is_integer() or dtype.is_float():  # epoch seconds
        return pl.from_epoch(col.cast(pl.Int64), time_unit="s").dt.replace_time_zone("UTC").dt.cast_time_unit("us")
    return col.cast(pl.Datetime("us", "UTC"), strict=False)


def source_file_dtype(paths: Sequence[Path]) -> pl.Enum:
    """The dtype of ``_source_file`` for logs read from ``paths``: an Enum of their names.

    Rows materialised with their source (error samples, a user's collect) then hold a small
    integer each instead of a copy of the path (5M rows: 44 MiB instead of 292 MiB).
    """
    return pl.Enum(list(dict.fromkeys(str(p) for p in paths)))


def normalize(lf: pl.LazyFrame, schema: pl.Schema, path: Path, row_column: str | None = None,
              file_dtype: pl.DataType | None = None) -> pl.LazyFrame:
    """Cast a long-format frame to the canonical dtypes and add source bookkeeping.

    Unparseable numbers become null plus an ``_invalid_<col>`` flag that validation reports.
    ``row_column`` names an existing row-number column to report instead of the frame's own rows.
    ``file_dtype`` types ``_source_file`` (see ``source_file_dtype``; default String).
    """
    missing = S.missing_columns(schema)
    if missing:
        raise LogValidationError(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(repr(m) for m in missing)}",
            file=str(path),
            column=missing[0],
            expected=f"columns {', '.join(S.REQUIRED)} (found: {', '.join(schema.names()) or 'none'})",
        )
    exprs: list[pl.Expr] = []
    flags: list[pl.Expr] = []
    for name, target in S.CANONICAL.items():
        if name not in schema:
            continue
        dtype = schema[name]
        if name in _TEXT_COLUMNS:
            expr = pl.col(name).cast(pl.String)
            if name == S.SPLIT:
                expr = expr.str.strip_chars().str.to_lowercase()
        elif name == S.TIMESTAMP:
            expr = _timestamp(dtype)
        else:
            expr = _numeric(name, dtype, target)
            if name in (S.SCORE, S.COST):
                flags.append(_invalid_number(name, dtype).alias(f"_invalid_{name}"))
        exprs.append(expr.alias(name))
    split = _split_from_name(path)
    if S.SPLIT not in schema and split is not None:
        exprs.append(pl.lit(split).alias(S.SPLIT))
    if row_column is None:
        lf, row_column = lf.with_row_index(S.SOURCE_ROW, offset=1), S.SOURCE_ROW
    return lf.select(
        *exprs,
        *flags,
        pl.lit(str(path), dtype=file_dtype or pl.String).alias(S.SOURCE_FILE),
        pl.col(row_column).cast(pl.Int64).alias(S.SOURCE_ROW),
    )


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


# ----------------------------------------------------------------------------- long files


def scan_long(source: str | Path | Sequence[str | Path]) -> pl.LazyFrame:
    """Canonical long files (JSONL, Parquet, CSV; plain or gzip): one file, a glob or a directory."""
    paths = resolve_paths(source)
    file_dtype = source_file_dtype(paths)
    frames = []
    for path in paths:
        lf = read_table(path)
        frames.append(normalize(lf, _schema(lf, path), path, file_dtype=file_dtype))
    return _concat(frames)


# ----------------------------------------------------------------------------- windows and samples


def _utc(when: datetime | date | str) -> datetime:
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.strip())
        except ValueError:
            raise ValueError(f"since={when!r} is not an ISO date or time such as 2025-06-01 or "
                             "2025-06-01T12:00:00Z") from None
    if not isinstance(when, datetime):  # a date: from its midnight, UTC
        when = datetime(when.year, when.month, when.day)
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def filter_since(lf: pl.LazyFrame, since: datetime | date | str | None) -> pl.LazyFrame:
    """The queries last logged at or after ``since``, with all their rows (None: all queries).

    A query is kept or dropped whole (its latest ``timestamp`` decides, the time ``RoutingData``
    gives it), so a query whose answers straddle ``since`` keeps every model's answer. Rows with
    no timestamp count only through their query's other rows. ``since`` is a datetime, a date
    (midnight) or an ISO string; without a time zone it is UTC. Lazy: no data is read here.
    """
    if since is None:
        return lf
    start = _utc(since)
    schema = lf.collect_schema()
    if S.TIMESTAMP not in schema:
        raise LogValidationError(
            "the logs have no timestamps to filter by", column=S.TIMESTAMP,
            expected=f"a '{S.TIMESTAMP}' column to keep queries since {start.isoformat()}",
        )
    recent = (
        lf.group_by(S.QUERY_ID)
        .agg(pl.col(S.TIMESTAMP).max())
        .filter(pl.col(S.TIMESTAMP) >= pl.lit(start, dtype=pl.Datetime("us", "UTC")))
        .select(S.QUERY_ID)
    )
    return lf.join(recent, on=S.QUERY_ID, how="semi", maintain_order="left")


def cap_queries(lf: pl.LazyFrame, max_queries: int | None, seed: int = 0) -> pl.LazyFrame:
    """At most ``max_queries`` queries, with all their rows, drawn at random (None: all queries).

    The sample is the ``max_queries`` query_ids with the smallest seeded hash, so it depends only
    on the set of ids and ``seed`` (not on file order), and a larger cap keeps every query of a
    smaller one. Reproducible for a given polars version (its hash function is not guaranteed
    stable across versions). Lazy: no data is read here.
    """
    if max_queries is None:
        return lf
    if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
        raise ValueError(f"max_queries must be a positive integer or None, got {max_queries!r}")
    chosen = (
        lf.select(pl.col(S.QUERY_ID).unique())
        .with_columns(pl.col(S.QUERY_ID).hash(seed=seed).alias("_rank"))
        .bottom_k(max_queries, by=["_rank", S.QUERY_ID])
        .select(S.QUERY_ID)
    )
    return lf.join(chosen, on=S.QUERY_ID, how="semi", maintain_order="left")
