"""The registry and the champion: a champion of an unreadable format is replaced, retention keeps the
champion and the newest versions, promotion is a compare-and-set when jobs race, a job without a registry
keeps its own folders, and the champion is scored on the job's own vectors when it shares the embedder.

These run last of the job files (tests/pipelines/conftest.py): retention prunes the first job's version.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import router
from pipelines.job import run_job
from tests.pipelines.conftest import NAME, PROMPTS, champion_version, job_config


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

    job = JobConfig(routers=[{"family": "ridge", "params": {"cv": 3}}], export_router="ridge", objective="quality")
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
