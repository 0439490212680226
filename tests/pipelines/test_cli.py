"""The `router` command on real files, as a user runs it."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from tests.conftest import FIXTURES, NQ_SAMPLE

runner = CliRunner()


def test_summary_of_bundled_sample_by_default():
    result = runner.invoke(app, ["summary"])
    assert result.exit_code == 0, result.output
    out = result.output  # the figures of data/README.md
    assert "6,000 queries x 3 models" in out
    assert "best single model: gpt-4o (0.721)" in out
    assert "oracle: 0.842" in out
    assert "| gpt-4o | 0.721 | 6.61 |" in out and "| gemini-1.5-pro-002 | 0.703 |" in out


def test_summary_of_the_nq_sample():
    result = runner.invoke(app, ["summary", str(NQ_SAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "500 queries x 6 models" in out
    assert "best single model: google/gemma-2-27b-it (0.457)" in out
    assert "oracle: 0.595" in out
    assert "| google/gemma-2-27b-it | 0.457 |" in out


def test_summary_mmlu_pro_reproduces_fixture_readme(tmp_path):
    """Wide file + separate questions file from the command line; figures as in tests/fixtures/README.md."""
    wide = FIXTURES / "mmlu_pro"
    result = runner.invoke(app, [
        "summary", str(wide / "correct_wide.csv"), "--id-column", "question_id",
        "--prompt-column", "question", "--task-column", "category",
        "--prompts-file", str(wide / "questions.csv"), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "300 queries x 31 models" in result.output
    assert "missing (query, model) scores, masked: 36" in result.output
    assert "the 28 models complete on all 300 queries" in result.output
    assert "best single model: gpt4o_repo_json (0.763)" in result.output
    assert "oracle: 0.950" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["best_single"] == "gpt4o_repo_json" and len(summary["complete_models"]) == 28
    assert "DeepSeek-Coder-V2_5shots" not in summary["complete_models"]  # 34 questions without a record
    assert len(summary["tasks"]) == 14  # MMLU-Pro's categories, joined from the questions file


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


def test_every_command_takes_the_shared_log_options_and_names_a_bad_value():
    """One definition of the log options: each command accepts them, and a bad value is one line."""
    for command in ("summary", "ingest", "embed", "evaluate", "train"):
        result = runner.invoke(app, [command, "--format", "nope", "--max-queries", "5"])
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        expected = "logs.format: Input should be 'auto', 'long', 'wide', 'pairwise' or 'decisions'"
        assert lines == [lines[0]] and expected in lines[0]
    result = runner.invoke(app, ["evaluate", "--routers", "ridge,nope"])
    assert result.exit_code == 2 and "routers.1.family" in result.output


def test_job_names_that_are_paths_are_refused_before_anything_runs(tmp_path):
    """The name is also the export folder: '', '.', '..', '../data' or 'a/b' could replace folders the
    job never made, so they are refused with one line, and nothing under export_dir is touched."""
    from pipelines.config import JobConfig, parse_config

    keep = tmp_path / "models" / "README.md"
    keep.parent.mkdir()
    keep.write_text("keep me")
    for bad in ("", ".", "..", "../data", "a/b", "a\\b", "-x", "x" * 101):
        with pytest.raises(ValueError, match="name"):
            parse_config({"name": bad, "export_dir": str(tmp_path / "models")}, "config")
        result = runner.invoke(app, ["train", "--config", str(_config(tmp_path, bad))])
        assert result.exit_code == 2 and "name: String should match pattern" in result.output, (bad, result.output)
    assert keep.read_text() == "keep me" and [p.name for p in keep.parent.iterdir()] == ["README.md"]
    assert JobConfig(name="nq-sample.router_2").name == "nq-sample.router_2"


def test_export_never_replaces_a_folder_it_did_not_create(tmp_path):
    """<export_dir>/<name> holding someone else's files fails the job before any step, files intact."""
    from pipelines.config import JobConfig
    from pipelines.job import run_job

    foreign = tmp_path / "models" / "data"
    foreign.mkdir(parents=True)
    (foreign / "important.csv").write_text("1,2,3")
    lines: list[str] = []
    with pytest.raises(ValueError, match="was not made by this job"):
        run_job(JobConfig(name="data", export_dir=str(tmp_path / "models")), echo=lines.append)
    assert lines == [] and [p.name for p in foreign.iterdir()] == ["important.csv"]


def _config(tmp_path, name: str):
    import json as _json

    path = tmp_path / "job.yaml"
    path.write_text(_json.dumps({"name": name, "export_dir": str(tmp_path / "models")}))
    return path


def test_config_knows_every_router_family():
    from typing import get_args

    from pipelines.config import RouterFamily
    from router.routers import ROUTERS

    assert set(get_args(RouterFamily)) == set(ROUTERS)
