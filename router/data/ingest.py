"""Adapters: long / wide / pairwise log files -> the canonical LazyFrame (see ``schema``).

Every adapter is lazy where the file format allows it (plain CSV, JSONL and Parquet are scanned;
gzip files are decompressed on read). Each output row carries ``_source_file`` and ``_source_row``
so that validation errors can name the file and row. A file whose name ends in ``_train``,
``_test`` or ``_ood`` (before its extensions) and has no ``split`` column gets that split.
"""

from __future__ import annotations

import glob as globlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import polars as pl

from router.data import schema as S
from router.data.schema import LogValidationError

LOG_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv")
LogFormat = Literal["auto", "long", "wide", "pairwise"]
PAIRWISE_COLUMNS = ("model_a", "model_b", "winner")
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


# ----------------------------------------------------------------------------- adapters


def scan_long(source: str | Path | Sequence[str | Path]) -> pl.LazyFrame:
    """Canonical long files (JSONL, Parquet, CSV; plain or gzip): one file, a glob or a directory."""
    paths = resolve_paths(source)
    file_dtype = source_file_dtype(paths)
    frames = []
    for path in paths:
        lf = read_table(path)
        frames.append(normalize(lf, _schema(lf, path), path, file_dtype=file_dtype))
    return _concat(frames)


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


_NOT_MODELS = {"", "unnamed: 0", "index", "oracle_model_to_route_to", S.SPLIT, S.TIMESTAMP}


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
    if spec.prompts_file:
        prompts = read_table(Path(spec.prompts_file))
    paths = resolve_paths(source)
    file_dtype = source_file_dtype(paths)
    frames = []
    for path in paths:
        lf = read_table(path)
        if prompts is not None:
            keep = [c for c in (spec.id_column, spec.prompt_column, spec.task_column) if c]
            psch = _schema(prompts, Path(spec.prompts_file))
            miss = [c for c in keep if c not in psch]
            if miss:
                raise LogValidationError("missing column in prompts file", file=spec.prompts_file, column=miss[0])
            scores_schema = _schema(lf, path)
            lf = lf.drop([c for c in keep[1:] if c in scores_schema]).join(
                prompts.select(keep), on=spec.id_column, how="left"
            )
        schema = _schema(lf, path)
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
        frames.append(normalize(long, _schema(long, path), path, row_column="_wide_row", file_dtype=file_dtype))
    return _concat(frames)


def scan_pairwise_pairs(source: str | Path | Sequence[str | Path]) -> pl.DataFrame:
    """Pairwise preferences ``prompt, model_a, model_b, winner`` (optional ``query_id``), checked.

    ``winner`` is ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` or one of the two model names.
    Returns the pairs with ``query_id`` and per-side scores ``score_a``/``score_b``.
    """
    frames = []
    for path in resolve_paths(source):
        lf = read_table(path)
        schema = _schema(lf, path)
        need = [S.PROMPT, *PAIRWISE_COLUMNS]
        miss = [c for c in need if c not in schema]
        if miss:
            raise LogValidationError(
                "missing column of the pairwise format",
                file=str(path),
                column=miss[0],
                expected=f"columns {', '.join(need)} (found: {', '.join(schema.names())})",
            )
        qid = (
            pl.col(S.QUERY_ID).cast(pl.String)
            if S.QUERY_ID in schema
            else pl.col(S.PROMPT).hash(seed=0).cast(pl.String).alias(S.QUERY_ID)
        )
        winner = pl.col("winner").cast(pl.String).str.strip_chars()
        lw = winner.str.to_lowercase()
        a_wins = (lw == "model_a") | (winner == pl.col("model_a"))
        b_wins = (lw == "model_b") | (winner == pl.col("model_b"))
        df = (
            lf.with_row_index(S.SOURCE_ROW, offset=1)
            .select(
                qid.alias(S.QUERY_ID),
                pl.col(S.PROMPT).cast(pl.String),
                pl.col("model_a").cast(pl.String),
                pl.col("model_b").cast(pl.String),
                winner.alias("winner"),
                pl.when(a_wins).then(1.0).when(b_wins).then(0.0).when(lw == "tie").then(0.5)
                .when(lw.str.starts_with("tie")).then(0.0).otherwise(None).alias("score_a"),
                pl.when(a_wins).then(0.0).when(b_wins).then(1.0).when(lw == "tie").then(0.5)
                .when(lw.str.starts_with("tie")).then(0.0).otherwise(None).alias("score_b"),
                pl.col(S.SOURCE_ROW).cast(pl.Int64),
            )
            .collect()
        )
        bad = df.filter(pl.col("score_a").is_null())
        if bad.height:
            raise LogValidationError(
                "unrecognised winner",
                file=str(path),
                column="winner",
                rows=bad.select(S.SOURCE_ROW, "model_a", "model_b", "winner"),
                n_bad=bad.height,
                expected="model_a, model_b, tie, tie (bothbad) or one of the row's two model names",
            )
        frames.append(df.with_columns(pl.lit(str(path)).alias(S.SOURCE_FILE)))
    return pl.concat(frames, how="vertical_relaxed")


