"""The canonical log format every adapter produces, and the validation error it raises.

One row per (query, model) answer; see DESIGN.md. Only ``query_id, prompt, model, score`` are
required; the optional columns are carried when present.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

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

REQUIRED: dict[str, pl.DataType] = {
    QUERY_ID: pl.String(),
    PROMPT: pl.String(),
    MODEL: pl.String(),
    SCORE: pl.Float64(),
}
OPTIONAL: dict[str, pl.DataType] = {
    COST: pl.Float64(),
    INPUT_TOKENS: pl.Int64(),
    OUTPUT_TOKENS: pl.Int64(),
    LATENCY_MS: pl.Float64(),
    TASK: pl.String(),
    TIMESTAMP: pl.Datetime("us", "UTC"),
    SPLIT: pl.String(),
    PROPENSITY: pl.Float64(),
}
CANONICAL: dict[str, pl.DataType] = {**REQUIRED, **OPTIONAL}
SPLIT_VALUES = ("train", "test", "ood")


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
        rows: pl.DataFrame | None = None,
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


def _format_rows(rows: pl.DataFrame, limit: int = 5) -> str:
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


def missing_columns(schema: pl.Schema, required: Sequence[str] = tuple(REQUIRED)) -> list[str]:
    """Required canonical columns absent from ``schema``."""
    return [c for c in required if c not in schema]
