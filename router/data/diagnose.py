"""Why a log file cannot be read, said as the file, the line and what to do about it.

``check_csv_fields`` runs on every CSV during validation: polars pads a row with too few fields
with nulls instead of failing, so one vectorised pass over the raw lines looks for such rows.
``diagnose`` runs only after polars failed (or that pass flagged a row): it walks the file line
by line in Python to name the first bad line, a cost paid on the error path only.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from router.data import schema as S
from router.data.schema import LogValidationError

BOM = b"\xef\xbb\xbf"
# JSON value kinds a column may hold; int and float are both "a number" to polars' inference.
_KINDS = ((bool, "true/false"), ((int, float), "a number"), (str, "a string"), (list, "a list"), (dict, "an object"))


def base_suffix(path: Path) -> str:
    """The format suffix, ignoring a final ``.gz``: ``logs.csv.gz`` -> ``.csv``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _separator(path: Path) -> str:
    return "\t" if base_suffix(path) == ".tsv" else ","


@contextmanager
def open_bytes(path: Path) -> Iterator:
    """``path`` opened for reading bytes, gunzipped if it ends in ``.gz``; a truncated or corrupt gzip file
    is a ``LogValidationError`` naming it (not a bare EOFError, which a CLI would print as "Aborted.")."""
    try:
        with gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb") as f:
            yield f
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise LogValidationError(f"is not a whole gzip file ({exc})", file=str(path),
                                 expected="a gzip file that decompresses to its end: copy or compress it again") \
            from None


def source_paths(schema: pl.Schema) -> list[Path]:
    """The files a canonical frame was read from (its ``_source_file`` Enum; see ``ingest``)."""
    dtype = schema.get(S.SOURCE_FILE)
    return [Path(p) for p in dtype.categories] if isinstance(dtype, pl.Enum) else []


