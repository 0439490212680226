"""Malformed logs as an adversarial user writes them (issue 12, items 6 and 7).

Each case in ``MALFORMED`` is refused by the library with a ``LogValidationError`` that names the
file and says where (line, row or column) and what was expected, and by `router summary` with one
error line and exit code 2, never a traceback. ``ACCEPTED`` holds inputs that used to fail but are
fine (a BOM, headers in another case, timestamps in mixed ISO forms).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from router.data.scan import scan_logs
from router.data.schema import LogValidationError
from router.data.validate import validate_logs

runner = CliRunner()
HEADER = "query_id,prompt,model,score,cost\n"
GOOD = "q1,hi,a,1,0.1\nq1,hi,b,0,0.2\nq2,yo,a,1,0.2\nq2,yo,b,0,0.1\n"


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _long_rows(n: int, model: str = "a") -> list[dict]:
    return [{"query_id": f"q{i}", "prompt": f"p{i}", "model": model, "score": 1.0} for i in range(n)]


@dataclass
class Case:
    name: str
    write: Callable[[Path], Path]  # writes the bad input under a folder, returns what to read
    expect: tuple[str, ...]  # all in the error message (besides the file's name)


def _file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / name
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(content if isinstance(content, bytes) else content.encode()))
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path
    return write


def _files(**named: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        for name, content in named.items():
            (folder / name.replace("__", ".")).write_text(content)
        return folder
    return write


LATIN1 = (HEADER + "q1,caf\xe9 au lait,a,1,0.1\nq1,caf\xe9 au lait,b,0,0.1\n").encode("latin-1")
BASE = [{"query_id": "q1", "prompt": "hi", "model": "a", "score": 1},
        {"query_id": "q1", "prompt": "hi", "model": "b", "score": 0}]

MALFORMED = [
    # 6a: ragged CSV rows
    Case("csv_short_row", _file("short.csv", HEADER + "q1,hi,a,1,0.1\nq1,hi,b,0\nq2,yo,a,1,0.2\n"),
         ("row 2 (line 3) has 4 fields, fewer than the header's 5", "5 fields per row")),
    Case("csv_long_row", _file("long.csv", HEADER + "q1,hi,a,1,0.1\nq1,hi,b,0,0.1,oops\n"),
         ("row 2 (line 3) has 6 fields, more than the header's 5", "5 fields per row")),
    Case("csv_short_row_after_multiline_prompt",
         _file("multi.csv", HEADER + 'q1,"two, lines\nof prompt",a,1,0.1\nq2,yo,b,0\n'),
         ("row 2 (line 4) has 4 fields",)),
    Case("csv_short_row_spanning_lines",
         _file("multi.csv", HEADER + 'q1,"two, lines\nof prompt",a,1,0.1\nq2,"two, lines\nof ""prompt""",b,0\n'
                            "q3,yo,a,1,0.1\n"),
         ("row 2 (line 4) has 4 fields",)),
    Case("tsv_short_row", _file("short.tsv", HEADER.replace(",", "\t") + "q1\thi\ta\t1\t0.1\nq1\thi\tb\n"),
         ("row 2 (line 3) has 3 fields", "5 fields per row")),
    # 6b: unparseable timestamps
    Case("csv_bad_timestamp",
         _file("ts.csv", "query_id,prompt,model,score,timestamp\nq1,hi,a,1,2025-01-01\nq1,hi,b,0,last tuesday\n"
                         "q2,yo,a,1,\nq2,yo,b,0,2025-01-02T00:00:00Z\n"),
         ("column 'timestamp'", "unparseable timestamp (1 row)", "row=2", "'last tuesday'", "ISO date")),
    Case("jsonl_bad_timestamp",
         _file("ts.jsonl", _jsonl([{**BASE[0], "timestamp": "2025-01-01T00:00:00Z"},
                                   {**BASE[1], "timestamp": "31/02/2025 25:00"}])),
         ("column 'timestamp'", "row=2", "'31/02/2025 25:00'")),
    # 7a: not UTF-8
    Case("csv_latin1", _file("latin1.csv", LATIN1), ("not UTF-8", "line 2", "byte 39", "iconv -f latin1 -t utf-8")),
    Case("csv_gz_latin1", _file("latin1.csv.gz", LATIN1), ("not UTF-8", "line 2", "iconv -f latin1 -t utf-8")),
    Case("jsonl_latin1", _file("latin1.jsonl", b'{"query_id":"q1","prompt":"caf\xe9","model":"a","score":1}\n'),
         ("not UTF-8", "line 1", "iconv")),
    # 7b: an all-null score column; a type that changes after the rows polars infers from
    Case("csv_all_null_score", _file("null.csv", HEADER + "q1,hi,a,,0.1\nq1,hi,b,,0.1\n"),
         ("column 'score'", "no row has a score (2 rows)", "row=1")),
    Case("jsonl_all_null_score", _file("null.jsonl", _jsonl([{**r, "score": None} for r in BASE])),
         ("column 'score'", "no row has a score", "row=1")),
    Case("jsonl_score_turns_text_after_10k_rows",
         _file("late.jsonl", _jsonl(_long_rows(10_005) + [{"query_id": "qx", "prompt": "px", "model": "a",
                                                             "score": "n/a"}])),
         ("column 'score'", "non-numeric score (1 row)", "row=10006", "score='n/a'")),
    Case("wide_jsonl_model_column_turns_text_after_10k_rows",
         _file("wide.jsonl", _jsonl([{"sample_id": i, "prompt": f"p{i}", "m1": 1, "m2": 0} for i in range(10_005)]
                                    + [{"sample_id": 10_005, "prompt": "px", "m1": "n/a", "m2": 0}])),
         ("column 'm1'", "line 10006 holds a string ('n/a') where line 1 holds a number")),
    # 7c: JSON lines polars cannot parse
    Case("jsonl_nan", _file("nan.jsonl", _jsonl(BASE) + '{"query_id":"q2","prompt":"yo","model":"a","score":NaN}\n'),
         ("line 3 holds NaN", "null")),
    Case("jsonl_infinity",
         _file("inf.jsonl", _jsonl(BASE) + '{"query_id":"q2","prompt":"yo","model":"a","score":-Infinity}\n'),
         ("line 3 holds -Infinity",)),
    Case("jsonl_truncated_last_line", _file("cut.jsonl", _jsonl(BASE) + '{"query_id":"q2","prompt":"yo","mod'),
         ("line 3 ends before its JSON object does", "truncated")),
    Case("jsonl_nan_after_10k_rows",
         _file("late_nan.jsonl",
               _jsonl(_long_rows(10_002)) + '{"query_id":"q","prompt":"p","model":"a","score":NaN}\n'),
         ("line 10003 holds NaN",)),
    # 7d: format detection per file
    Case("pairwise_missing_model_b", _file("pairs.csv", "prompt,model_a,winner\nhi,a,model_a\n"),
         ("missing column 'model_b' of the pairwise format", "column 'model_b'")),
    Case("pairwise_mixed_case_missing_winner", _file("pairs.csv", "Prompt,Model_A,Model_B\nhi,a,b\n"),
         ("missing column 'winner' of the pairwise format",)),
    Case("long_and_pairwise_files_mixed",
         _files(a_long__csv=HEADER + GOOD, b_pairs__csv="prompt,model_a,model_b,winner\nhi,a,b,model_a\n"),
         ("b_pairs.csv", "looks like the pairwise format", "a_long.csv looks like long")),
    # 7e: models that were never scored
    Case("wide_model_never_scored", _file("wide.csv", "sample_id,prompt,m1,m2\n1,hi,1,\n2,yo,0,\n"),
         ("model 'm2' has no score on any row (2 rows)", "column 'score'")),
    Case("model_never_scored_across_files",
         _files(a__csv=HEADER + "q1,hi,a,1,\nq1,hi,b,,\n", b__csv=HEADER + "q2,yo,a,0,\nq2,yo,b,,\n"),
         ("model 'b' has no score on any row in files ", "a.csv, ", "b.csv (2 rows)")),
    # 7f: counts of queries said as queries
    Case("query_with_two_prompts", _file("two.csv", HEADER + "q1,hi,a,1,\nq1,hello,b,0,\n"),
         ("one query_id has different prompts (1 query)",)),
    Case("conflicting_duplicates", _file("dup.csv", HEADER + "q1,hi,a,1,\nq1,hi,b,0,\nq1,hi,a,0,\n"),
         ("different scores (1 query-model pair)",)),
    # issue 24, C: a truncated gzip file; a prompt that is not what the user sent; numbers that overflow
    Case("gz_truncated", lambda folder: _cut_gzip(folder / "cut.jsonl.gz"),
         ("is not a whole gzip file", "ended before the end-of-stream marker")),
    Case("jsonl_lone_surrogate",
         _file("sur.jsonl", '{"query_id":"q1","prompt":"x\\ud800y","model":"a","score":1}\n'
                            '{"query_id":"q1","prompt":"x\\ud800y","model":"b","score":0}\n'),
         ("column 'prompt'", "NUL character in prompt (2 rows)", "row=1", "\\ud800")),
    Case("cost_overflow", _file("big.csv", HEADER + "q1,hi,a,1,1e308\nq1,hi,b,0,0.1\n"),
         ("column 'cost'", "cost out of range (1 row)", "row=1", "<= 1e+06")),
]


