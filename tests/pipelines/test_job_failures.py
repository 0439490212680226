"""The job when things go wrong: bad input, a bad config, a job SIGKILLed mid-export or mid-download (the
next job heals what it left), an error scoring the champion, a read-only export folder and a scheduler's
SIGTERM. The champion stays (or, killed after the alias moved, the next job points the local link at it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import polars as pl
import pytest
from mlflow import MlflowClient

import router
from pipelines.config import JobConfig
from pipelines.job import run_job
from tests.conftest import NQ_SAMPLE
from tests.pipelines.conftest import NAME, PROMPTS, champion_version, job_config


def test_bad_input_fails_and_leaves_champion(first_job, store, tmp_path):
    before = champion_version()
    bad = pl.read_ndjson(NQ_SAMPLE).with_columns(pl.lit("oops").alias("score"))
    bad.write_ndjson(tmp_path / "bad.jsonl")
    with pytest.raises(Exception, match="non-numeric score"):
        run_job(job_config(store, logs=tmp_path / "bad.jsonl"), echo=lambda _: None)
    assert champion_version() == before
    latest = mlflow.search_runs(filter_string="tags.mlflow.runName LIKE 'nq-test-router-%'", order_by=["start_time DESC"],
                                max_results=1, output_format="list")[0]
    assert latest.info.status == "FAILED"  # the run spans the whole job, ingest included
    assert router.load(f"models:/{NAME}@champion").route(PROMPTS[:1])


def test_cli_bad_config_exits_nonzero_with_one_line(tmp_path):
    (tmp_path / "job.yaml").write_text("name: x\nroutrs: []\n")
    proc = subprocess.run([str(Path(sys.executable).with_name("router")), "train", "--config",
                           str(tmp_path / "job.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "routrs: Extra inputs are not permitted" in proc.stderr


def _winning_job_killed_after(store, function: str) -> None:
    """Run the job in a subprocess where the challenger always wins, SIGKILLed right after ``function``
    (a dotted mlflow function) returns for the first time."""
    module, name = function.rsplit(".", 1)
    code = textwrap.dedent(f"""
        import os, signal, {module}
        import pipelines.job
        import pipelines.publish.release
        pipelines.publish.release.champion_value = lambda *args: -1.0  # the challenger wins
        real = {function}
        def dying(*args, **kwargs):
            real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
        {function} = dying
        from pipelines.config import JobConfig
        pipelines.job.run_job(JobConfig.model_validate_json({job_config(store).model_dump_json()!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_job_killed_during_export_leaves_champion(first_job, store):
    before = champion_version()
    n_versions = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    _winning_job_killed_after(store, "mlflow.pyfunc.log_model")  # model files written, not registered
    assert champion_version() == before
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == n_versions
    assert router.load(f"models:/{NAME}@champion").route(PROMPTS[:1])


def test_job_killed_while_writing_the_local_folder_is_healed_by_the_next(first_job, store):
    """Killed mid-download of the local version folder, which comes before the alias moves: the alias and the
    local link still agree on the old champion, the new version is tagged pending (it never served), and the
    next job removes the staging it left."""
    from pipelines.publish.registry import PENDING

    root = first_job[0].champion_path.parent
    before, link = champion_version(), os.readlink(root / "champion")
    assert link == f"v{before}"
    launched_ms = int(time.time() * 1000)
    _winning_job_killed_after(store, "mlflow.artifacts.download_artifacts")  # files in staging, not renamed
    assert champion_version() == before and os.readlink(root / "champion") == link  # nothing moved
    newest = max(MlflowClient().search_model_versions(f"name='{NAME}'"), key=lambda v: int(v.version))
    assert newest.version != before and newest.tags["promotion"] == PENDING
    assert [p for p in root.glob(".staging-*") if any(p.rglob("*.onnx"))]  # staging was left behind
    killed = [r for r in mlflow.search_runs(filter_string=f"attributes.start_time >= {launched_ms}",
                                            output_format="list") if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in killed] == ["RUNNING"]  # SIGKILL: nothing could close it
    result = run_job(job_config(store, routers=("random",)), echo=lambda _: None)  # a loser: nothing exported
    for run in killed:  # the next job closes the run whose process is gone
        after = MlflowClient().get_run(run.info.run_id)
        assert after.info.status == "FAILED" and "is gone" in after.data.tags["stale"]
    assert not result.promotion.promoted and champion_version() == before
    assert os.readlink(root / "champion") == f"v{before}" and not list(root.glob(".staging-*"))
    assert router.load(root / "champion").route(PROMPTS) == router.load(f"models:/{NAME}@champion").route(PROMPTS)


def test_error_scoring_the_champion_fails_the_job_and_keeps_the_alias(first_job, store, monkeypatch):
    """Any other failure while scoring the champion is not a win for the challenger: the job fails,
    its MLflow run is marked FAILED and says why, the alias stays and nothing is registered."""
    import pipelines.publish.release

    def broken(*args):
        raise RuntimeError("tracking server went away")

    monkeypatch.setattr(pipelines.publish.release, "champion_value", broken)
    before = champion_version()
    n_versions = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    with pytest.raises(RuntimeError, match="tracking server went away"):
        run_job(job_config(store), echo=lambda _: None)
    assert champion_version() == before
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == n_versions
    run = mlflow.search_runs(filter_string=f"tags.job = '{NAME}'", order_by=["start_time DESC"], max_results=1,
                             output_format="list")[0]
    assert run.info.status == "FAILED"
    assert run.data.tags["registry.reason"].startswith("not promoted: scoring the champion failed")


def test_a_read_only_export_dir_fails_before_any_work(store, tmp_path):
    """Checked first: not after loading, fitting and logging (which left a FAILED run and an orphan model)."""
    if os.geteuid() == 0:
        target = tmp_path / "file-not-folder"
        target.write_text("x")  # root ignores permissions; a file where the folder should be fails for everyone
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    n_runs = len(mlflow.search_runs(search_all_experiments=True, output_format="list"))
    lines: list[str] = []
    with pytest.raises(ValueError, match=f"export_dir {target} is not writable"):
        run_job(job_config(store).model_copy(update={"export_dir": str(target)}), echo=lines.append)
    assert lines == []  # no step ran: nothing was loaded, fitted or logged
    assert len(mlflow.search_runs(search_all_experiments=True, output_format="list")) == n_runs
    with pytest.raises(ValueError, match="alias"):
        JobConfig(registry={"alias": "v3"})


def test_sigterm_marks_the_run_killed_and_says_so(first_job, store, tmp_path):
    """A scheduler's SIGTERM (cron timeout, Airflow, Kubernetes) ends the job with a line on stderr,
    a non-zero exit and its MLflow run marked KILLED, not RUNNING forever."""
    config = tmp_path / "job.yaml"
    config.write_text(job_config(store).model_dump_json())
    launched_ms = int(time.time() * 1000)  # earlier tests leave RUNNING runs (SIGKILLed jobs): ignore them
    proc = subprocess.Popen([str(Path(sys.executable).with_name("router")), "train", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]})
    try:
        deadline = time.monotonic() + 120
        while not mlflow.search_runs(filter_string=f"attributes.status = 'RUNNING' and attributes.start_time >= "
                                                   f"{launched_ms}", search_all_experiments=True, output_format="list"):
            assert proc.poll() is None and time.monotonic() < deadline, "the job never started its run"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "terminated by signal SIGTERM; the run is marked KILLED" in err
    latest = mlflow.search_runs(filter_string=f"attributes.start_time >= {launched_ms}", search_all_experiments=True,
                                output_format="list")
    assert [r.info.status for r in latest] == ["KILLED"]