def gz_column_names(path: Path, lines: int = 100) -> list[str] | None:
    """Column names of a gzip CSV (its header) or JSON-lines file (keys of its first lines),
    without decompressing all of it; None for other files or when the start is unreadable."""
    suffix = base_suffix(path)
    if path.suffix.lower() != ".gz" or suffix not in (".csv", ".tsv", ".jsonl", ".ndjson"):
        return None
    try:
        with open_bytes(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            if suffix in (".csv", ".tsv"):
                return next(csv.reader(text, delimiter=_separator(path)), None)
            names: dict[str, None] = {}
            for _, line in zip(range(lines), text):
                record = json.loads(line) if line.strip() else {}
                names.update(dict.fromkeys(record if isinstance(record, dict) else {}))
            return list(names) or None
    except (ValueError, TypeError, OSError, csv.Error):  # the adapter's read names the problem
        return None


# ----------------------------------------------------------------------------- vectorised check


def check_csv_fields(path: Path) -> None:
    """Refuse a CSV/TSV row with more or fewer fields than the header.

    A short row leaves its last column null, so a file whose last column has no null is done after
    one cheap column scan. Otherwise one polars pass over the raw lines counts the separators
    outside quotes (lines may start inside a quoted field that spans lines: both readings are
    counted, and the quote parity so far picks one), and the lines of each record are summed. A
    flagged row is confirmed and described by Python's csv module, so unusual quoting never
    refuses a file polars reads correctly.
    """
    sep, q = _separator(path), '"'
    try:
        table = pl.scan_csv(path, separator=sep, infer_schema=False)
        last = table.collect_schema().names()[-1]
        if not table.select(pl.col(last).is_null().any()).collect(engine="streaming").item():
            return
        per_line = pl.scan_lines(path).select(_line_counts(pl.col("line"), sep, q)).collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise diagnose(path, exc) from exc
    odd = pl.col("odd").cast(pl.Int64)
    lines = (per_line.with_columns(inside=(odd.cum_sum() - odd) % 2 == 1)
             .select("inside", "filled", seps=pl.when("inside").then("seps_inside").otherwise("seps_outside")
                     .cast(pl.Int64)))
    starts = (lines.with_columns(before=pl.col("seps").cum_sum() - pl.col("seps"))
              .filter(~pl.col("inside") & pl.col("filled"))["before"])
    # Separators per record: from its first line up to the next record's (the header is the first).
    seps = starts.shift(-1, fill_value=lines["seps"].sum()) - starts
    if len(seps) > 1 and (seps != seps[0]).any():
        problem = csv_error(path)
        if problem is not None:
            raise problem


def _line_counts(line: pl.Expr, sep: str, q: str) -> list[pl.Expr]:
    """Per raw line: quote parity, separators outside quotes if the line starts outside a quoted
    field and if it starts inside one, and whether it holds anything.

    A separator is inside quotes when an odd number of quotes precede it (an escaped ``""`` keeps
    the parity), so removing each quote-to-quote span leaves exactly the ones outside; a line
    that starts inside a quoted field has the others outside.
    """
    # Small integer types: this table has one row per line of the file.
    everywhere = line.str.count_matches(sep, literal=True).cast(pl.Int32)
    outside = (line.str.replace_all(f"{q}[^{q}]*{q}", "").str.replace(f"{q}[^{q}]*$", "")
               .str.count_matches(sep, literal=True).cast(pl.Int32))
    return [
        (line.str.count_matches(q, literal=True) % 2).cast(pl.Int8).alias("odd"),
        outside.alias("seps_outside"),
        (everywhere - outside).alias("seps_inside"),
        (line.str.strip_chars_end("\r").str.len_bytes() > 0).alias("filled"),
    ]


# ----------------------------------------------------------------------------- line-by-line diagnosis


def diagnose(path: Path, exc: Exception) -> LogValidationError:
    """A named error for a file polars could not read (``exc``): its first bad line, if found."""
    return find_problem(path) or LogValidationError(f"could not be read: {exc}", file=str(path))


def read_error(exc: Exception, paths: Iterable[Path], source: str | None = None) -> LogValidationError:
    """A named error for a read that failed somewhere in ``paths`` (e.g. while validating)."""
    paths = list(paths)
    for path in paths:
        found = find_problem(path)
        if found is not None:
            return found
    where = str(paths[0]) if len(paths) == 1 else source
    return LogValidationError(f"could not be read: {exc}", file=where)


def find_problem(path: Path) -> LogValidationError | None:
    """The first line of a text log that polars cannot read (None if none is found)."""
    suffix = base_suffix(path)
    if not path.is_file() or suffix in (".parquet", ".pq"):
        return None
    found = utf8_error(path)
    if found is None and suffix in (".csv", ".tsv"):
        found = csv_error(path)
    elif found is None and suffix in (".jsonl", ".ndjson"):
        found = json_lines_error(path)
    elif found is None and suffix == ".json":
        found = json_error(path)
    return found


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, bytes) of each line, a leading BOM removed."""
    offset = 0
    with open_bytes(path) as f:
        for number, raw in enumerate(f, start=1):
            text = raw[len(BOM):] if number == 1 and raw.startswith(BOM) else raw
            yield number, offset + len(raw) - len(text), text
            offset += len(raw)


def utf8_error(path: Path) -> LogValidationError | None:
    """The first byte that is not UTF-8 (a newline never splits a UTF-8 character)."""
    for number, offset, raw in _lines(path):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            gz = path.suffix.lower() == ".gz"
            return LogValidationError(
                f"is not UTF-8 text: byte {offset + err.start:,}{' (decompressed)' if gz else ''}, line {number}, "
                f"is 0x{raw[err.start]:02x}", file=str(path),
                expected="UTF-8; convert it first, e.g. "
                + ("`zcat FILE | iconv -f latin1 -t utf-8 | gzip > FILE.utf8.gz`" if gz else
                   f"`iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`"),
            )
    return None


def csv_error(path: Path) -> LogValidationError | None:
    """Rows whose field count differs from the header's (the first one named, all counted)."""
    sep = _separator(path)
    line = 1
    limit = csv.field_size_limit(2**31 - 1)  # prompts can exceed the default 128 KiB per field
    try:
        with open_bytes(path) as raw:
            reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""), delimiter=sep)
            header = next(reader, None) or []
            first, n_bad, row, line = None, 0, 0, reader.line_num + 1
            for record in reader:
                if record:  # polars skips blank lines too
                    row += 1
                    if len(record) != len(header):
                        n_bad += 1
                        first = first or (row, line, len(record))
                line = reader.line_num + 1
    except csv.Error as err:
        return LogValidationError(f"line {line} is not valid CSV: {err}", file=str(path))
    except UnicodeDecodeError:
        return utf8_error(path)
    finally:
        csv.field_size_limit(limit)
    if first is None:
        return None
    row, line, found = first
    names = ", ".join(header)
    names = names if len(names) <= 120 else names[:117] + "..."
    more = "more" if found > len(header) else "fewer"
    return LogValidationError(
        f"row {row} (line {line}) has {found} field{'s' if found != 1 else ''}, {more} than the header's "
        f"{len(header)}", file=str(path), n_bad=n_bad, unit="ragged row",
        expected=f"{len(header)} fields per row as in the header ({names}); quote values that hold {sep!r}",
    )


