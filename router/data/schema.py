"""The canonical log format every reader produces, the decision log's file names, and the validation error.

One row per (query, model) answer; see docs/formats.md. Only ``query_id, prompt, model, score`` are
required; the optional columns are carried when present. Plain Python (no polars): the gateway's
decision-log writer imports the file names from here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

QUERY_ID = "query_id"
PROMPT = "prompt"
MODEL = "model"
SCORE = "score"
COST = "cost"
INPUT_TOKENS = "input_tokens"
OUTPUT_TOKENS = "output_tokens"
LATENCY_MS = "latency_ms"
TASK = "task"
TIMESTAMP = "timestamp"
SPLIT = "split"
PROPENSITY = "propensity"  # chance the logging policy chose this row's model (bandit logs)

# Bookkeeping columns added by the adapters so that errors can name the file and row.
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"

# Column -> its type: str, f64, i64 or datetime (UTC, microseconds); ``router.data.read`` casts to them.
REQUIRED: dict[str, str] = {QUERY_ID: "str", PROMPT: "str", MODEL: "str", SCORE: "f64"}
OPTIONAL: dict[str, str] = {
    COST: "f64",
    INPUT_TOKENS: "i64",
    OUTPUT_TOKENS: "i64",
    LATENCY_MS: "f64",
    TASK: "str",
    TIMESTAMP: "datetime",
    SPLIT: "str",
    PROPENSITY: "f64",
}
CANONICAL: dict[str, str] = {**REQUIRED, **OPTIONAL}
SPLIT_VALUES = ("train", "test", "ood")

# The gateway's decision log (``router.serve.decision_log`` writes it, ``router.data.readers.decision_logs``
# reads it): decisions-<time>-<pid>-<n>.jsonl and feedback-<time>-<pid>-<n>.jsonl (feedback-cli-<yyyymmdd>.jsonl
# from ``router feedback``), one JSON object per line.
DECISIONS_PREFIX = "decisions-"
FEEDBACK_PREFIX = "feedback-"
LOG_SUFFIX = ".jsonl"


class LogValidationError(ValueError):
    """Input logs do not meet the canonical format.

    The message names the file, the column, a sample of offending rows and what was expected.
    ``n_bad`` counts offending ``unit``s: rows by default, or e.g. "query" when whole queries are
    at fault.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        rows=None,  # a polars DataFrame: a sample of the offending rows
        expected: str | None = None,
        n_bad: int | None = None,
        unit: str = "row",
    ) -> None:
        self.problem = problem
        self.unit = unit
        self.file = file
        self.column = column
        self.expected = expected
        self.n_bad = n_bad
        self.rows = rows
        super().__init__(self._message())

    def _message(self) -> str:
        head = []
        if self.file:
            head.append(f"file {self.file}")
        if self.column:
            head.append(f"column '{self.column}'")
        where = f"{', '.join(head)}: " if head else ""
        msg = f"{where}{self.problem}"
        if self.n_bad is not None:
            msg += f" ({counted(self.n_bad, self.unit)})"
        if self.expected:
            msg += f"; expected {self.expected}"
        if self.rows is not None and self.rows.height:
            msg += "\nfirst offending rows:\n" + _format_rows(self.rows)
        return msg


def counted(n: int, unit: str) -> str:
    """``n`` and ``unit`` in the right number: 1 row, 2 rows, 1 query, 3 queries."""
    if n == 1:
        return f"1 {unit}"
    plural = unit[:-1] + "ies" if unit.endswith("y") and unit[-2:-1] not in "aeiou" else unit + "s"
    return f"{n:,} {plural}"


def _format_rows(rows, limit: int = 5) -> str:
    shown = rows.head(limit)
    # The header names one file; name each row's file only when the sample spans several.
    one_file = SOURCE_FILE not in shown.columns or shown[SOURCE_FILE].n_unique() == 1
    lines = []
    for rec in shown.iter_rows(named=True):
        parts = []
        for key, value in rec.items():
            if key == SOURCE_FILE:
                if not one_file:
                    parts.append(f"file={value}")
                continue
            label = "row" if key == SOURCE_ROW else key
            text = repr(value)
            parts.append(f"{label}={text[:60] + '...' if len(text) > 60 else text}")
        lines.append("  " + ", ".join(parts))
    return "\n".join(lines)


def missing_columns(schema: Collection[str], required: Sequence[str] = tuple(REQUIRED)) -> list[str]:
    """Required canonical columns absent from ``schema`` (a polars Schema or any collection of names)."""
    return [c for c in required if c not in schema]
