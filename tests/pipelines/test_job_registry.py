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


def test_a_router_over_other_models_never_replaces_the_champion_unless_allowed(first_job, store, tmp_path, nq,
                                                                              nq_X):
    """`router train otherlogs.csv --name <the same name>`: the job refuses to replace a champion that routes to
    other models (its services have no upstream for them), naming both model sets and the two ways out; the
    alias and the local champion folder do not move. With allow_model_change the champion cannot be scored on
    these logs and the challenger may take its place."""
    import json

    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment
    from pipelines.publish.champion import champion_value
    from tests.conftest import NQ_SAMPLE

    rows = [json.loads(line) for line in NQ_SAMPLE.read_text().splitlines()]
    dropped = rows[0]["model"]
    five = tmp_path / "five_models.jsonl"
    five.write_text("\n".join(json.dumps(r) for r in rows if r["model"] != dropped))
    before, link = champion_version(), Path(store["root"]) / "models" / NAME / "champion"
    target = link.resolve()
    with pytest.raises(ValueError, match=rf"refused: models:/{NAME}/{before} \({NAME}'s champion\) routes to "
                                         rf".*{dropped}.*--name.*--allow-model-change"):
        run_job(job_config(store, routers=("ridge",), logs=five), echo=lambda line: None)
    assert champion_version() == before and link.resolve() == target
    job = JobConfig(routers=[{"family": "ridge", "params": {"cv": 3}}], export_router="ridge", objective="quality",
                    registry={"allow_model_change": True})
    exp = run_experiment(nq.select_models([m for m in nq.models if m != dropped]), nq_X, job)
    assert champion_value(f"models:/{NAME}@champion", job, exp) is None
    with pytest.raises(ValueError, match="refused: .*--allow-model-change"):
        champion_value(f"models:/{NAME}@champion", JobConfig(routers=job.routers, objective="quality"), exp)


def test_the_alias_moves_only_once_the_local_copy_is_in_place(first_job, store, monkeypatch):
    """The local copy is written before the alias moves (a read-only folder leaves the alias alone, and the tag
    says why); a local link that cannot follow a moved alias moves it back; a job stopped between registering
    and deciding leaves a version tagged pending, never one that looks promoted."""
    from pipelines.publish import registry
    from pipelines.publish.registry import PENDING, current_champion, decide, register, restore_alias

    name, uri, score = "nq-stage-router", first_job[0].model_uri, (lambda champion_uri: 0.0)

    def read_only(version):
        raise OSError(f"[Errno 30] Read-only file system: 'models/{name}/v{version}'")

    with pytest.raises(RuntimeError, match=rf"registered {name} v1 but did not promote it: its local copy could not "
                                           rf"be written .*Read-only.*; {name} has no @champion yet"):
        register(uri, name, decide(name, "champion", 1.0, score, min_improvement=0.0), score, alias="champion",
                 min_improvement=0.0, stage=read_only)
    client = MlflowClient()
    assert current_champion(name, "champion") is None
    assert client.get_model_version(name, "1").tags["promotion"].startswith("not promoted: its local copy")
    staged: list[str] = []
    first = register(uri, name, decide(name, "champion", 1.0, score, min_improvement=0.0), score, alias="champion",
                     min_improvement=0.0, stage=staged.append)
    assert staged == [first.version] == [current_champion(name, "champion")]
    second = register(uri, name, decide(name, "champion", 2.0, score, min_improvement=0.0), score, alias="champion",
                      min_improvement=0.0, stage=staged.append)
    assert second.promoted and current_champion(name, "champion") == second.version
    error = restore_alias(name, "champion", second, OSError("cannot link"))
    assert current_champion(name, "champion") == first.version
    assert f"@champion was moved back to v{first.version}" in str(error)
    assert client.get_model_version(name, second.version).tags["promotion"].startswith("not promoted: the local")

    def killed(*args):
        raise KeyboardInterrupt  # the job is stopped right after registering

    monkeypatch.setattr(registry, "current_champion", killed)
    with pytest.raises(KeyboardInterrupt):
        register(uri, name, second, score, alias="champion", min_improvement=0.0, stage=staged.append)
    newest = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
    assert newest.tags["promotion"] == PENDING and PENDING.startswith("pending")