class _NotJson(ValueError):
    pass


def _reject(token: str):
    raise _NotJson(token)


def _kind(value) -> str | None:
    for types, name in _KINDS:
        if isinstance(value, types):
            return name
    return None


def json_lines_error(path: Path, text_columns: Iterable[str] = S.CANONICAL) -> LogValidationError | None:
    """The first line that is not a JSON object, or whose value changes type in a column.

    ``text_columns`` are read as text (see ``router.data.read.read_table``), so their types may change.
    """
    first_kind: dict[str, tuple[str, int]] = {}
    skip = set(text_columns) - {S.TIMESTAMP}
    for number, _, raw in _lines(path):
        text = raw.decode("utf-8").strip()
        if not text:
            continue
        where = f"line {number}"
        try:
            record = json.loads(text, parse_constant=_reject)
        except _NotJson as err:
            return LogValidationError(
                f"{where} holds {err}, which is not JSON", file=str(path),
                expected="a number, or null for a missing value (NaN and Infinity are not JSON numbers)",
            )
        except json.JSONDecodeError as err:
            if err.pos >= len(text) or "Unterminated" in err.msg:
                problem = f"{where} ends before its JSON object does (is the file truncated?)"
            else:
                problem = f"{where} is not valid JSON: {err.msg} at column {err.colno}"
            return LogValidationError(problem, file=str(path), expected="one JSON object per line")
        if not isinstance(record, dict):
            return LogValidationError(f"{where} is not a JSON object", file=str(path),
                                      expected="one JSON object per line")
        for key, value in record.items():
            kind = _kind(value)
            if kind is None or key in skip:
                continue
            seen = first_kind.setdefault(key, (kind, number))
            if seen[0] != kind:
                shown = repr(value)
                return LogValidationError(
                    f"{where} holds {kind} ({shown[:40]}) where line {seen[1]} holds {seen[0]}",
                    file=str(path), column=key, expected=f"{seen[0]} (or null) on every line",
                )
    return None


def json_error(path: Path) -> LogValidationError | None:
    """Where a JSON document (not JSON lines) stops being JSON."""
    with open_bytes(path) as f:
        text = f.read().decode("utf-8-sig")
    try:
        json.loads(text, parse_constant=_reject)
    except _NotJson as err:
        token = str(err)
        line = text[: text.find(token)].count("\n") + 1
        return LogValidationError(f"line {line} holds {token}, which is not JSON", file=str(path),
                                  expected="a number, or null for a missing value")
    except json.JSONDecodeError as err:
        return LogValidationError(f"line {err.lineno} is not valid JSON: {err.msg} at column {err.colno}",
                                  file=str(path), expected="a JSON array of objects")
    return None
