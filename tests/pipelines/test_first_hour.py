"""A newcomer's first hour (issue 24, B): each path as a new user walks it, on the command line or in Python.

The job's name follows its logs; an option is never ignored silently (columns of any format, including the
score column); a missing price table or a truncated file is one line, not a traceback; a budget that does
not bind is said; bandit-only logs have no oracle; `router.load("models:/...")` outside the job's folder says
what to set instead of creating an empty store; `make install` says what it is doing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.config import JobConfig, load_config
from tests.conftest import NQ_SAMPLE, ROOT

runner = CliRunner()


def test_a_jobs_name_follows_its_logs():
    assert JobConfig().name == "mmlu-pro-sample-router"  # the bundled sample's
    assert load_config(None, {"path": "exports/mylogs.csv"}).name == "mylogs-router"
    assert load_config(None, {"path": "runs/2025_06/*.jsonl"}).name == "2025-06-router"
    assert load_config(None, {"path": "logs/"}).name == "logs-router"
    assert JobConfig(name="mine", logs={"path": "other.csv"}).name == "mine"  # a given name wins
    for command in ("train", "evaluate"):
        help_text = runner.invoke(app, [command, "--help"], terminal_width=200).output
        assert "--routers" in help_text and "--objective" in help_text and "--budget" in help_text
    assert "--name" in runner.invoke(app, ["train", "--help"], terminal_width=200).output


@pytest.fixture(scope="module")
def own_columns(tmp_path_factory) -> Path:
    """The NQ sample as a user's own long file: id, question, model, correct, price."""
    path = tmp_path_factory.mktemp("own") / "mylogs.csv"
    pl.read_ndjson(NQ_SAMPLE).select(
        pl.col("query_id").alias("id"), pl.col("prompt").alias("question"), "model",
        pl.col("score").alias("correct"), pl.col("cost").alias("price")).write_csv(path)
    return path


def test_any_column_of_a_long_file_can_be_mapped(own_columns):
    result = runner.invoke(app, ["summary", str(own_columns), "--id-column", "id", "--prompt-column", "question",
                                 "--score-column", "correct", "--cost-column", "price"])
    assert result.exit_code == 0, result.output
    assert "500 queries x 6 models" in result.output
    assert "best single model: google/gemma-2-27b-it (0.457)" in result.output


