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
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pipelines import tracking
from pipelines.config import JobConfig, load_config
from pipelines.experiment import Experiment, run_experiment
from pipelines.prepare import Prepared, prepare
from pipelines.registry import Promotion, prune_versions, register_and_promote
from pipelines.selection import objective
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


class Terminated(Exception):
    """The job was asked to stop (SIGTERM from cron, Airflow or Kubernetes); its run is marked KILLED."""


@contextmanager
def _killed_on(exc_type: type[BaseException]) -> Iterator[None]:
    """Inside an active MLflow run: end it as KILLED, not FAILED, when ``exc_type`` stops the job."""
    import mlflow

    try:
        yield
    except exc_type:
        mlflow.end_run(status="KILLED")
        raise


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


def check_writable(folder: Path) -> None:
    """``folder`` exists (made if needed) and takes a new file, or a ValueError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise ValueError(f"export_dir {folder} is not writable ({exc.strerror or exc}); fix its permissions or "
                         "set export_dir") from None


def champion_value(uri: str, job: JobConfig, exp: Experiment) -> float | None:
    """The champion's held-out objective on this job's test queries, by the challenger's measure
    (None if these logs lack its models). It is read as data (``router.load``): nothing in its
    artifact is executed. Under a budget it runs at its own lambda for that budget."""
    from router.serve.load import load

    service = load(uri)
    missing = [m for m in service.models if m not in exp.test.models]
    if missing:
        log.warning("champion routes to models absent from these logs: %s", missing)
        return None
    rows = exp.eval_rows
    cols = np.array([exp.test.models.index(m) for m in service.models])
    share = {job.share.model: job.share.value} if job.share is not None else None
    lam, bias = service.operating_point(budget=job.budget, share=share) if exp.quality_only else (exp.lam, None)
    picks = cols[service.choose(service.scores(list(exp.test.prompts[rows])), lam, bias)]
    costs = exp.fitted[exp.exported].router.model_costs_
    return float(np.nanmean(objective(exp.test, rows, picks, lam, costs, exp.quality_only)))


def router_meta(prep: Prepared, exp: Experiment) -> RouterMeta:
    """What the exported router needs beside its head and embedder files."""
    fitted = exp.fitted[exp.exported]
    curve = fitted.result.curve
    return RouterMeta(
        models=list(prep.data.models), model_costs=[float(c) for c in fitted.router.model_costs_],
        default_lam=float(fitted.lam), embedder=prep.embedder.settings(), router=fitted.spec.family,
        default_bias=[float(b) for b in fitted.point.bias] if fitted.point.bias.any() else [],
        share_margins=fitted.point.margins.tolist(),
        budget_curve=[[lam, c, q] for lam, c, q in zip(curve["lam"], curve["cost"], curve["quality"])
                      if c == c and q == q],
    )


def export_step(job: JobConfig, prep: Prepared, exp: Experiment):
    """Log the exported router to the active run and write the local copy; (ModelInfo, local path)."""
    from pipelines.export import log_router, save_router

    head = exp.fitted[exp.exported].router
    meta = router_meta(prep, exp)
    info = log_router(head, prep.embedder, meta)
    return info, save_router(Path(job.export_dir) / job.name, info.model_uri)


def register_step(job: JobConfig, exp: Experiment, model_uri: str, card: str) -> Promotion:
    """Register the version (the model card is its description); the alias moves only if it beats
    the champion on these held-out queries."""
    import mlflow
    from mlflow import MlflowClient

    promotion = register_and_promote(
        model_uri, job.name, float(np.nanmean(exp.held_out(exp.exported))),
        lambda uri: champion_value(uri, job, exp),
        alias=job.registry.alias, min_improvement=job.registry.min_improvement,
    )
    mlflow.set_tags({"registry.version": promotion.version, "registry.promoted": str(promotion.promoted),
                     "registry.reason": promotion.reason})
    MlflowClient().update_model_version(job.name, promotion.version,
                                        description=f"{card}\n## Registry\n- {promotion.reason}\n")
    if job.registry.keep_versions is not None:
        deleted = prune_versions(job.name, job.registry.alias, job.registry.keep_versions)
        if deleted:
            mlflow.set_tag("registry.pruned_versions", ",".join(deleted))
    return promotion


def run_job(config: str | Path | JobConfig | None = None, *, echo: Callable[[str], None] = print,
            quiet: bool = False) -> JobResult:
    """Run the whole job; raises on any failure (the CLI turns that into a one-line error).

    With ``cluster`` in the config, the prompts the cache lacks are embedded on the Dask workers and
    the LightGBM heads train there (see ``pipelines.cluster``); everything else runs here.
    ``quiet`` prints only the final line.
    """
    job = config if isinstance(config, JobConfig) else load_config(config)
    check_writable(Path(job.export_dir))  # before any work: not after a whole job (config checks: load_config)
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
    echo(f"exported {result.experiment.exported} router to {result.export_path}; {outcome}")
    return result


def _run(job: JobConfig, client, steps: Steps, started: float) -> JobResult:
    import mlflow

    tracking.configure(job.tracking.experiment, job.tracking.resolved_uri(), job.tracking.resolved_artifact_root())
    run_name = f"{job.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"  # one per run, sortable
    # The parent run spans the whole job: a failure at any step marks it FAILED.
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp, _killed_on(Terminated):
        partition = job.cluster.partition_size if job.cluster is not None else None
        with steps.step("prepare") as info:
            prep = prepare(job.logs, job.embedder, client, partition)
            emb = prep.embedding
            info["detail"] = (f"{prep.data.n_queries:,} queries x {prep.data.n_models} models; embedded "
                              f"{emb.embedded:,} prompts, {emb.reused:,} reused from cache")
        summary = summarize(prep.data, prep.stats)
        steps.show(summary.to_markdown())
        with steps.step("select, fit and evaluate") as info:
            exp = run_experiment(prep.data, prep.X, job, client=client)
            info["detail"] = ", ".join(f"{k} {f.fit_seconds:.1f}s" for k, f in exp.fitted.items())
        steps.show(exp.report.to_markdown())
        steps.show("\n".join(exp.outcome_lines(job)))
        with steps.step("log to MLflow") as info:
            card = tracking.log_job_run(job, prep, exp, summary, Path(tmp), workers=client and len(client.nthreads()))
            info["detail"] = f"run {run.info.run_id} ({run_name})"
        with steps.step("export") as info:
            model_info, export_path = export_step(job, prep, exp)
            info["detail"] = model_info.model_uri
        promotion = None
        if job.registry.enabled:
            with steps.step("register"):
                promotion = register_step(job, exp, model_info.model_uri, card)
        tracking.log_metrics({"job/seconds": time.perf_counter() - started})
    return JobResult(run_id=run.info.run_id, experiment=exp, model_uri=model_info.model_uri,
                     export_path=export_path, promotion=promotion, embedded=emb.embedded, reused=emb.reused)
