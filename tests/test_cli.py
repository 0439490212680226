"""The `router` command on real files, as a user runs it."""

from __future__ import annotations

import json

import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import FIXTURES, NQ_SAMPLE, shared

runner = CliRunner()


def test_summary_of_bundled_sample_by_default():
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "500 queries x 6 models" in out
    assert "best single model: google/gemma-2-27b-it (0.457)" in out
    assert "oracle: 0.595" in out
    assert "| google/gemma-2-27b-it | 0.457 |" in out


def test_summary_mmlu_pro_reproduces_readme(tmp_path):
    result = runner.invoke(app, [
        "summary", str(shared("mmlu_pro", "correct_wide.csv.gz")), "--id-column", "question_id",
        "--prompt-column", "question", "--task-column", "category",
        "--prompts-file", str(shared("mmlu_pro", "questions.csv.gz")), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "12,032 queries x 31 models" in result.output
    assert "the 27 models complete on all 12,032 queries" in result.output
    assert "best single model: gpt4o_repo_json (0.721)" in result.output
    assert "oracle: 0.942" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["best_single"] == "gpt4o_repo_json" and len(summary["complete_models"]) == 27


def test_bad_input_exits_nonzero_with_reason(tmp_path):
    bad = pl.read_ndjson(NQ_SAMPLE).head(12).with_columns(pl.lit(-1.0).alias("cost"))
    bad.write_ndjson(tmp_path / "bad.jsonl")
    result = runner.invoke(app, ["summary", str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 2
    assert "bad.jsonl" in result.output and "negative cost" in result.output


def test_ingest_writes_canonical_parquet(tmp_path):
    out = tmp_path / "canonical.parquet"
    result = runner.invoke(app, ["ingest", str(FIXTURES / "pairwise_mmlu_anatomy.csv"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pl.read_parquet(out)
    assert df.columns == ["query_id", "prompt", "model", "score"]
    assert df.height == 270
