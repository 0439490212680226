"""Canonical long files: one row per (query, model) answer (JSONL, Parquet, CSV; plain or gzip)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.read import (concat, match_case, normalize, read_table, rename_columns, resolve_paths,
                              schema_of, source_file_dtype)


def scan_long(source: str | Path | Sequence[str | Path], columns: Mapping[str, str] | None = None) -> pl.LazyFrame:
    """Canonical long files (JSONL, Parquet, CSV; plain or gzip): one file, a glob or a directory.
    ``columns``: canonical name -> the files' own (``{"query_id": "id", "score": "correct"}``)."""
    paths = resolve_paths(source)
    file_dtype = source_file_dtype(paths)
    frames = []
    for path in paths:
        lf = read_table(path)
        lf, schema = rename_columns(lf, schema_of(lf, path), columns, path)
        lf, schema = match_case(lf, schema, S.CANONICAL)
        frames.append(normalize(lf, schema, path, file_dtype=file_dtype))
    return concat(frames)
