"""The low-level reading layer every log reader builds on: paths, tables, normalising, concatenation.

- ``resolve_paths``: one file, a glob, a directory (its log files, recursively) or a list of those;
- ``read_table``: one file as a LazyFrame of text-preserving columns (plain CSV, JSONL and Parquet are
  scanned lazily; gzip files are decompressed on read), ``schema_of`` its columns with a named error;
- ``normalize``: a long-format frame cast to the canonical types (``schema.CANONICAL``), unparseable
  cells kept as text in ``_bad_<column>`` for validation to report, and the ``_source_file`` /
  ``_source_row`` bookkeeping that lets every error name the file and row;
- ``concat``: frames of several files as one.

A file whose name ends in ``_train``, ``_test`` or ``_ood`` (before its extensions) and has no ``split``
column gets that split.
"""

from __future__ import annotations

import glob as globlib
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.diagnose import BOM, base_suffix, diagnose, open_bytes
from router.data.schema import LogValidationError

LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv")
_TEXT_COLUMNS = (S.QUERY_ID, S.PROMPT, S.MODEL, S.TASK, S.SPLIT)
_DTYPES = {"str": pl.String(), "f64": pl.Float64(), "i64": pl.Int64(), "datetime": pl.Datetime("us", "UTC")}


def resolve_paths(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """One file, a glob, a directory (its log files, recursively) or a list of those."""
    if isinstance(source, (list, tuple)):
        return [p for item in source for p in resolve_paths(item)]
    text = str(source)
    if any(ch in text for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(text, recursive=True))
        paths = [p for p in paths if p.is_file()]
    elif Path(text).is_dir():
        paths = sorted(p for p in Path(text).rglob("*") if p.is_file() and is_log_file(p))
    elif Path(text).is_file():
        paths = [Path(text)]
    else:
        raise LogValidationError("no such file, directory or glob", file=text)
    if not paths:
        raise LogValidationError(
            "matched no log files", file=text, expected=f"files ending in {', '.join(LOG_SUFFIXES)} (optionally .gz)"
        )
    return paths


def is_log_file(path: Path) -> bool:
    return base_suffix(path) in LOG_SUFFIXES


def split_from_name(path: Path) -> str | None:
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
            return scan_json_lines(path, gz)
        if suffix == ".json":
            return pl.read_json(path, infer_schema_length=None).lazy()
        if suffix in (".parquet", ".pq"):
            return pl.scan_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise diagnose(path, exc) from exc
    raise LogValidationError(f"unknown file type '{suffix}'", file=str(path), expected=", ".join(LOG_SUFFIXES))


def scan_json_lines(path: Path, gz: bool) -> pl.LazyFrame:
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
    names = schema_of(pl.scan_ndjson(source(), infer_schema_length=length), path).names()
    text = {c: pl.String for c in names if c in S.CANONICAL and c != S.TIMESTAMP}
    return pl.scan_ndjson(source(), infer_schema_length=length, schema_overrides=text or None)


def schema_of(lf: pl.LazyFrame, path: Path) -> pl.Schema:
    """The columns of ``lf`` read from ``path``; a file polars cannot read is a named ``LogValidationError``."""
    try:
        return lf.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise diagnose(path, exc) from exc


def rename_columns(lf: pl.LazyFrame, schema: pl.Schema, columns: Mapping[str, str] | None, path: Path, *,
                   strict: bool = True) -> tuple[pl.LazyFrame, pl.Schema]:
    """The file's own column names -> canonical ones; ``columns`` maps canonical -> the file's (``{"score":
    "correct"}``). ``strict``: a mapped column the file lacks is an error (else: another file may hold it)."""
    if not columns:
        return lf, schema
    names = schema.names()
    for canonical, own in columns.items():
        if own not in names and strict:
            raise LogValidationError(f"no column {own!r} (given as the {canonical} column)", file=str(path),
                                     column=own, expected=f"one of its columns: {', '.join(names)}")
        if own in names and canonical in names and own != canonical:
            raise LogValidationError(f"has both {own!r} (given as the {canonical} column) and a {canonical!r} "
                                     "column", file=str(path), column=canonical,
                                     expected="one column per meaning: map the other one, or drop it")
    rename = {own: canonical for canonical, own in columns.items() if own in names and own != canonical}
    if not rename:
        return lf, schema
    lf = lf.rename(rename)
    return lf, pl.Schema({rename.get(n, n): t for n, t in schema.items()})


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
    for name, type_name in S.CANONICAL.items():
        target = _DTYPES[type_name]
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
    split = split_from_name(path)
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


def concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """The frames of several files as one (columns a file lacks are null; types relaxed to a common one)."""
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
