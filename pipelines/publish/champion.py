"""The current champion, scored on this job's held-out queries by the challenger's measure."""

from __future__ import annotations

import logging

import numpy as np

from pipelines.config import JobConfig
from pipelines.experiment import Experiment
from pipelines.gate import objective

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
    missing = [m for m in service.models if m not in exp.test.models]
    if missing:
        log.warning("champion routes to models absent from these logs: %s", missing)
        return None
    rows = exp.eval_rows
    cols = np.array([exp.test.models.index(m) for m in service.models])
    share = {job.share.model: job.share.value} if job.share is not None else None
    point = service.operating_point(budget=job.budget, share=share) if exp.quality_only else \
        service.operating_point(lam=exp.lam)
    tags = exp.test.tasks[rows] if job.task_at_serving and exp.test.tasks is not None else None
    if X is not None and embedder_id and service.meta.embedder_id == embedder_id:
        scores = service.head_scores(X[exp.split.test[rows]], tasks=tags)
    else:
        scores = service.scores(list(exp.test.prompts[rows]), tasks=tags)
    picks = cols[service.choose(scores, point)]
    costs = exp.fitted[exp.exported].router.model_costs_
    return float(np.nanmean(objective(exp.test, rows, picks, point.lam, costs, exp.quality_only)))
