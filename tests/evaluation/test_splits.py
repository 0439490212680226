"""Query splits: seeded, disjoint, whole tasks held out, a given split used as given."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.config import JobConfig
from pipelines.experiment import split_data
from router.evaluation.splits import given_split, has_given_split, split_queries


def _assert_partition(split, n):
    assert np.intersect1d(split.train, split.test).size == 0
    assert np.union1d(split.train, split.test).tolist() == list(range(n))
    assert (np.diff(split.train) > 0).all() and (np.diff(split.test) > 0).all()


def test_query_split_is_seeded_disjoint_and_sized(nq):
    a = split_queries(nq, test_size=0.3, seed=7)
    b = split_queries(nq, test_size=0.3, seed=7)
    c = split_queries(nq, test_size=0.3, seed=8)
    _assert_partition(a, nq.n_queries)
    # A hash per query: the held-out share is binomial around test_size (sd ~ 10 queries here).
    assert 120 <= len(a.test) <= 180 and len(a.train) == 500 - len(a.test) and a.ood.size == 0
    assert np.array_equal(a.test, b.test) and np.array_equal(a.train, b.train)
    assert not np.array_equal(a.test, c.test)
    assert a.sizes() == {"n_train": len(a.train), "n_test": len(a.test), "n_ood": 0}
    assert "seed=7" in a.how


def test_query_split_is_stable_as_logs_grow(nq, tmp_path):
    """Two nightly runs, the second on logs with more queries (in another row order): every query of
    the first run stays on its side, so a champion is never scored on queries it was trained on."""
    import polars as pl

    from pipelines.config import JobConfig
    from pipelines.experiment import split_data
    from pipelines.prepare import load_routing_data
    from tests.conftest import NQ_SAMPLE

    rows = pl.read_ndjson(NQ_SAMPLE)
    ids = rows["query_id"].unique(maintain_order=True)
    rows.filter(pl.col("query_id").is_in(ids[:300].implode())).write_ndjson(tmp_path / "night1.jsonl")
    rows.reverse().write_ndjson(tmp_path / "night2.jsonl")  # 200 new queries, rows in another order
    sides = []
    for night in ("night1", "night2"):
        job = JobConfig.model_validate({"logs": {"path": str(tmp_path / f"{night}.jsonl")}})
        data, _ = load_routing_data(job.logs)
        split = split_data(data, job)
        sides.append({**{q: "train" for q in data.query_ids[split.train]},
                      **{q: "test" for q in data.query_ids[split.test]}})
    first, second = sides
    assert len(first) == 300 and len(second) == 500
    assert all(second[q] == side for q, side in first.items())
    assert 0.2 < sum(s == "test" for s in second.values()) / 500 < 0.4


def test_query_split_keeps_a_query_on_each_side(nq):
    tiny = nq.subset(np.arange(3))
    split = split_queries(tiny, test_size=0.01, seed=0)
    assert len(split.test) == 1 and len(split.train) == 2
    with pytest.raises(ValueError, match="test_size"):
        split_queries(nq, test_size=1.0, seed=0)
    with pytest.raises(ValueError, match="by must be"):
        split_queries(nq, by="row", test_size=0.3, seed=0)


def test_task_split_holds_out_whole_tasks(mmlu_small):
    split = split_queries(mmlu_small, by="task", test_size=0.25, seed=3)
    _assert_partition(split, mmlu_small.n_queries)
    test_tasks = set(mmlu_small.tasks[split.test])
    assert test_tasks.isdisjoint(set(mmlu_small.tasks[split.train]))
    # every query of a held-out task is held out, and the held-out queries are the ood set
    assert np.array_equal(split.test, np.flatnonzero(np.isin(mmlu_small.tasks, list(test_tasks))))
    assert np.array_equal(split.ood, split.test)
    assert len(split.test) >= 0.25 * mmlu_small.n_queries
    again = split_queries(mmlu_small, by="task", test_size=0.25, seed=3)
    assert np.array_equal(again.test, split.test)


def test_task_split_with_named_tasks(mmlu_small):
    split = split_queries(mmlu_small, by="task", test_tasks=["law", "math"], test_size=0.3, seed=0)
    assert set(mmlu_small.tasks[split.test]) == {"law", "math"}
    assert len(split.test) == 31 + 36  # the fixture's law and math counts
    with pytest.raises(ValueError, match="unknown test_tasks"):
        split_queries(mmlu_small, by="task", test_tasks=["astrology"], test_size=0.3, seed=0)
    with pytest.raises(ValueError, match="task column"):
        split_queries(replace(mmlu_small, tasks=None), by="task", test_size=0.3, seed=0)


def test_given_split_is_used_as_given(nq):
    values = np.array(["train"] * 300 + ["test"] * 150 + ["OOD"] * 40 + [None] * 10, dtype=object)
    data = replace(nq, splits=values)
    split = given_split(data)
    assert split.train.tolist() == list(range(300))
    assert split.test.tolist() == list(range(300, 450))
    assert split.ood.tolist() == list(range(450, 490))
    assert "10 queries without a split value" in split.how
    # the job prefers the given split over any split settings
    resolved = split_data(data, JobConfig.model_validate({"split": {"test_size": 0.5, "seed": 1}}))
    assert np.array_equal(resolved.test, split.test)


def test_given_split_errors_are_clear(nq):
    with pytest.raises(ValueError, match="no test rows"):
        given_split(replace(nq, splits=np.array(["train"] * nq.n_queries, dtype=object)))
    with pytest.raises(ValueError, match="no train and no test"):
        given_split(replace(nq, splits=np.array(["ood"] * nq.n_queries, dtype=object)))
    with pytest.raises(ValueError, match=r"\['validation'\]"):
        given_split(replace(nq, splits=np.array(["train", "validation"] * 250, dtype=object)))


def test_job_split_falls_back_to_hashed_ids(nq):
    empty = replace(nq, splits=np.array([None] * nq.n_queries, dtype=object))
    assert not has_given_split(empty) and not has_given_split(nq)
    split = split_data(empty, JobConfig.model_validate({"split": {"test_size": 0.3, "seed": 2}}))
    assert np.array_equal(split.test, split_queries(nq, seed=2, test_size=0.3).test)
