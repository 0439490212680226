"""The router service makes the choices the job evaluated: on tied predictions the cheaper model, as the
report and the router do; and an export of metadata format 1 still routes as it did."""

from __future__ import annotations

import numpy as np

import router


def test_served_choice_equals_evaluated_choice_on_ties(nq, nq_X, embedder, tmp_path):
    """One decision rule: on tied predictions the report, the router and the exported service all
    pick the cheaper model (plain argmax would pick the lower index)."""
    from dataclasses import replace

    from pipelines.publish.export import write_head
    from router.evaluation.metrics import evaluate_router
    from router.routers import BestSingleRouter
    from router.serve.service import RouterMeta, RouterService

    best = int(np.argmax(np.nanmean(nq.scores, axis=0)))
    costs = np.nanmean(nq.costs, axis=0)
    # A pair where the lower index is the dearer model: argmax would pick it, the rule must not.
    dear, cheap = next((i, j) for i in range(nq.n_models) for j in range(i + 1, nq.n_models) if costs[i] > costs[j])
    Y = nq.scores.copy()
    Y[:, dear] = Y[:, cheap] = nq.scores[:, best]  # both tie at the top of every best-single prediction
    data = replace(nq, scores=Y)
    tr, te = np.arange(0, 350), np.arange(350, 500)
    head = BestSingleRouter().fit(nq_X[tr], Y[tr], nq.costs[tr], nq.mask[tr])
    pred = head.predict_scores(nq_X[te])
    assert (pred[:, dear] == pred[:, cheap]).all() and np.argmax(pred[0]) == dear  # a real tie

    evaluated = evaluate_router(pred, data.subset(te), data.subset(tr), head.model_costs_, 0.0).choices
    meta = RouterMeta(models=list(nq.models), model_costs=head.model_costs_.tolist(),
                      embedder=embedder.settings(), router="best_single")
    service = RouterService.from_dir(write_head(tmp_path / "head", head, meta))
    served = service.route(list(nq.prompts[te]))
    assert set(evaluated.tolist()) == {cheap}
    assert served == [nq.models[i] for i in evaluated]
    assert head.route(nq_X[te]).tolist() == evaluated.tolist()


def test_an_export_of_metadata_format_1_still_routes_as_it_did(nq_export, tmp_path):
    """Format 1 kept a held-out ``budget_curve`` [lam, $/query, quality], ``default_lam``, ``share_margins`` and
    ``default_bias``: read as a calibration, a budget still takes the smallest lambda within it (else the largest)."""
    import json
    import shutil

    folder = tmp_path / "v1-export"
    shutil.copytree(nq_export, folder, symlinks=True)
    meta_file = folder / "artifacts" / "head" / "router_meta.json"
    raw = json.loads(meta_file.read_text())
    models = raw["models"]
    raw.pop("calibration")
    raw.update(format_version=1, default_lam=0.0, default_bias=[], share_margins=[],
               budget_curve=[[1000.0, 2e-5, 0.4], [0.0, 1e-4, 0.5], [100.0, 5e-5, 0.45]])
    meta_file.write_text(json.dumps(raw))
    service = router.load(folder)
    assert service.models == models and service.meta.default_lam == 0.0
    assert service.operating_point(budget=6e-5).lam == 100.0  # the smallest lambda within the budget
    assert service.operating_point(budget=1e-6).lam == 1000.0  # none within: the cheapest routing
    assert len(service.route(["who wrote hamlet"], budget=6e-5)) == 1