@pytest.mark.parametrize("args, message", [
    (["--id-column", "id", "--prompt-column", "question"], "missing required column 'score'"),
    (["--id-column", "id", "--prompt-column", "question", "--score-column", "corect"],
     "no column 'corect' (given as the score column); expected one of its columns: id, question, model, "
     "correct, price"),
    (["--id-column", "id", "--prompt-column", "question", "--score-column", "correct", "--prompts-file", "q.csv"],
     "a prompts file (q.csv) joins prompts to wide-format logs; these are long-format logs"),
])
def test_a_column_option_is_never_ignored(own_columns, args, message):
    result = runner.invoke(app, ["summary", str(own_columns), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_wide_file_refuses_a_per_model_column_mapping(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("sample_id,prompt,m1,m2\n1,hi,1,0\n2,yo,0,1\n")
    result = runner.invoke(app, ["summary", str(wide), "--format", "wide", "--score-column", "m1"])
    assert result.exit_code == 2 and "the wide format has one score column per model" in result.output
    result = runner.invoke(app, ["summary", str(wide), "--score-column", "m1"])  # read as long: says what it lacks
    assert result.exit_code == 2 and "missing required columns 'query_id', 'model'" in result.output


def test_a_missing_price_table_is_one_line(own_columns, tmp_path):
    result = runner.invoke(app, ["summary", str(NQ_SAMPLE), "--prices", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: file {tmp_path / 'nope.yaml'}: no such price table; expected a YAML "
                                     "or JSON file of model -> {input, output} $ per million tokens")
    (tmp_path / "huge.yaml").write_text("m: {input: 1e308, output: 1}\n")
    result = runner.invoke(app, ["summary", str(NQ_SAMPLE), "--prices", str(tmp_path / "huge.yaml")])
    assert result.exit_code == 2 and "model 'm' has price 1e+308" in result.output


def test_bandit_only_logs_have_no_oracle(tmp_path):
    rows = pl.read_ndjson(NQ_SAMPLE)
    one = rows.filter(pl.col("model") == pl.col("model").first().over("query_id"))  # one answer per query
    one.write_ndjson(tmp_path / "served.jsonl")
    result = runner.invoke(app, ["summary", str(tmp_path / "served.jsonl")])
    assert result.exit_code == 0, result.output
    assert "oracle: not measurable (no query has two scored models" in result.output


def test_a_budget_that_does_not_bind_is_said(nq, nq_X):
    from pipelines.experiment import run_experiment

    above = JobConfig(routers=[{"family": "best_single"}], budget=1.0)
    lines = run_experiment(nq, nq_X, above).outcome_lines(above)
    assert any(line.startswith("note: the budget $1 per query is at or above the dearest model's mean cost")
               for line in lines), lines
    below = JobConfig(routers=[{"family": "best_single"}], budget=1e-9)
    with pytest.raises(ValueError, match=r"budget 1e-09 \$/query is unreachable: spend on these queries ranges"):
        run_experiment(nq, nq_X, below)


def test_a_split_that_leaves_too_few_queries_is_refused(nq, nq_X):
    from pipelines.experiment import run_experiment

    job = JobConfig(routers=[{"family": "best_single"}], split={"test_size": 0.01})
    with pytest.raises(ValueError, match=r"the split leaves \d held-out quer(y|ies) of 500 .* at least 10: change "
                                         r"split.test_size \(0.01\)"):
        run_experiment(nq, nq_X, job)


def test_loading_from_the_registry_outside_the_jobs_folder_says_what_to_set(tmp_path):
    """`router.load("models:/...")` with no MLflow store here: one message naming MLflow's default store and
    MLFLOW_TRACKING_URI, and no empty database left behind (a fresh process: MLflow caches its URI)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    code = ("import router\ntry:\n    router.load('models:/nq-sample-router@champion')\n"
            "except FileNotFoundError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert "no MLflow store at " in out.stdout and "mlflow.db (MLflow's default, the job's too" in out.stdout, out
    assert "MLFLOW_TRACKING_URI" in out.stdout and "models/<name>/champion" in out.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_make_install_says_what_it_is_doing():
    dry = subprocess.run(["make", "-n", "-B", "install"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    steps = [line for line in dry.stdout.splitlines() if "[install" in line]
    assert len(steps) == 4 and "torch 2.13.0" in steps[1], dry.stdout
    assert "--quiet" not in dry.stdout.replace("|| echo --quiet", "")  # pip's progress shows on a terminal


def test_the_bundled_data_ships_with_the_package():
    from pipelines.config import SAMPLE_LOGS

    data = ROOT / "data"
    assert SAMPLE_LOGS.is_file() and SAMPLE_LOGS.resolve().parent == data.resolve()
    assert {"README.md", "mmlu_pro_sample.jsonl.gz", "nq_sample.jsonl", "prices.example.yaml"} <= {
        p.name for p in data.iterdir()}
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"sample/*.yaml"' in pyproject and '"sample/*.jsonl.gz"' in pyproject
    prices = ROOT / "data" / "prices.example.yaml"
    from router.data.readers.prices import load_prices

    assert load_prices(prices)["gpt-4o"] == (5.0, 15.0)
    assert json.loads(json.dumps(load_prices(prices))) and np.isfinite(list(load_prices(prices).values())).all()


@pytest.mark.slow
def test_quiet_is_quiet_in_a_fresh_process(tmp_path):
    """`router train --quiet` in a new process on a new MLflow store (whose set-up MLflow logs at INFO): one line
    on stdout, nothing on stderr."""
    from tests.conftest import TEST_CACHE

    (tmp_path / "job.yaml").write_text(json.dumps({
        "embedder": {"cache_dir": str(TEST_CACHE)}, "export_dir": str(tmp_path / "models"),
        "tracking": {"uri": f"sqlite:///{tmp_path / 'fresh.db'}", "artifact_root": str(tmp_path / "art")}}))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_LOGGING_LEVEL")}
    proc = subprocess.run([str(Path(sys.executable).with_name("router")), "train", str(NQ_SAMPLE), "--routers",
                           "best_single", "--config", str(tmp_path / "job.yaml"), "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.strip().splitlines()) == 1 and "nq-sample-router" in proc.stdout
    assert proc.stderr.strip() == "", proc.stderr[-2000:]


def test_a_logs_setting_that_is_not_a_mapping_is_refused_with_a_command_line_option(tmp_path):
    (tmp_path / "job.yaml").write_text("logs: mylogs.csv\n")
    with pytest.raises(ValueError, match=r"config .*job.yaml: logs: expected a mapping such as \{path: logs/\}"):
        load_config(tmp_path / "job.yaml", {"format": "long"})


def test_a_model_scored_only_in_served_traffic_leaves_only_weighted_families(nq):
    """Full logs for five models plus the router's own traffic for a sixth: families that fit on fully logged
    rows only would never see the sixth, so only the families that learn from propensities are candidates."""
    from dataclasses import replace

    from pipelines.experiment import usable_candidates

    mask = nq.mask.copy()
    mask[:, 5] = False
    served = np.arange(100)  # one scored model per served query: the sixth, drawn with propensity 0.5
    mask[served] = False
    mask[served, 5] = True
    propensities = np.full(mask.shape, np.nan)
    propensities[served, 5] = 0.5
    data = replace(nq, mask=mask, scores=np.where(mask, nq.scores, np.nan), propensities=propensities)
    specs = usable_candidates(data, JobConfig())
    assert set(specs) == {"best_single", "knn", "ridge"}
