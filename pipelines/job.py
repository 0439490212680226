"""The scheduled training job, as named steps:

prepare (logs -> validated data -> embeddings) -> fit and evaluate -> log to MLflow -> export ->
register (move the alias only on a win).

One parent MLflow run per job (marked FAILED when a step after its start fails), one nested run
per router family. The alias moves last and only on a win, so a job that fails anywhere leaves
the previous champion in place. Each step prints one line with its duration (``--quiet``: none).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import tracking
from pipelines.config import JobConfig, load_config
from pipelines.experiment import Experiment, run_experiment
from pipelines.prepare import Prepared, prepare
from pipelines.registry import Promotion, register_and_promote
from router.data.labels import RoutingData
from router.data.summary import summarize
from router.serve.service import RouterMeta

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_id: str
    experiment: Experiment
    model_uri: str
    export_path: Path
    promotion: Promotion | None
    embedded: int
    reused: int


class Steps:
    """Prints one line per finished step, with its duration: readable in a cron mail or CI log."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        """Time the block; it may put a one-line ``detail`` in the yielded dict."""
        info: dict = {}
        start = time.perf_counter()
        yield info
        if self.echo is not None:
            detail = f": {info['detail']}" if info.get("detail") else ""
            self.echo(f"[{name}] {time.perf_counter() - start:.1f}s{detail}")

    def show(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)


def held_out_utility(choices: np.ndarray, test: RoutingData, rows: np.ndarray, lam: float,
                     model_costs: np.ndarray) -> float:
    """Mean score - lam * cost of ``choices`` on test ``rows`` (the promotion metric)."""
    score = test.scores[rows, choices]
    cost = test.costs[rows, choices]
    cost = np.where(np.isfinite(cost), cost, model_costs[choices])
    return float(np.mean(score - lam * cost))


def champion_value(uri: str, exp: Experiment, rows: np.ndarray, model_costs: np.ndarray) -> float | None:
    """The champion's held-out utility on this job's test queries (None if these logs lack its models).

    The champion is read as data (``router.load``): nothing in its artifact is executed.
    """
    from router.serve.load import load

    service = load(uri)
    missing = [m for m in service.models if m not in exp.test.models]
    if missing:
        log.warning("champion routes to models absent from these logs: %s", missing)
        return None
    cols = np.array([exp.test.models.index(m) for m in service.models])
    picks = service.choose(service.scores(list(exp.test.prompts[rows])), exp.lam)
    return held_out_utility(cols[picks], exp.test, rows, exp.lam, model_costs)


def router_meta(job: JobConfig, prep: Prepared, exp: Experiment) -> RouterMeta:
    """What the exported router needs beside its head and embedder files."""
    fitted = exp.fitted[job.exported_spec().label]
    curve = fitted.result.curve
    return RouterMeta(
        models=list(prep.data.models), model_costs=[float(c) for c in fitted.router.model_costs_],
        default_lam=float(exp.lam), embedder=prep.embedder.settings(), router=fitted.spec.family,
        budget_curve=[[lam, c, q] for lam, c, q in zip(curve["lam"], curve["cost"], curve["quality"])
                      if c == c and q == q],
    )


def export_step(job: JobConfig, prep: Prepared, exp: Experiment):
    """Log the exported router to the active run and write the local copy; (ModelInfo, local path)."""
    from pipelines.export import log_router, save_router

    head = exp.fitted[job.exported_spec().label].router
    meta = router_meta(job, prep, exp)
    info = log_router(head, prep.embedder, meta)
    return info, save_router(Path(job.export_dir) / job.name, info.model_uri)


def register_step(job: JobConfig, exp: Experiment, model_uri: str) -> Promotion:
    """Register the version; the alias moves only if it beats the champion on these held-out queries."""
    import mlflow

    fitted = exp.fitted[job.exported_spec().label]
    rows = np.flatnonzero(exp.test.mask.all(axis=1))
    costs = fitted.router.model_costs_
    promotion = register_and_promote(
        model_uri, job.name, held_out_utility(fitted.result.choices, exp.test, rows, exp.lam, costs),
        lambda uri: champion_value(uri, exp, rows, costs),
        alias=job.registry.alias, min_improvement=job.registry.min_improvement,
    )
    mlflow.set_tags({"registry.version": promotion.version, "registry.promoted": str(promotion.promoted),
                     "registry.reason": promotion.reason})
    return promotion


def run_job(config: str | Path | JobConfig | None = None, *, echo: Callable[[str], None] = print,
            quiet: bool = False) -> JobResult:
    """Run the whole job; raises on any failure (the CLI turns that into a one-line error).

    With ``cluster`` in the config, the prompts the cache lacks are embedded on the Dask workers and
    the LightGBM heads train there (see ``pipelines.cluster``); everything else runs here.
    ``quiet`` prints only the final line.
    """
    job = config if isinstance(config, JobConfig) else load_config(config)
    steps = Steps(None if quiet else echo)
    started = time.perf_counter()
    client = None
    try:
        if job.cluster is not None:
            from pipelines.cluster import connect

            with steps.step("connect") as info:
                client = connect(job.cluster)
                info["detail"] = f"Dask cluster {job.cluster.address}: {len(client.nthreads())} workers"
        result = _run(job, client, steps, started)
    finally:
        if client is not None:
            client.close()
    p = result.promotion
    outcome = "not registered" if p is None else (
        f"registered {job.name} v{p.version}: "
        f"{'promoted to @' + job.registry.alias if p.promoted else 'not promoted'} ({p.reason})")
    echo(f"exported {job.exported_spec().label} router to {result.export_path}; {outcome}")
    return result


def _run(job: JobConfig, client, steps: Steps, started: float) -> JobResult:
    import mlflow

    partition = job.cluster.partition_size if job.cluster is not None else None
    with steps.step("prepare") as info:
        prep = prepare(job.logs, job.embedder, client, partition)
        emb = prep.embedding
        info["detail"] = (f"{prep.data.n_queries:,} queries x {prep.data.n_models} models; embedded "
                          f"{emb.embedded:,} prompts, {emb.reused:,} reused from cache")
    summary = summarize(prep.data, prep.stats)
    steps.show(summary.to_markdown())
    with steps.step("fit and evaluate") as info:
        exp = run_experiment(prep.data, prep.X, job, client=client)
        info["detail"] = ", ".join(f"{k} {f.fit_seconds:.1f}s" for k, f in exp.fitted.items())
    steps.show(exp.report.to_markdown())

    tracking.configure(job.tracking.experiment, job.tracking.resolved_uri(), job.tracking.resolved_artifact_root())
    with mlflow.start_run(run_name=job.name) as run, tempfile.TemporaryDirectory() as tmp:
        with steps.step("log to MLflow") as info:
            tracking.log_job_run(job, prep, exp, summary, Path(tmp), workers=client and len(client.nthreads()))
            info["detail"] = f"run {run.info.run_id}"
        with steps.step("export") as info:
            model_info, export_path = export_step(job, prep, exp)
            info["detail"] = model_info.model_uri
        promotion = None
        if job.registry.enabled:
            with steps.step("register"):
                promotion = register_step(job, exp, model_info.model_uri)
        tracking.log_metrics({"job/seconds": time.perf_counter() - started})
    return JobResult(run_id=run.info.run_id, experiment=exp, model_uri=model_info.model_uri,
                     export_path=export_path, promotion=promotion, embedded=emb.embedded, reused=emb.reused)
