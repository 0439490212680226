"""Log formats -> the canonical LazyFrame: wide files, pairwise preferences, price tables, and
``scan_logs``, which detects a source's format and dispatches to its adapter.

Built on the readers of ``ingest`` (paths, reading, normalising), so rows carry the same
``_source_file``/``_source_row`` bookkeeping as long files.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from router.data import schema as S
from router.data.decisions import is_decision_log, scan_decisions
from router.data.diagnose import base_suffix, check_csv_fields, diagnose, gz_column_names
from router.data.ingest import (_concat, _schema, match_case, normalize, read_table, resolve_paths, scan_long,
                                source_file_dtype)
from router.data.schema import LogValidationError

LogFormat = Literal["auto", "long", "wide", "pairwise", "decisions"]
PAIRWISE_COLUMNS = ("model_a", "model_b", "winner")


# ----------------------------------------------------------------------------- wide files


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
        prompts, _ = match_case(prompts, _schema(prompts, Path(spec.prompts_file)), meta)
    paths = resolve_paths(source)
    # The prompts file is listed too, so that validation checks its CSV rows like the scores'.
    file_dtype = source_file_dtype([*paths, *([Path(spec.prompts_file)] if spec.prompts_file else [])])
    frames = []
    for path in paths:
        lf = read_table(path)
        lf, _ = match_case(lf, _schema(lf, path), meta)
        if prompts is not None:
            psch = _schema(prompts, Path(spec.prompts_file))
            miss = [c for c in meta if c not in psch]
            if miss:
                raise LogValidationError("missing column in prompts file", file=spec.prompts_file, column=miss[0])
            scores_schema = _schema(lf, path)
            lf = lf.drop([c for c in meta[1:] if c in scores_schema]).join(
                prompts.select(meta), on=spec.id_column, how="left"
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


# ----------------------------------------------------------------------------- pairwise preferences


def scan_pairwise_pairs(source: str | Path | Sequence[str | Path]) -> pl.DataFrame:
    """Pairwise preferences ``prompt, model_a, model_b, winner`` (optional ``query_id``), checked.

    ``winner`` is ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` or one of the two model names.
    Returns the pairs with ``query_id`` and per-side scores ``score_a``/``score_b``.
    """
    frames = []
    for path in resolve_paths(source):
        lf = read_table(path)
        need = [S.PROMPT, *PAIRWISE_COLUMNS]
        lf, schema = match_case(lf, _schema(lf, path), [*need, S.QUERY_ID])
        miss = [c for c in need if c not in schema]
        if miss:
            raise LogValidationError(
                f"missing column{'s' if len(miss) > 1 else ''} {', '.join(repr(m) for m in miss)} of the pairwise "
                "format", file=str(path), column=miss[0],
                expected=f"columns {', '.join(need)} (found: {', '.join(schema.names())})",
            )
        if base_suffix(path) in (".csv", ".tsv"):
            check_csv_fields(path)  # read eagerly below, so checked here rather than in validation
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
        )
        try:
            df = df.collect()
        except pl.exceptions.PolarsError as exc:
            raise diagnose(path, exc) from exc
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


# ----------------------------------------------------------------------------- entry point


def detect_format(path: Path) -> LogFormat:
    """The format of one file, from its column names (any case)."""
    names = gz_column_names(path) or _schema(read_table(path), path).names()  # gzip: not read twice
    names = {n.lower() for n in names}
    if set(PAIRWISE_COLUMNS) <= names:
        return "pairwise"
    # A 'model' or 'score' column means long format, so a missing one is reported as missing.
    if names & {S.MODEL, S.SCORE}:
        return "long"
    # Part of the pairwise columns: the pairwise adapter names the ones missing.
    if names & set(PAIRWISE_COLUMNS):
        return "pairwise"
    return "wide"


def _detect_all(paths: list[Path]) -> LogFormat:
    """The one format of all ``paths``; a file in another format than the first is named."""
    first = detect_format(paths[0])
    for path in paths[1:]:
        fmt = detect_format(path)
        if fmt != first:
            raise LogValidationError(
                f"looks like the {fmt} format, but {paths[0]} looks like {first}", file=str(path),
                expected="every file of one source in one format (long, wide or pairwise); read them separately "
                "or pass --format",
            )
    return first


def scan_logs(
    source: str | Path | Sequence[str | Path],
    *,
    format: LogFormat = "auto",
    wide: WideSpec | None = None,
    prices: dict[str, tuple[float, float]] | None = None,
) -> pl.LazyFrame:
    """Any supported log source -> canonical LazyFrame (not yet validated; see ``validate``).

    With ``auto``, the gateway's decision logs (``decisions-*.jsonl`` + ``feedback-*.jsonl``, known
    by their names) are read as the ``decisions`` format, also beside long-format logs in one source.
    """
    if format == "auto":
        source = resolve_paths(source)
        served = [p for p in source if is_decision_log(p)]
        if served:
            rest = [p for p in source if not is_decision_log(p)]
            lf = _with_long(served, rest) if rest else scan_decisions(served)
            return apply_prices(lf, prices) if prices else lf
        format = _detect_all(source)
    if format == "long":
        lf = scan_long(source)
    elif format == "wide":
        lf = scan_wide(source, wide)
    elif format == "pairwise":
        lf = scan_pairwise(source)
    elif format == "decisions":
        lf = scan_decisions(source)
    else:
        raise ValueError(f"unknown log format {format!r}; expected one of auto, long, wide, pairwise, decisions")
    return apply_prices(lf, prices) if prices else lf


def _with_long(served: list[Path], rest: list[Path]) -> pl.LazyFrame:
    """Decision logs beside long-format logs: both as canonical rows, one ``_source_file`` Enum."""
    fmt = _detect_all(rest)
    if fmt != "long":
        raise LogValidationError(
            f"looks like the {fmt} format, beside decision logs", file=str(rest[0]),
            expected="decision logs alone, or beside long-format logs; read other formats separately",
        )
    file_dtype = source_file_dtype([*rest, *served])
    long = scan_long(rest).with_columns(pl.col(S.SOURCE_FILE).cast(pl.String).cast(file_dtype))
    return pl.concat([long, scan_decisions(served, require_feedback=False, file_dtype=file_dtype)],
                     how="diagonal_relaxed")
