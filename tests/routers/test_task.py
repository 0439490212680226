"""The task router family (router.routers.task) and task features: the tag is learnt at fit time and inferred
from the embedding at predict time (a known tag wins); the job passes tags to the family, evaluates and serves
with them, and the exported pyfunc reads a task column."""

from __future__ import annotations

import numpy as np
import pytest

from router.routers.features import TaskOneHot
from router.serve.artifact import load_head, save_head
from tests.routers.conftest import two_cluster_data


def test_task_one_hot_appends_known_tasks_and_zeros_for_new_ones():
    enc = TaskOneHot(scale=0.5).fit(["law", "math", "law"])
    Z = enc.transform(np.zeros((3, 2)), ["math", "law", "poetry"])
    np.testing.assert_array_equal(Z[:, 2:], [[0, 0.5], [0.5, 0], [0, 0]])


def test_task_router_infers_the_task_and_routes_by_its_best_model():
    """The tag is seen at fit time only: at predict time the task is inferred from the embedding."""
    from router.routers import TaskRouter

    X, Y, blob = two_cluster_data(n=900, seed=3)
    tasks = np.array(["algebra", "poetry"])[blob]
    router = TaskRouter(cv=3).fit(X[:600], Y[:600], tasks=tasks[:600])
    assert router.tasks_ == ["algebra", "poetry"] and router.task_scores_.shape == (2, 3)
    picks = router.route(X[600:])
    assert (picks == blob[600:]).mean() > 0.95  # model 0 on algebra, model 1 on poetry
    # without tags it can only predict each model's mean: one column for every query
    plain = TaskRouter(cv=3).fit(X[:600], Y[:600])
    assert len(np.unique(plain.route(X[600:]))) == 1
    with pytest.raises(ValueError, match="tasks has 5 labels for 600 queries"):
        TaskRouter(cv=3).fit(X[:600], Y[:600], tasks=tasks[:5])


def test_task_router_round_trips_and_needs_no_tags_to_predict(mmlu):
    from router.routers import TaskRouter

    d, X, tr, te = mmlu
    router = TaskRouter(cv=3).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr], tasks=d.tasks[tr])
    assert set(router.tasks_) == set(d.tasks[tr]) and router.best_params_["assignment"] in ("soft", "hard")
    loaded = load_head(save_head(router, _tmp_dir()))
    np.testing.assert_array_equal(loaded.predict_scores(X[te]), router.predict_scores(X[te]))


def _tmp_dir():
    import tempfile

    return tempfile.mkdtemp(prefix="task-head-")


def test_the_job_passes_tasks_to_the_task_family_and_skips_it_without_them(mmlu_small, mmlu_small_X, nq, nq_X):
    from dataclasses import replace

    from pipelines.config import JobConfig
    from pipelines.experiment import run_experiment

    job = JobConfig(routers=[{"family": "task", "params": {"cv": 3}}], selection={"folds": 3})
    exp = run_experiment(mmlu_small, mmlu_small_X, job)
    assert list(exp.fitted) == ["best_single", "task"] and exp.fitted["task"].router.tasks_
    untagged = replace(nq, tasks=None)
    assert list(run_experiment(untagged, nq_X, job).fitted) == ["best_single"]
    one_task = replace(nq, tasks=np.full(nq.n_queries, "nq"))
    assert list(run_experiment(one_task, nq_X, job).fitted) == ["best_single"]
    with pytest.raises(ValueError, match="export_router 'task' .*needs a task column with at least two tasks"):
        run_experiment(untagged, nq_X, job.model_copy(update={"export_router": "task"}))


def test_known_task_tags_route_by_their_task_and_unknown_ones_are_inferred():
    from router.routers import TaskRouter

    X, Y, blob = two_cluster_data(n=900, seed=4)
    tasks = np.array(["algebra", "poetry"])[blob]
    router = TaskRouter(cv=3).fit(X[:600], Y[:600], tasks=tasks[:600])
    inferred = router.predict_scores(X[600:610])
    # a wrong tag on purpose: the known tag wins over what the embedding says
    flipped = np.where(tasks[600:610] == "algebra", "poetry", "algebra")
    tagged = router.predict_scores(X[600:610], tasks=flipped)
    np.testing.assert_array_equal(tagged, router.task_scores_[[router.tasks_.index(t) for t in flipped]])
    unknown = router.predict_scores(X[600:610], tasks=[None] * 5 + ["never-seen"] * 5)
    np.testing.assert_array_equal(unknown, inferred)
    with pytest.raises(ValueError, match="one tag per query"):
        router.predict_scores(X[600:610], tasks=["algebra"])


def test_task_at_serving_evaluates_and_serves_with_the_tags(mmlu_small, mmlu_small_X, embedder):
    """With task_at_serving the job evaluates the task family on the held-out queries' own tags, and a
    service given the same tags makes the same choices."""
    from pipelines.config import JobConfig
    from router.policy.rule import choose
    from router.serve.service import RouterMeta, RouterService

    job = JobConfig(routers=[{"family": "task", "params": {"cv": 3}}], selection={"folds": 3},
                    task_at_serving=True)
    from pipelines.experiment import run_experiment

    exp = run_experiment(mmlu_small, mmlu_small_X, job)
    fitted = exp.fitted["task"]
    router, rows = fitted.router, exp.eval_rows
    tags = exp.test.tasks[rows]
    table = router.task_scores_[[router.tasks_.index(t) for t in tags]]
    np.testing.assert_array_equal(fitted.result.choices, choose(table, router.model_costs_, fitted.lam))
    meta = RouterMeta(models=list(mmlu_small.models), model_costs=router.model_costs_.tolist(),
                      embedder=embedder.settings(), router="task")
    service = RouterService(embedder, router, meta)
    prompts = list(exp.test.prompts[rows])
    assert service.route(prompts, tasks=list(tags)) == [mmlu_small.models[i] for i in fitted.result.choices]


def test_the_exported_pyfunc_passes_task_tags_to_a_task_head(embedder):
    """The pyfunc reads an optional task column (NaN: infer) and a task head routes by it."""
    import pandas as pd

    from router.routers import TaskRouter
    from router.serve.pyfunc_model import RouterPyfunc
    from router.serve.service import RouterMeta, RouterService

    prompts = ["solve 12 * 7", "write a haiku about rain", "what is 3 + 4", "a sonnet on the sea"] * 50
    tasks = np.array(["math", "poetry", "math", "poetry"] * 50)
    X = embedder.encode(prompts)
    Y = np.stack([(tasks == "math"), (tasks == "poetry"), np.full(len(tasks), 0.5)], axis=1).astype(float)
    head = TaskRouter(cv=3).fit(X, Y, tasks=tasks)
    meta = RouterMeta(models=["calc", "bard", "coin"], model_costs=[0.0] * 3,
                      embedder=embedder.settings(), router="task")
    pyfunc = RouterPyfunc()
    pyfunc.service = RouterService(embedder, head, meta)
    frame = pd.DataFrame({"prompt": ["solve 12 * 7", "solve 12 * 7"], "task": ["poetry", np.nan]})
    assert pyfunc.predict(None, frame)["model"].tolist() == ["bard", "calc"]  # the tag wins; NaN: inferred
