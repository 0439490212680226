"""Pairwise preferences (Chatbot Arena / RouteLLM style): ``prompt, model_a, model_b, winner``, turned into
per-model win scores per query (win 1, tie 0.5, loss or a both-bad tie 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.diagnose import base_suffix, check_csv_fields, diagnose
from router.data.read import match_case, read_table, rename_columns, resolve_paths, schema_of
from router.data.schema import LogValidationError

PAIRWISE_COLUMNS = ("model_a", "model_b", "winner")


def scan_pairwise_pairs(source: str | Path | Sequence[str | Path],
                        columns: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Pairwise preferences ``prompt, model_a, model_b, winner`` (optional ``query_id``), checked.

    ``winner`` is ``model_a``, ``model_b``, ``tie``, ``tie (bothbad)`` or one of the two model names.
    Returns the pairs with ``query_id`` and per-side scores ``score_a``/``score_b``.
    """
    frames = []
    for path in resolve_paths(source):
        lf, need = read_table(path), [S.PROMPT, *PAIRWISE_COLUMNS]
        lf, schema = match_case(*rename_columns(lf, schema_of(lf, path), columns, path), [*need, S.QUERY_ID])
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


def scan_pairwise(source: str | Path | Sequence[str | Path], columns: Mapping[str, str] | None = None
                  ) -> pl.LazyFrame:
    """Pairwise preference files -> canonical long rows of per-model win scores."""
    return pairwise_to_long(scan_pairwise_pairs(source, columns))