def pairwise_to_long(pairs: pl.DataFrame) -> pl.LazyFrame:
    """Per-model win rate per query: win 1, tie 0.5, loss or both-bad tie 0, averaged over its pairs."""
    sides = pl.concat(
        [
            pairs.select(S.QUERY_ID, S.PROMPT, pl.col("model_a").alias(S.MODEL), pl.col("score_a").alias(S.SCORE),
                         S.SOURCE_FILE, S.SOURCE_ROW),
            pairs.select(S.QUERY_ID, S.PROMPT, pl.col("model_b").alias(S.MODEL), pl.col("score_b").alias(S.SCORE),
                         S.SOURCE_FILE, S.SOURCE_ROW),
        ]
    )
    return (
        sides.lazy()
        .group_by(S.QUERY_ID, S.MODEL, maintain_order=True)
        .agg(
            pl.col(S.PROMPT).first(),
            pl.col(S.SCORE).mean(),
            pl.col(S.SOURCE_FILE).first(),
            pl.col(S.SOURCE_ROW).min(),
        )
        .select(S.QUERY_ID, S.PROMPT, S.MODEL, S.SCORE, S.SOURCE_FILE, S.SOURCE_ROW)
    )


def scan_pairwise(source: str | Path | Sequence[str | Path]) -> pl.LazyFrame:
    """Pairwise preference files -> canonical long rows of per-model win scores."""
    return pairwise_to_long(scan_pairwise_pairs(source))


# ----------------------------------------------------------------------------- prices


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """A token-price table: ``{model: {input: $/M, output: $/M}}`` as YAML or JSON.

    LLMRouter's ``default_llm.json`` shape (``input_price``/``output_price``, full name under
    ``model``) is read too; such entries answer to both their key and their ``model`` name.
    """
    path = Path(path)
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    if not isinstance(raw, dict) or not raw:
        raise LogValidationError("price table must be a non-empty mapping of model -> prices", file=str(path))
    prices: dict[str, tuple[float, float]] = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            raise LogValidationError(f"entry for model '{key}' is not a mapping", file=str(path))
        pin = entry.get("input", entry.get("input_price"))
        pout = entry.get("output", entry.get("output_price"))
        try:
            pin, pout = float(pin), float(pout)
        except (TypeError, ValueError):
            raise LogValidationError(
                f"model '{key}' has no numeric input/output price", file=str(path),
                expected="'input' and 'output' in $ per million tokens",
            ) from None
        if pin < 0 or pout < 0:
            raise LogValidationError(f"model '{key}' has a negative price", file=str(path))
        prices[str(key)] = (pin, pout)
        if isinstance(entry.get("model"), str):
            prices[entry["model"]] = (pin, pout)
    return prices


def apply_prices(lf: pl.LazyFrame, prices: dict[str, tuple[float, float]]) -> pl.LazyFrame:
    """Fill missing ``cost`` from token counts x price (per million tokens); known costs are kept."""
    schema = lf.collect_schema()
    if S.INPUT_TOKENS not in schema and S.OUTPUT_TOKENS not in schema:
        return lf
    table = pl.LazyFrame(
        {
            S.MODEL: list(prices),
            "_pin": [p[0] for p in prices.values()],
            "_pout": [p[1] for p in prices.values()],
        }
    )
    tokens_in = pl.col(S.INPUT_TOKENS).fill_null(0) if S.INPUT_TOKENS in schema else pl.lit(0)
    tokens_out = pl.col(S.OUTPUT_TOKENS).fill_null(0) if S.OUTPUT_TOKENS in schema else pl.lit(0)
    priced = (tokens_in * pl.col("_pin") + tokens_out * pl.col("_pout")) / 1e6
    cost = pl.coalesce(pl.col(S.COST), priced) if S.COST in schema else priced
    return lf.join(table, on=S.MODEL, how="left").with_columns(cost.alias(S.COST)).drop("_pin", "_pout")


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


# ----------------------------------------------------------------------------- entry point


def detect_format(path: Path) -> LogFormat:
    names = set(_schema(read_table(path), path).names())
    if set(PAIRWISE_COLUMNS) <= names:
        return "pairwise"
    # A 'model' or 'score' column means long format, so a missing one is reported as missing.
    if names & {S.MODEL, S.SCORE}:
        return "long"
    return "wide"


def scan_logs(
    source: str | Path | Sequence[str | Path],
    *,
    format: LogFormat = "auto",
    wide: WideSpec | None = None,
    prices: dict[str, tuple[float, float]] | None = None,
) -> pl.LazyFrame:
    """Any supported log source -> canonical LazyFrame (not yet validated; see ``validate``)."""
    if format == "auto":
        format = detect_format(resolve_paths(source)[0])
    if format == "long":
        lf = scan_long(source)
    elif format == "wide":
        lf = scan_wide(source, wide)
    elif format == "pairwise":
        lf = scan_pairwise(source)
    else:
        raise ValueError(f"unknown log format {format!r}; expected one of auto, long, wide, pairwise")
    return apply_prices(lf, prices) if prices else lf