def _cut_gzip(path: Path) -> Path:
    data = gzip.compress(_jsonl(_long_rows(3000)).encode())
    path.write_bytes(data[: len(data) // 2])
    return path


def _named(case: Case, source: Path, message: str) -> None:
    files = [p.name for p in source.iterdir()] if source.is_dir() else [source.name]
    assert any(name in message for name in files), message
    for part in case.expect:
        assert part in message, (part, message)


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c.name)
def test_malformed_input_is_refused_with_a_named_error(tmp_path, case):
    source = case.write(tmp_path)
    with pytest.raises(LogValidationError) as err:
        validate_logs(scan_logs(source), source=str(source))
    _named(case, source, str(err.value))


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c.name)
def test_cli_summary_names_the_problem_without_a_traceback(tmp_path, case):
    source = case.write(tmp_path)
    result = runner.invoke(app, ["summary", str(source)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output and result.output.startswith("error: ")
    _named(case, source, result.output)


def test_cli_train_names_a_latin1_file(tmp_path):
    """`router train` catches every error; the line it prints must name the file (it did not)."""
    source = _file("latin1.csv", LATIN1)(tmp_path)
    config = tmp_path / "job.json"
    config.write_text(json.dumps({"name": "bad-input", "export_dir": str(tmp_path / "models"),
                                  "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
                                               "artifact_root": str(tmp_path / "artifacts")}}))
    result = runner.invoke(app, ["train", str(source), "--config", str(config), "--quiet"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "latin1.csv" in result.output and "not UTF-8" in result.output and "line 2" in result.output


def test_cli_evaluate_names_the_model_never_scored(tmp_path):
    """It used to reach the router fit and say 'models at columns [1] have no observed score'."""
    source = _file("wide.csv", "sample_id,prompt,m1,m2\n1,hi,1,\n2,yo,0,\n")(tmp_path)
    result = runner.invoke(app, ["evaluate", str(source), "--routers", "knn"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "wide.csv" in result.output and "model 'm2' has no score" in result.output
    assert "columns [1]" not in result.output


ACCEPTED = [
    Case("jsonl_with_bom", _file("bom.jsonl", b"\xef\xbb\xbf" + _jsonl(BASE).encode()), ()),
    Case("jsonl_gz_with_bom", _file("bom.jsonl.gz", b"\xef\xbb\xbf" + _jsonl(BASE).encode()), ()),
    Case("pairwise_mixed_case_headers", _file("pairs.csv", "Prompt,Model_A,Model_B,Winner\nhi,a,b,model_a\n"), ()),
    Case("long_mixed_case_headers", _file("long.csv", HEADER.title().replace("_Id", "_ID") + GOOD), ()),
    Case("mixed_iso_timestamps_and_nulls",
         _file("ts.csv", "query_id,prompt,model,score,timestamp\nq1,hi,a,1,2025-01-01\nq1,hi,b,0,\n"
                         "q2,yo,a,1,2025-01-02T03:04:05Z\nq2,yo,b,0,2025-01-02 03:04:05+02:00\n"
                         "q3,hm,a,1,1735787045\n"), ()),
    Case("jsonl_query_id_turns_text_after_10k_rows",
         _file("ids.jsonl", _jsonl([{**r, "query_id": i} for i, r in enumerate(_long_rows(10_003))]
                                   + [{"query_id": "x", "prompt": "px", "model": "a", "score": 0.5}])), ()),
    Case("csv_quoted_commas_and_newlines", _file("q.csv", HEADER + 'q1,"a, ""b""\nc",a,1,\nq1,"a, ""b""\nc",b,0,\n'),
         ()),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_inputs_that_used_to_fail_are_read(tmp_path, case):
    lf = scan_logs(case.write(tmp_path))
    stats = validate_logs(lf)
    assert stats.rows >= 2


def test_mixed_iso_timestamps_parse_to_the_same_instants(tmp_path):
    path = ACCEPTED[4].write(tmp_path)
    ts = scan_logs(path).select("timestamp").collect()["timestamp"].to_list()
    assert [t.isoformat() if t else None for t in ts] == [
        "2025-01-01T00:00:00+00:00", None, "2025-01-02T03:04:05+00:00", "2025-01-02T01:04:05+00:00",
        "2025-01-02T03:04:05+00:00"]  # epoch seconds in a CSV cell


def test_summary_counts_say_query_and_model_in_the_singular(tmp_path):
    path = _file("one.csv", HEADER + "q1,hi,a,1,\nq1,hi,b,0,\n")(tmp_path)
    result = runner.invoke(app, ["summary", str(path)])
    assert result.exit_code == 0, result.output
    assert "**1 query x 2 models** from 2 rows" in result.output


def test_csv_field_check_reads_a_large_file_without_false_alarms(tmp_path):
    """Quoted separators, doubled quotes and newlines inside prompts on many rows are not ragged rows."""
    n = 20_000
    df = pl.DataFrame({"query_id": [f"q{i // 2}" for i in range(n)],
                       "prompt": [f'say "hi", {i // 2}\nthen, stop' for i in range(n)],
                       "model": ["a", "b"] * (n // 2), "score": [1.0, 0.0] * (n // 2),
                       "cost": [None, 0.1] * (n // 2)})
    df.write_csv(tmp_path / "big.csv")
    assert validate_logs(scan_logs(tmp_path / "big.csv")).rows == n
