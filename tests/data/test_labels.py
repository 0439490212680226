"""Score/cost matrices, the best-model tie rules and cost-aware utility, checked by hand; the propensities
the routing data carries (or not) for logs of the router's own traffic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from router.data import labels
from router.data.labels import RoutingData

nan = np.nan


def test_best_label_is_argmax_score():
    Y = np.array([[0.2, 0.9, 0.5], [1.0, 0.0, 0.0]])
    assert labels.best_model_labels(Y, ~np.isnan(Y)).tolist() == [1, 0]


def test_ties_go_to_lower_cost():
    Y = np.array([[1.0, 1.0, 0.0]])
    C = np.array([[0.03, 0.01, 0.001]])
    assert labels.best_model_labels(Y, ~np.isnan(Y), C).tolist() == [1]


def test_unknown_cost_ranks_after_known_cost():
    Y = np.array([[1.0, 1.0]])
    C = np.array([[nan, 0.5]])
    assert labels.best_model_labels(Y, ~np.isnan(Y), C).tolist() == [1]


def test_equal_score_and_cost_go_to_higher_mean_model():
    # query 0 ties models 0 and 2 on score and cost; model 2 has the higher mean over all queries
    Y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    C = np.ones_like(Y)
    assert labels.best_model_labels(Y, ~np.isnan(Y), C)[0] == 2


def test_full_tie_goes_to_lowest_index_and_missing_rows_get_minus_one():
    Y = np.array([[0.5, 0.5], [nan, nan], [nan, 0.1]])
    mask = ~np.isnan(Y)
    assert labels.best_model_labels(Y, mask).tolist() == [0, -1, 1]


def test_masked_cells_never_win():
    Y = np.array([[nan, 0.1, 0.0]])
    assert labels.best_model_labels(Y, ~np.isnan(Y)).tolist() == [1]


def test_cost_aware_labels_and_utility():
    Y = np.array([[0.9, 0.8]])
    C = np.array([[0.10, 0.01]])
    np.testing.assert_allclose(labels.utility(Y, C, 2.0), [[0.9 - 0.2, 0.8 - 0.02]])
    assert labels.best_model_labels(Y, ~np.isnan(Y), C, lam=0.0).tolist() == [0]
    assert labels.best_model_labels(Y, ~np.isnan(Y), C, lam=2.0).tolist() == [1]
    # unknown cost counts as free: quality only
    np.testing.assert_allclose(labels.utility(Y, np.full_like(Y, nan), 5.0), Y)


def test_oracle_and_means_respect_mask():
    Y = np.array([[0.2, nan], [1.0, 0.0], [nan, nan]])
    mask = ~np.isnan(Y)
    np.testing.assert_allclose(labels.model_means(Y, mask), [0.6, 0.0])
    o = labels.oracle_scores(Y, mask)
    assert o[:2].tolist() == [0.2, 1.0] and np.isnan(o[2])


def test_routing_data_on_real_sample(nq):
    assert nq.scores.shape == nq.costs.shape == nq.mask.shape == (500, 6)
    assert list(nq.query_ids) == sorted(nq.query_ids)
    best = labels.best_model_labels(nq.scores, nq.mask, nq.costs)
    assert ((best >= 0) & (best < 6)).all()
    # a best-labelled model always has the row's max score
    assert np.allclose(nq.scores[np.arange(500), best], nq.scores.max(axis=1))
    sub = nq.subset(np.arange(10)).select_models(list(nq.models[:2]))
    assert sub.scores.shape == (10, 2) and sub.prompts.shape == (10,)
    with pytest.raises(ValueError, match="unknown models"):
        nq.select_models(["gpt-9"])


def test_logs_tagging_only_some_queries_give_the_others_a_task_of_their_own(tmp_path):
    """Served decisions without tags beside tagged logs: every query has a string task; none is None
    (sorting the task names, as the job and the per-task report do, then works)."""
    import json

    from router.data.scan import scan_logs
    from tests.conftest import NQ_SAMPLE

    rows = [json.loads(line) for line in NQ_SAMPLE.read_text().splitlines()[:60]]
    untagged = {r["query_id"] for r in rows[:30]}
    for r in rows:
        if r["query_id"] in untagged:
            r.pop("task", None)
    (tmp_path / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = labels.build_routing_data(scan_logs(tmp_path / "logs.jsonl"))
    tags = dict(zip(data.query_ids, data.tasks))
    assert {tags[q] for q in untagged} == {labels.UNTAGGED}
    assert {t for q, t in tags.items() if q not in untagged} == {"nq"}
    assert sorted(set(data.tasks.tolist())) == ["(untagged)", "nq"]
    for r in rows:
        r.pop("task", None)
    (tmp_path / "logs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert labels.build_routing_data(scan_logs(tmp_path / "logs.jsonl")).tasks is None


def test_logs_without_the_column_have_no_propensities(nq):
    assert nq.propensities is None and not nq.is_bandit.any() and nq.is_bandit.shape == (nq.n_queries,)
    assert nq.subset(np.arange(5)).propensities is None and nq.select_models(nq.models[:2]).propensities is None


def test_is_bandit_needs_one_observed_model_with_a_propensity():
    nan = np.nan
    scores = np.array([[1.0, nan], [1.0, 0.0], [nan, 0.5], [nan, 0.2]])
    props = np.array([[0.9, nan], [0.9, nan], [nan, nan], [nan, 0.1]])
    data = RoutingData(query_ids=np.array(list("abcd")), prompts=np.array(list("abcd")), models=("m", "n"),
                       scores=scores, mask=~np.isnan(scores), costs=np.full_like(scores, nan), propensities=props)
    assert data.is_bandit.tolist() == [True, False, False, True]
    assert replace(data, propensities=None).is_bandit.tolist() == [False] * 4
