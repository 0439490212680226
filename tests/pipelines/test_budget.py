"""One operating point: a budget resolves to the same lambda in the job, at serving and in the pyfunc."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

import router
from pipelines.config import JobConfig, RouterSpec
from pipelines.experiment import run_experiment
from pipelines.publish.export import router_meta
from router.evaluation.metrics import mean_model_costs
from tests.conftest import write_export


def test_a_budget_gives_the_same_lambda_in_the_job_at_serving_and_in_the_pyfunc(nq, nq_X, embedder, tmp_path):
    from router.serve.pyfunc_model import RouterPyfunc

    costs = mean_model_costs(nq)
    budget = float(costs.min() + 0.3 * (np.median(costs) - costs.min()))  # below what ridge spends at lam 0
    job = JobConfig(routers=[RouterSpec(family="ridge")], export_router="ridge", budget=budget,
                    selection={"folds": 3}, registry={"min_gain": -1.0})  # the gate lets ridge ship
    exp = run_experiment(nq, nq_X, job)
    assert exp.exported == "ridge"
    fitted = exp.fitted["ridge"]
    assert fitted.lam > 0 and fitted.point.target.startswith("budget")
    meta = router_meta(SimpleNamespace(data=nq, embedder=embedder), exp)
    service = router.load(write_export(tmp_path / "export", fitted.router, embedder, meta))
    # the job's lambda, the exported default and a per-call budget: one resolver on one curve
    assert service.operating_point().lam == fitted.lam == service.operating_point(budget=budget).lam
    prompts = list(exp.test.prompts[:40])
    pyfunc = RouterPyfunc()
    pyfunc.service = service
    for asked in (budget, budget * 0.8, budget * 1.5):
        routed = service.route(prompts, budget=asked)
        got = pyfunc.predict(None, pd.DataFrame({"prompt": prompts}), params={"budget": asked, "lam": 0.0})
        assert got["model"].tolist() == routed
    # held-out routing at the job's lambda is what the report evaluated
    evaluated = [exp.test.models[i] for i in fitted.result.choices[:40]]
    assert service.route(prompts) == evaluated
