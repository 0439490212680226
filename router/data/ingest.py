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
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.diagnose import BOM, base_suffix, diagnose, open_bytes
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
    return base_suffix(path) in LOG_SUFFIXES


def _split_from_name(path: Path) -> str | None:
    stem = path.name.split(".")[0].lower()
    for split in S.SPLIT_VALUES:
        if stem.endswith(f"_{split}") or stem.endswith(f"-{split}"):
            return split
    return None


def read_table(path: Path) -> pl.LazyFrame:
    """Scan one file as text-preserving columns (CSV cells stay strings until normalised)."""
    suffix = base_suffix(path)
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
            return _scan_json_lines(path, gz)
        if suffix == ".json":
            return pl.read_json(path, infer_schema_length=None).lazy()
        if suffix in (".parquet", ".pq"):
            return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise diagnose(path, exc) from exc
    raise LogValidationError(f"unknown file type '{suffix}'", file=str(path), expected=", ".join(LOG_SUFFIXES))


def _scan_json_lines(path: Path, gz: bool) -> pl.LazyFrame:
    """JSON lines with the canonical columns (but timestamps) read as text, like CSV cells.

    polars infers types from the first 10,000 lines; a score that turns into "n/a" later would
    crash the read, while as text it becomes a named non-numeric score. A UTF-8 BOM is dropped.
    """
    with open_bytes(path) as f:
        bom = f.read(len(BOM)) == BOM
    if gz or bom:  # read into memory: polars' JSON reader neither decompresses nor skips a BOM
        with open_bytes(path) as f:
            data = f.read()[len(BOM) if bom else 0:]
        source = lambda: io.BytesIO(data)  # noqa: E731
    else:
        source = lambda: path  # noqa: E731
    length = None if gz else 10_000
    names = _schema(pl.scan_ndjson(source(), infer_schema_length=length), path).names()
    text = {c: pl.String for c in names if c in S.CANONICAL and c != S.TIMESTAMP}
    return pl.scan_ndjson(source(), infer_schema_length=length, schema_overrides=text or None)


def _schema(lf: pl.LazyFrame, path: Path) -> pl.Schema:
    try:
        return lf.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise diagnose(path, exc) from exc


def match_case(lf: pl.LazyFrame, schema: pl.Schema, names: Iterable[str]) -> tuple[pl.LazyFrame, pl.Schema]:
    """Rename columns that differ from ``names`` only in case (``Model_A`` -> ``model_a``).

    A name two columns fold to (``Score`` and ``SCORE``) is left alone: which one is meant is unclear.
    """
    wanted = {n.lower(): n for n in names}
    folded: dict[str, list[str]] = {}
    for col in schema.names():
        folded.setdefault(col.lower(), []).append(col)
    rename = {cols[0]: wanted[key] for key, cols in folded.items()
              if key in wanted and len(cols) == 1 and cols[0] != wanted[key]}
    if not rename:
        return lf, schema
    lf = lf.rename(rename)
    return lf, lf.collect_schema()


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


def _bad_number(column: str, dtype: pl.DataType) -> pl.Expr | None:
    """The text of a cell that is present but not a number (null elsewhere; None: cannot happen)."""
    if dtype != pl.String:
        return None
    text = pl.col(column).str.strip_chars()
    parsed = _numeric(column, dtype, pl.Float64())
    return pl.when(text.is_not_null() & (text != "") & parsed.is_null()).then(text)


def _timestamp(dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr | None]:
    """The timestamp as UTC datetimes, and the text of cells that are present but unparseable.

    polars infers one format from the first value; the ISO variants (``Z`` or an offset, ``T`` or a
    space, a date alone) are tried after it, so a column mixing them still parses. Text of 9 or
    more digits is epoch seconds, as numbers are (CSV cells are always text).
    """
    col = pl.col(S.TIMESTAMP)
    if dtype == pl.String:
        text = col.str.strip_chars()
        epoch = pl.when(text.str.contains(r"^\d{9,}(\.\d*)?$")).then(text.cast(pl.Float64, strict=False) * 1e6)
        iso = (text.str.replace(r"(?i)\s*(z|utc|gmt)$", "+00:00")
               .str.replace(r"^(\d{4}-\d{2}-\d{2})[ T]", "${1}T"))
        utc = dict(time_unit="us", time_zone="UTC", strict=False)
        parsed = pl.coalesce(
            text.str.to_datetime(**utc),
            iso.str.to_datetime(format="%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False)
            .dt.convert_time_zone("UTC"),
            iso.str.to_datetime(format="%Y-%m-%dT%H:%M:%S%.f", **utc),
            iso.str.to_datetime(format="%Y-%m-%dT%H:%M", **utc),
            iso.str.to_datetime(format="%Y-%m-%d", **utc),
            pl.from_epoch(epoch.cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC"),
        )
        return parsed, pl.when(text.is_not_null() & (text != "") & parsed.is_null()).then(text)
    if isinstance(dtype, pl.Datetime):
        col = col.dt.cast_time_unit("us")
        return (col.dt.replace_time_zone("UTC") if dtype.time_zone is None else col.dt.convert_time_zone("UTC")), None
    if dtype.is_integer() or dtype.is_float():  # epoch seconds
        seconds = pl.from_epoch(col.cast(pl.Int64), time_unit="s")
        return seconds.dt.replace_time_zone("UTC").dt.cast_time_unit("us"), None
    parsed = col.cast(pl.Datetime("us", "UTC"), strict=False)
    return parsed, pl.when(col.is_not_null() & parsed.is_null()).then(col.cast(pl.String))


def source_file_dtype(paths: Sequence[Path]) -> pl.Enum:
    """The dtype of ``_source_file`` for logs read from ``paths``: an Enum of their names.

    Rows materialised with their source (error samples, a user's collect) then hold a small
    integer each instead of a copy of the path (5M rows: 44 MiB instead of 292 MiB).
    """
    return pl.Enum(list(dict.fromkeys(str(p) for p in paths)))


def normalize(lf: pl.LazyFrame, schema: pl.Schema, path: Path, row_column: str | None = None,
              file_dtype: pl.DataType | None = None) -> pl.LazyFrame:
    """Cast a long-format frame to the canonical dtypes and add source bookkeeping.

    Unparseable scores, costs and timestamps become null, and their text goes to a ``_bad_<col>``
    column (null on good rows) that validation reports.
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
        bad = None
        if name in _TEXT_COLUMNS:
            expr = pl.col(name).cast(pl.String)
            if name == S.SPLIT:
                expr = expr.str.strip_chars().str.to_lowercase()
        elif name == S.TIMESTAMP:
            expr, bad = _timestamp(dtype)
        else:
            expr = _numeric(name, dtype, target)
            if name in (S.SCORE, S.COST, S.PROPENSITY):
                bad = _bad_number(name, dtype)
        exprs.append(expr.alias(name))
        if bad is not None:
            flags.append(bad.alias(f"_bad_{name}"))
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
        lf, schema = match_case(lf, _schema(lf, path), S.CANONICAL)
        frames.append(normalize(lf, schema, path, file_dtype=file_dtype))
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
