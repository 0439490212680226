"""Decision logs of ``router serve`` -> canonical rows, so the router learns from its own traffic.

The gateway writes ``decisions-*.jsonl`` (one line per routed request) and ``feedback-*.jsonl``
(outcomes, also from ``router feedback``); ``router.serve.decision_log`` writes them. Each decision with
feedback becomes one canonical row: query_id = request_id, the prompt, model = the chosen model,
score and cost from its feedback (one outcome per request), the decision's timestamp, task and propensity (the chance
the serving policy drew that model; null when unknown: older logs, or a fallback served). Only the
chosen model's score is known, so the query's other models are simply absent (masked, as in any log
with gaps). Decisions without feedback are left out and counted in a log line.

Files are read lazily as lines and decoded by polars. The last line of a file being written may be
incomplete: only the lines complete when the scan starts are read. A malformed line elsewhere is
named (file and line) by a Python pass that runs on that error path only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.read import concat, normalize, resolve_paths, source_file_dtype
from router.data.schema import DECISIONS_PREFIX, FEEDBACK_PREFIX, LOG_SUFFIX, LogValidationError

log = logging.getLogger(__name__)

_STAMP = r"\d{8}T\d{6}-\d+-\d+"
DECISION_FILE = re.compile(rf"{re.escape(DECISIONS_PREFIX)}{_STAMP}{re.escape(LOG_SUFFIX)}")
FEEDBACK_FILE = re.compile(rf"{re.escape(FEEDBACK_PREFIX)}({_STAMP}|cli-\d+){re.escape(LOG_SUFFIX)}")
# What is read of each line (as text: numbers are cast, and bad ones reported, by ``normalize``).
_DECISION_FIELDS = {"request_id": pl.String, "timestamp": pl.String, "prompt": pl.String,
                    "prompt_sha256": pl.String, "task": pl.String, "model": pl.String, "propensity": pl.String}
_FEEDBACK_FIELDS = {"request_id": pl.String, "timestamp": pl.String, "score": pl.String, "cost": pl.String}
_NO_PROMPT = "serve with `--log-prompts text` to train on decision logs"


def is_decision_log(path: Path) -> bool:
    """A decisions or feedback file of the gateway's decision log, by its name."""
    return bool(DECISION_FILE.fullmatch(path.name) or FEEDBACK_FILE.fullmatch(path.name))


def complete_lines(path: Path, chunk: int = 1 << 20) -> int:
    """Lines of ``path`` that end in a newline (a writer may be adding the next one)."""
    count = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            count += block.count(b"\n")
    return count


def _scan_lines(path: Path, fields: dict[str, pl.DataType], n_lines: int) -> pl.LazyFrame:
    """The first ``n_lines`` lines of ``path`` decoded as JSON objects; ``_line`` is the line number."""
    return (
        pl.scan_lines(path, n_rows=n_lines, row_index_name="_line", row_index_offset=1, glob=False)
        .filter(pl.col("line").str.strip_chars() != "")
        .select(pl.col("line").str.json_decode(pl.Struct(fields)).alias("_r"), pl.col("_line").cast(pl.Int64))
        .unnest("_r")
    )


def _where(source) -> str:
    """``source`` as an error names it: the path, or a list's folder."""
    if isinstance(source, (list, tuple)):
        folders = list(dict.fromkeys(str(Path(p).parent) for p in source))
        return folders[0] if len(folders) == 1 else ", ".join(folders)
    return str(source)


