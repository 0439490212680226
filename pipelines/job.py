"""The scheduled training job, as named steps:

prepare (logs -> validated data -> embeddings) -> fit and evaluate -> log to MLflow -> compare with
the champion -> (only on a win) export -> register (move the alias, then the local champion link).

One parent MLflow run per job (marked FAILED when a step after its start fails, KILLED on SIGTERM;
runs left RUNNING by a SIGKILLed job are closed by the next one), one nested run per router family.
The alias moves last and only on a win, so a job that fails anywhere leaves the previous champion
in place. Each step prints one line with its duration (``--quiet``: none).
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
from pipelines.local_export import CHAMPION, mirror_champion, open_root, point_champion, prune, versions, write_version
from pipelines.registry import Promotion, decide, prune_versions, register
from pipelines.selection import objective
from router.data.summary import summarize
from router.serve.service import RouterMeta

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_id: str
    experiment: Experiment
    model_uri: str | None  # None: the champion was kept and this run's router not logged
    export_path: Path | None  # this run's router, when exported: <export_dir>/<name>/<version>
    champion_path: Path  # <export_dir>/<name>/champion, the link that follows the registry alias
    promotion: Promotion | None  # None: registry disabled
    embedded: int
    reused: int

    def outcome(self, job: JobConfig) -> str:
        """The job's last line: what was exported and where the champion is."""
        p, router = self.promotion, self.experiment.exported
        if self.model_uri is None:
            return f"champion kept, {router} router not exported ({p.reason}); {self.champion_path} unchanged"
        where = f"exported {router} router to {self.export_path or self.model_uri}"
        if p is None:
            return f"{where}; {self.champion_path} -> {self.export_path.name}"
        if not p.promoted:
            return f"{where}; registered {job.name} v{p.version}: not promoted ({p.reason})"
        return f"{where}; registered {job.name} v{p.version}: promoted to @{job.registry.alias} ({p.reason})"


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


def router_meta(prep: Prepared, exp: Experiment) -> RouterMeta:
    """What the exported router needs beside its head and embedder files."""
    fitted = exp.fitted[exp.exported]
    return RouterMeta(
        models=list(prep.data.models), model_costs=[float(c) for c in fitted.router.model_costs_],
        embedder=prep.embedder.settings(), router=fitted.spec.family, calibration=fitted.calibration,
        embedder_id=prep.embedder.id,
    )


def publish(job: JobConfig, prep: Prepared, exp: Experiment, card: str, run_label: str, root: Path,
            steps: Steps) -> tuple[Promotion | None, str | None, Path | None]:
    """Compare with the champion, then log, register and export the router only if it wins.

    Returns (promotion, logged model URI, local version folder); the last two are None when the
    champion was kept (a loser is never logged: see ``pipelines.registry``).
    """
    import mlflow
    from mlflow import MlflowClient

    from pipelines.export import log_router

    promotion = None
    if job.registry.enabled:
        with steps.step("compare with champion") as info:
            try:
                promotion = decide(job.name, job.registry.alias, _challenger_value(exp), _scorer(job, prep, exp),
                                   min_improvement=job.registry.min_improvement)
            except Exception as exc:
                mlflow.set_tag("registry.reason", f"not promoted: scoring the champion failed "
                                                  f"({type(exc).__name__}: {exc})")
                raise
            info["detail"] = promotion.reason
        if not promotion.promoted:
            _tag(promotion)
            mirror_champion(root, job.name, job.registry.alias, job.registry.keep_versions)
            return promotion, None, None
    with steps.step("export") as info:
        model_info = log_router(exp.fitted[exp.exported].router, prep.embedder, router_meta(prep, exp))
        info["detail"] = model_info.model_uri
    if not job.registry.enabled:
        folder = write_version(root, run_label, model_info.model_uri)
        point_champion(root, run_label)
        keep = job.registry.keep_versions
        prune(root, set(versions(root)[-keep - 1:]) if keep is not None else set(versions(root)))
        return None, model_info.model_uri, folder
    with steps.step("register") as info:
        promotion = register(model_info.model_uri, job.name, promotion, _scorer(job, prep, exp), alias=job.registry.alias,
                             min_improvement=job.registry.min_improvement)
        _tag(promotion)
        MlflowClient().update_model_version(job.name, promotion.version,
                                            description=f"{card}\n## Registry\n- {promotion.reason}\n")
        if job.registry.keep_versions is not None:
            deleted = prune_versions(job.name, job.registry.alias, job.registry.keep_versions)
            if deleted:
                mlflow.set_tag("registry.pruned_versions", ",".join(deleted))
        mirror_champion(root, job.name, job.registry.alias, job.registry.keep_versions)
        info["detail"] = promotion.reason
    folder = root / f"v{promotion.version}"
    return promotion, model_info.model_uri, folder if folder.is_dir() else None


