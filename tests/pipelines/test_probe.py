"""`router probe` (issue 25, in progress): the queries a new model should answer first, a sample stratified over
the logs' embeddings; a model withheld from the NQ sample and re-added with its
answers on them joins the next job's data as a sparse model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.probe import answered_by, choose_probes, disagreement, random_probes
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


def test_a_withheld_model_comes_back_through_router_probe(nq, nq_X, tmp_path):
    new = "meta/llama-3.1-70b-instruct"
    rows = pl.read_ndjson(NQ_SAMPLE)
    rows.filter(pl.col("model") != new).write_ndjson(tmp_path / "logs.jsonl")
    (tmp_path / "job.yaml").write_text(f"embedder: {{cache_dir: '{TEST_CACHE}'}}\n")
    result = CliRunner().invoke(app, ["probe", str(tmp_path / "logs.jsonl"), "--model", new, "--n", "30",
                                      "--out", str(tmp_path / "probe.jsonl"), "--config", str(tmp_path / "job.yaml")])
    assert result.exit_code == 0, result.output
    assert f"wrote 30 of 500 queries for {new} to " in result.output and "--allow-model-change" in result.output
    probes = [json.loads(line) for line in (tmp_path / "probe.jsonl").read_text().splitlines()]
    assert len(probes) == 30 and {p["model"] for p in probes} == {new} and all(p["score"] is None for p in probes)
    answers = rows.filter(pl.col("model") == new).select("query_id", "score", "cost")
    filled = pl.DataFrame(probes).drop("score", "cost").join(answers, on="query_id")  # the user scores them
    filled.write_ndjson(tmp_path / "probe.jsonl")
    from router.data.labels import build_routing_data
    from router.data.scan import scan_logs

    data = build_routing_data(scan_logs([tmp_path / "logs.jsonl", tmp_path / "probe.jsonl"]))
    assert new in data.models and answered_by(data, new).sum() == 30 and data.n_queries == 500
    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment

    assert list(data.query_ids) == list(nq.query_ids)  # the rows of nq_X
    job = JobConfig(routers=[{"family": "ridge"}], objective="quality")
    exp = run_experiment(data, nq_X, job)  # the re-added model is sparse: said, with its evidence
    (line,) = [x for x in exp.outcome_lines(job) if x.startswith("models with part of the answers")]
    n_train = int(exp.train.mask[:, exp.train.models.index(new)].sum())
    assert f"{new} {n_train} of {exp.train.n_queries}" in line and "+- " in line
    assert f"scores the {len(exp.eval_rows)} of {exp.test.n_queries} held-out queries every model answered" in line
    result = CliRunner().invoke(app, ["probe", str(NQ_SAMPLE), "--model", "google/gemma-2-27b-it",
                                      "--config", str(tmp_path / "job.yaml")])
    assert result.exit_code == 2 and "already has a score on every query" in result.output
