"""`router probe` (issue 25): the queries a new model should answer first, a sample stratified over the logs'
embeddings; a model withheld from the NQ sample and re-added with its answers on them is held back by the next
job below min_answers, routed to above it."""

from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.probe import choose_probes, disagreement, random_probes
from tests.conftest import NQ_SAMPLE, TEST_CACHE


def test_probes_are_a_sample_stratified_over_the_embeddings(nq, nq_X):
    from sklearn.cluster import KMeans

    exclude = np.zeros(nq.n_queries, dtype=bool)
    exclude[:100] = True  # queries the new model already answered
    rows = choose_probes(nq_X, nq, 40, exclude=exclude, seed=0, strata=8)
    assert len(rows) == len(set(rows)) == 40 and (rows >= 100).all() and (np.diff(rows) > 0).all()
    assert (choose_probes(nq_X, nq, 40, exclude=exclude, seed=0, strata=8) == rows).all()  # seeded
    labels = KMeans(n_clusters=8, n_init=1, random_state=0).fit(nq_X[100:]).labels_
    share = np.bincount(labels, minlength=8) * 40 / 400  # each cluster's proportional share of the 40
    taken = np.bincount(labels[rows - 100], minlength=8)
    assert (np.abs(taken - share) < 1).all() and taken.sum() == 40
    assert disagreement(nq).min() >= 0
    baseline = random_probes(40, nq, exclude=exclude, seed=0)
    assert len(baseline) == 40 and (baseline >= 100).all()
    assert len(choose_probes(nq_X, nq, 10_000, exclude=exclude)) == 400  # asking for more: every candidate


def _probe(logs, new: str, n: int, out, config) -> tuple[list[dict], str]:
    """``router probe`` for ``new``, then the user's part: its answers (from the full sample) filled in; the
    probes and what the command printed."""
    result = CliRunner().invoke(app, ["probe", str(logs), "--model", new, "--n", str(n), "--out", str(out),
                                      "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"wrote {n} of 500 queries for {new} to " in result.output and "--allow-model-change" in result.output
    probes = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(probes) == n and {p["model"] for p in probes} == {new} and all(p["score"] is None for p in probes)
    answers = pl.read_ndjson(NQ_SAMPLE).filter(pl.col("model") == new).select("query_id", "score", "cost")
    pl.DataFrame(probes).drop("score", "cost").join(answers, on="query_id").write_ndjson(out)
    return probes, result.output


def test_a_withheld_model_comes_back_through_router_probe_and_train(tmp_path):
    """The best model of the NQ sample withheld, then re-added from the command line: with 30 probe answers the
    job holds it back (it takes no traffic); with 180 it routes to it, saying how certain its estimate is."""
    new = "google/gemma-2-27b-it"
    logs = tmp_path / "logs"
    logs.mkdir()
    pl.read_ndjson(NQ_SAMPLE).filter(pl.col("model") != new).write_ndjson(logs / "nq.jsonl")
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({
        "name": "nq-router", "embedder": {"cache_dir": str(TEST_CACHE)}, "objective": "quality",
        "routers": [{"family": "best_single"}, {"family": "ridge"}],
        "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}", "artifact_root": str(tmp_path / "art")},
        "export_dir": str(tmp_path / "models")}))
    first, said = _probe(logs / "nq.jsonl", new, 30, logs / "probe-1.jsonl", config)
    assert "with them it has 30 answers, about 21 in the training split" in said
    assert "the next job will hold it back (it takes no traffic); 143 answers would do" in said
    train = ["train", str(logs), "--config", str(config), "--allow-model-change"]
    result = CliRunner().invoke(app, train)
    assert result.exit_code == 0, result.output
    assert f"held back (it takes no traffic): {new} answered " in result.output
    assert f"router probe LOGS --model {new}" in result.output
    import router

    assert new not in router.load(str(tmp_path / "models" / "nq-router" / "v1")).models
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    run = client.get_run(client.get_model_version("nq-router", "1").run_id)
    assert run.data.tags["models.held_back"] == new and run.data.tags["models.sparse"] == "none"
    card = pathlib.Path(client.download_artifacts(run.info.run_id, "model_card.md", str(tmp_path)))
    assert f"- held back (it takes no traffic): {new} answered " in card.read_text()
    # more answers, on queries it has not answered yet
    second, said = _probe(logs, new, 150, logs / "probe-2.jsonl", config)
    assert not {p["query_id"] for p in first} & {p["query_id"] for p in second}
    assert "with them it has 180 answers, about 126 in the training split" in said
    assert "enough to route to it (min_answers 100). On the research sets, of what knowing every" in said
    result = CliRunner().invoke(app, train)
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith(f"{new} answered ")]
    answered, n_train = map(int, re.match(r".* answered (\d+) of (\d+) training queries: mean score ", line).groups())
    assert 100 <= answered <= 180 and n_train < 500 and "+- " in line and "estimate error" in line
    assert line.endswith("it may be the best single model")  # it beats the runner-up by far on its answers
    assert "held back" not in result.output
    assert f"doubly robust estimates on {500 - n_train} of {500 - n_train} held-out" in result.output
    exported = sorted((tmp_path / "models" / "nq-router").glob("v*"))[-1]
    assert new in router.load(str(exported)).models


def test_probe_refuses_a_model_that_answered_everything(tmp_path):
    (tmp_path / "job.yaml").write_text(f"embedder: {{cache_dir: '{TEST_CACHE}'}}\n")
    result = CliRunner().invoke(app, ["probe", str(NQ_SAMPLE), "--model", "google/gemma-2-27b-it",
                                      "--config", str(tmp_path / "job.yaml")])
    assert result.exit_code == 2 and "already has a score on every query" in result.output