def _challenger_value(exp: Experiment) -> float:
    return float(np.nanmean(exp.held_out(exp.exported)))


def _scorer(job: JobConfig, prep: Prepared, exp: Experiment):
    return lambda uri: champion_value(uri, job, exp, prep.X, prep.embedder.id)


def _tag(promotion: Promotion) -> None:
    import mlflow

    mlflow.set_tags({"registry.version": promotion.version or "", "registry.promoted": str(promotion.promoted),
                     "registry.reason": promotion.reason})


def run_job(config: str | Path | JobConfig | None = None, *, echo: Callable[[str], None] = print,
            quiet: bool = False) -> JobResult:
    """Run the whole job; raises on any failure (the CLI turns that into a one-line error).

    With ``cluster`` in the config, the prompts the cache lacks are embedded on the Dask workers and
    the LightGBM heads train there (see ``pipelines.cluster``); everything else runs here.
    ``quiet`` prints only the final line.
    """
    job = config if isinstance(config, JobConfig) else load_config(config)
    check_writable(Path(job.export_dir))  # before any work: not after a whole job (config checks: load_config)
    root = open_root(job.export_dir, job.name)  # a foreign folder at <export_dir>/<name> fails here too
    steps = Steps(None if quiet else echo)
    started = time.perf_counter()
    client = None
    try:
        if job.cluster is not None:
            from pipelines.cluster import connect

            with steps.step("connect") as info:
                client = connect(job.cluster)
                info["detail"] = f"Dask cluster {job.cluster.address}: {len(client.nthreads())} workers"
        result = _run(job, client, root, steps, started)
    finally:
        if client is not None:
            client.close()
    echo(result.outcome(job))
    return result


def _run(job: JobConfig, client, root: Path, steps: Steps, started: float) -> JobResult:
    import mlflow

    tracking.configure(job.tracking.experiment, job.tracking.resolved_uri(), job.tracking.resolved_artifact_root())
    run_name = f"{job.name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"  # one per run, sortable
    for stale in tracking.close_stale_runs(job.name):
        log.warning("marked run %s FAILED: it was RUNNING but its job is gone (killed?)", stale)
    # The parent run spans the whole job: a failure at any step marks it FAILED.
    with mlflow.start_run(run_name=run_name, tags=tracking.owner_tags(job.name)) as run, \
            tempfile.TemporaryDirectory() as tmp, _killed_on(Terminated):
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
        # Without a registry a run's folder is named after the run (its id too: two runs may share a second).
        label = f"{run_name}-{run.info.run_id[:8]}"
        promotion, model_uri, export_path = publish(job, prep, exp, card, label, root, steps)
        tracking.log_metrics({"job/seconds": time.perf_counter() - started})
    return JobResult(run_id=run.info.run_id, experiment=exp, model_uri=model_uri, export_path=export_path,
                     champion_path=root / CHAMPION, promotion=promotion, embedded=emb.embedded, reused=emb.reused)
