"""Any log source -> canonical LazyFrame: ``scan_logs`` detects the format and calls its reader;
``filter_since`` and ``cap_queries`` narrow the result to a time window or a sample of queries.

Every step is lazy: no data is read until validation or ``build_routing_data`` collects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Literal

import polars as pl

from router.data import schema as S
from router.data.diagnose import gz_column_names
from router.data.read import read_table, resolve_paths, schema_of, source_file_dtype
from router.data.readers.decision_logs import is_decision_log, scan_decisions
from router.data.readers.long import scan_long
from router.data.readers.pairwise import PAIRWISE_COLUMNS, scan_pairwise
from router.data.readers.prices import apply_prices
from router.data.readers.wide import WideSpec, scan_wide
from router.data.schema import LogValidationError

LogFormat = Literal["auto", "long", "wide", "pairwise", "decisions"]
WIDE_COLUMNS = (S.QUERY_ID, S.PROMPT, S.TASK)  # the columns a wide file's WideSpec names


def detect_format(path: Path, columns: Mapping[str, str] | None = None) -> LogFormat:
    """The format of one file, from its column names (any case) as ``columns`` maps them (canonical -> own)."""
    names = gz_column_names(path) or schema_of(read_table(path), path).names()  # gzip: not read twice
    own = {v: k for k, v in (columns or {}).items()}
    names = {own.get(n, n).lower() for n in names}
    if set(PAIRWISE_COLUMNS) <= names:
        return "pairwise"
    # A 'model' or 'score' column means long format, so a missing one is reported as missing.
    if names & {S.MODEL, S.SCORE}:
        return "long"
    # Part of the pairwise columns: the pairwise adapter names the ones missing.
    if names & set(PAIRWISE_COLUMNS):
        return "pairwise"
    return "wide"


def _detect_all(paths: list[Path], columns: Mapping[str, str] | None = None) -> LogFormat:
    """The one format of all ``paths``; a file in another format than the first is named."""
    first = detect_format(paths[0], columns)
    for path in paths[1:]:
        fmt = detect_format(path, columns)
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
    columns: Mapping[str, str] | None = None,
) -> pl.LazyFrame:
    """Any supported log source -> canonical LazyFrame (not yet validated; see ``validate``).

    With ``auto``, the gateway's decision logs (``decisions-*.jsonl`` + ``feedback-*.jsonl``, known
    by their names) are read as the ``decisions`` format, also beside long-format logs in one source.
    ``columns`` maps canonical names to the files' own (``{"query_id": "id", "score": "correct"}``); the
    wide format takes its id, prompt and task columns from ``wide`` instead (``LogsConfig.wide_spec``).
    """
    if format == "auto":
        source = resolve_paths(source)
        served = [p for p in source if is_decision_log(p)]
        if served:
            rest = [p for p in source if not is_decision_log(p)]
            if columns:
                raise ValueError(f"decision logs ({served[0]}) have the gateway's own column names: a column "
                                 f"mapping ({', '.join(f'{k}={v}' for k, v in columns.items())}) does not apply")
            lf = _with_long(served, rest) if rest else scan_decisions(served)
            return apply_prices(lf, prices) if prices else lf
        format = _detect_all(source, columns)
    if format != "wide" and wide is not None and wide.prompts_file:
        raise ValueError(f"a prompts file ({wide.prompts_file}) joins prompts to wide-format logs; these are "
                         f"{format}-format logs, whose rows hold their prompt: drop the prompts file")
    if format == "long":
        lf = scan_long(source, columns)
    elif format == "wide":
        per_model = sorted(set(columns or {}) - set(WIDE_COLUMNS))  # id, prompt, task: through ``wide``
        if per_model:
            suffix = (wide or WideSpec()).cost_suffix
            raise ValueError(f"the wide format has one score column per model (and <model>{suffix} cost columns): "
                             f"a {', '.join(per_model)} column mapping does not apply; map only "
                             f"{', '.join(WIDE_COLUMNS)}")
        lf = scan_wide(source, wide)
    elif format == "pairwise":
        lf = scan_pairwise(source, columns)
    elif format == "decisions":
        if columns:
            raise ValueError("decision logs have the gateway's own column names: a column mapping does not apply")
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
