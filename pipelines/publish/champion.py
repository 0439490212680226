"""The current champion, scored on this job's held-out queries by the challenger's measure."""

from __future__ import annotations

import logging

import numpy as np

from pipelines.config import JobConfig
from pipelines.result import Experiment

log = logging.getLogger(__name__)


def champion_value(uri: str, job: JobConfig, exp: Experiment, X: np.ndarray | None = None,
                   embedder_id: str = "") -> float | None:
    """The champion's held-out objective on this job's test queries, by the challenger's measure
    (None if these logs lack its models). It is read as data (``router.load``): nothing in its
    artifact is executed. Under a budget it runs at its own lambda for that budget. When it was
    trained with this job's embedder (same ``embedder_id``), its head scores the job's own vectors
    ``X`` (every query's, as split); otherwise every held-out prompt is embedded by its own embedder."""
    from router.serve.load import load

    service = load(uri)
    if set(service.models) != set(exp.test.models) and not job.registry.allow_model_change:
        raise ValueError(
            f"refused: {uri} ({job.name}'s champion) routes to {sorted(service.models)}, these logs have "
            f"{sorted(exp.test.models)}; its services have no upstream for other models. Give this router "
            f"its own name (--name), or replace the champion with --allow-model-change")
    missing = [m for m in service.models if m not in exp.test.models]
    if missing:
        log.warning("champion routes to models absent from these logs: %s", missing)
        return None
    rows = exp.eval_rows
    cols = np.array([exp.test.models.index(m) for m in service.models])
    point = champion_point(service, job, exp)
    tags = exp.test.tasks[rows] if job.task_at_serving and exp.test.tasks is not None else None
    if X is not None and embedder_id and service.meta.embedder_id == embedder_id:
        scores = service.head_scores(X[exp.split.test[rows]], tasks=tags)
    else:
        scores = service.scores(list(exp.test.prompts[rows]), tasks=tags)
    picks = cols[service.choose(scores, point)]
    return exp.outcomes(picks, exp.fitted[exp.exported].router.model_costs_).value(exp.goal)


def champion_point(service, job: JobConfig, exp: Experiment):
    """The champion's operating point for this job's objective, resolved on its own calibration: its lambda
    for the job's budget, its bias for the job's share, its cheapest point within the job's savings margin
    (its default when it was exported without quality on its curve), else the job's lambda."""
    kind = exp.goal.kind
    if kind == "budget":
        return service.operating_point(budget=job.budget)
    if kind == "share":
        return service.operating_point(share={job.share.model: job.share.value})
    if kind == "savings":
        try:
            return service.operating_point(margin=exp.goal.margin)
        except ValueError:  # an export from before savings: its own default point
            return service.operating_point()
    return service.operating_point(lam=exp.lam)