def _log_files(source: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(decision files, feedback files) of ``source``; feedback beside the decision files is included."""
    paths = resolve_paths(source)
    foreign = [p for p in paths if not is_decision_log(p)]
    if foreign:
        raise LogValidationError(
            "is not a file of the decision log", file=str(foreign[0]),
            expected=f"files named {DECISIONS_PREFIX}<time>-<pid>-<n>{LOG_SUFFIX} and {FEEDBACK_PREFIX}...{LOG_SUFFIX}",
        )
    decisions = [p for p in paths if DECISION_FILE.fullmatch(p.name)]
    if not decisions:
        raise LogValidationError("holds no decisions file", file=_where(source),
                                 expected=f"{DECISIONS_PREFIX}*{LOG_SUFFIX} files written by `router serve`")
    feedback = {p.resolve(): p for p in paths if FEEDBACK_FILE.fullmatch(p.name)}
    for folder in dict.fromkeys(p.parent for p in decisions):
        for p in sorted(folder.glob(f"{FEEDBACK_PREFIX}*{LOG_SUFFIX}")):
            if FEEDBACK_FILE.fullmatch(p.name):
                feedback.setdefault(p.resolve(), p)
    return decisions, list(feedback.values())


def _feedback_rows(files: dict[Path, int]) -> pl.LazyFrame:
    """Every feedback line: request_id, score, cost, and where and when it was written."""
    if not files:
        return pl.LazyFrame(schema={"request_id": pl.String, S.SCORE: pl.String, S.COST: pl.String,
                                    "_file": pl.Int32, "_line": pl.Int64, "_when": pl.Datetime("us", "UTC")})
    frames = [_scan_lines(p, _FEEDBACK_FIELDS, n).with_columns(pl.lit(i, dtype=pl.Int32).alias("_file"))
              for i, (p, n) in enumerate(files.items())]
    when = pl.col(S.TIMESTAMP).str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    return pl.concat(frames).with_columns(when.alias("_when"))


def _latest_feedback(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per request_id: its latest feedback (by timestamp, then file and line order); repeats of one
    outcome (a client's retry) are one outcome, and two different outcomes are refused by ``_check``."""
    return (
        rows.sort("_when", "_file", "_line", nulls_last=False)
        .unique(subset="request_id", keep="last", maintain_order=True)
        .select("request_id", S.SCORE, S.COST, pl.lit(True).alias("_feedback"))
    )


def _conflicts(rows: pl.LazyFrame) -> pl.LazyFrame:
    """Feedback lines of the request ids that got two different outcomes (score or cost)."""
    outcome = pl.struct(pl.col(S.SCORE).cast(pl.Float64, strict=False), pl.col(S.COST).cast(pl.Float64, strict=False))
    return rows.filter(outcome.n_unique().over("request_id") > 1).sort("request_id", "_file", "_line")


def scan_decisions(source: str | Path | Sequence[str | Path], *, require_feedback: bool = True,
                   file_dtype: pl.DataType | None = None) -> pl.LazyFrame:
    """Decision-log files (a directory, glob or list) -> canonical rows, one per decision with feedback.

    Reads the logs once now, to count decisions without feedback (logged) and to refuse decisions
    logged without their prompt text; the returned frame reads them again lazily. Raises
    ``LogValidationError`` for a malformed line, a missing prompt, or (with ``require_feedback``)
    when no decision has feedback. ``file_dtype`` types ``_source_file`` (default: an Enum of the files).
    """
    decision_paths, feedback_paths = _log_files(source)
    lines = {p: complete_lines(p) for p in [*decision_paths, *feedback_paths]}
    file_dtype = file_dtype or source_file_dtype([*decision_paths, *feedback_paths])
    rows = _feedback_rows({p: lines[p] for p in feedback_paths})
    feedback = _latest_feedback(rows)
    decisions = {p: _scan_lines(p, _DECISION_FIELDS, lines[p]) for p in decision_paths}
    _check(decisions, feedback, lines, source, require_feedback)
    _check_conflicts(rows, feedback_paths)

    frames = []
    for path, lf in decisions.items():
        joined = (
            lf.join(feedback, on="request_id", how="inner", maintain_order="left")
            .select(pl.col("request_id").alias(S.QUERY_ID), S.PROMPT, S.MODEL, S.SCORE, S.COST, S.TASK,
                    S.TIMESTAMP, S.PROPENSITY, "_line")
        )
        frames.append(normalize(joined, joined.collect_schema(), path, row_column="_line", file_dtype=file_dtype))
    return concat(frames)


def _check(decisions: dict[Path, pl.LazyFrame], feedback: pl.LazyFrame, lines: dict[Path, int],
           source, require_feedback: bool) -> None:
    """One pass over the logs: decisions with/without feedback, and those used without a prompt."""
    tagged = pl.concat([lf.with_columns(pl.lit(i).alias("_file")) for i, lf in enumerate(decisions.values())])
    joined = tagged.join(feedback, on="request_id", how="left")
    used = pl.col("_feedback").fill_null(False)
    no_prompt = used & pl.col(S.PROMPT).is_null()
    counts = joined.select(pl.len().alias("n"), used.sum().alias("used"), no_prompt.sum().alias("no_prompt"))
    sample = joined.filter(no_prompt).select("_file", "_line", "request_id", "prompt_sha256").head(5)
    try:
        counts, sample = pl.collect_all([counts, sample], engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise _bad_line(lines) or LogValidationError(f"could not be read: {exc}", file=_where(source)) from exc
    n, used_n, no_prompt_n = counts.row(0)
    if used_n < n:
        log.info("decision logs %s: %d of %d decisions have no feedback yet and are left out", _where(source),
                 n - used_n, n)
    if require_feedback and used_n == 0:
        raise LogValidationError(
            f"none of the {n:,} logged decisions has feedback yet", file=_where(source),
            expected="feedback-*.jsonl lines (the gateway's feedback endpoint or `router feedback`) whose "
            "request_id matches a decision",
        )
    if no_prompt_n:
        names = [str(p) for p in decisions]
        rows = sample.select(
            pl.col("_file").replace_strict(list(range(len(names))), names, return_dtype=pl.String)
            .alias(S.SOURCE_FILE),
            pl.col("_line").alias(S.SOURCE_ROW), "request_id", "prompt_sha256",
        )
        raise LogValidationError(
            "decisions were logged without their prompt text (only its hash, or nothing)",
            file=rows[S.SOURCE_FILE][0], column=S.PROMPT, rows=rows, n_bad=no_prompt_n,
            expected=f"the prompt of every decision with feedback: {_NO_PROMPT}",
        )


def _check_conflicts(rows: pl.LazyFrame, files: list[Path]) -> None:
    """Refuse a request with two different outcomes, as ordinary logs refuse two scores of one cell: which
    one is true is the user's call, not the file order's."""
    if not files:
        return
    bad = _conflicts(rows).collect()
    if bad.height:
        names = [str(p) for p in files]
        sample = bad.head(6).select(
            pl.col("_file").replace_strict(list(range(len(names))), names, return_dtype=pl.String)
            .alias(S.SOURCE_FILE), pl.col("_line").alias(S.SOURCE_ROW), "request_id", S.SCORE, S.COST)
        raise LogValidationError(
            "a request has feedback with different outcomes", file=sample[S.SOURCE_FILE][0], column=S.SCORE,
            rows=sample, n_bad=bad["request_id"].n_unique(), unit="request",
            expected="one outcome (score and cost) per request_id: remove the wrong feedback lines")


def _bad_line(lines: dict[Path, int]) -> LogValidationError | None:
    """The first complete line that is not a JSON object of the decision-log fields (error path only)."""
    text_fields = {**_DECISION_FIELDS, **_FEEDBACK_FIELDS}
    for path, n_lines in lines.items():
        with open(path, "rb") as f:
            for number, raw in zip(range(1, n_lines + 1), f):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as err:
                    return LogValidationError(f"line {number} is not valid JSON ({err})", file=str(path),
                                              expected="one JSON object per line")
                if not isinstance(record, dict):
                    return LogValidationError(f"line {number} is not a JSON object", file=str(path),
                                              expected="one JSON object per line")
                for key in text_fields:
                    if isinstance(record.get(key), (dict, list)):
                        return LogValidationError(f"line {number} holds {type(record[key]).__name__} in "
                                                  f"'{key}'", file=str(path), column=key,
                                                  expected="a string, a number or null")
    return None
