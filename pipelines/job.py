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

from pipelines.config import JobConfig, load_config
from pipelines.experiment import Experiment, run_experiment
from pipelines.prepare import prepare
from pipelines.publish import tracking
from pipelines.publish.local_export import CHAMPION, open_root
from pipelines.publish.registry import Promotion
from pipelines.publish.release import release
from pipelines.steps import Steps
from router.data.summary import summarize

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
        """The job's last line: what was exported, where the champion is, and the verdict the way users count
        it (what the router saves or gains over always calling the best single model)."""
        p, router, verdict = self.promotion, self.experiment.exported, self.experiment.verdict
        if self.model_uri is None:
            return (f"champion kept, {router} router not exported ({p.reason}); {self.champion_path} unchanged; "
                    f"this run: {verdict}")
        where = f"exported {router} router to {self.export_path or self.model_uri}"
        if p is None:
            return f"{where}; {self.champion_path} -> {self.export_path.name}; {verdict}"
        if not p.promoted:
            return f"{where}; registered {job.name} v{p.version}: not promoted ({p.reason}); {verdict}"
        return (f"{where}; registered {job.name} v{p.version}: promoted to @{job.registry.alias} ({p.reason}); "
                f"{verdict}")

    def next_steps(self, job: JobConfig) -> str:
        """How to use what the job made: load the champion in Python, or serve it."""
        if not self.champion_path.exists():
            return ""
        return (f"use it: router.load(\"{self.champion_path}\") in Python, or `router serve {self.champion_path} "
                f"--upstreams upstreams.yaml` (docs/serving.md)")


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


def check_writable(folder: Path) -> None:
    """``folder`` exists (made if needed) and takes a new file, or a ValueError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise ValueError(f"export_dir {folder} is not writable ({exc.strerror or exc}); fix its permissions or "
                         "set export_dir") from None


def run_job(config: str | Path | JobConfig | None = None, *, echo: Callable[[str], None] = print,
            quiet: bool = False) -> JobResult:
    """Run the whole job; raises on any failure (the CLI turns that into a one-line error).

    With ``cluster`` in the config, the prompts the cache lacks are embedded on the Dask workers and
    the LightGBM heads train there (see ``pipelines.dask_cluster``); everything else runs here.
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
            from pipelines.dask_cluster import connect

            with steps.step("connect") as info:
                client = connect(job.cluster)
                info["detail"] = f"Dask cluster {job.cluster.address}: {len(client.nthreads())} workers"
        result = _run(job, client, root, steps, started)
    finally:
        if client is not None:
            client.close()
    if not quiet and result.next_steps(job):
        echo(result.next_steps(job))
    echo(result.outcome(job))  # the last line: what a cron mail shows first
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
            info["detail"] = ", ".join(f"{k} {f.seconds:.1f}s" for k, f in exp.fitted.items())
        steps.show(exp.report.to_markdown())
        steps.show("\n".join(exp.outcome_lines(job)))
        with steps.step("log to MLflow") as info:
            card = tracking.log_job_run(job, prep, exp, summary, Path(tmp), workers=client and len(client.nthreads()))
            info["detail"] = f"run {run.info.run_id} ({run_name})"
        # Without a registry a run's folder is named after the run (its id too: two runs may share a second).
        label = f"{run_name}-{run.info.run_id[:8]}"
        promotion, model_uri, export_path = release(job, prep, exp, card, label, root, steps)
        tracking.log_metrics({"job/seconds": time.perf_counter() - started})
    return JobResult(run_id=run.info.run_id, experiment=exp, model_uri=model_uri, export_path=export_path,
                     champion_path=root / CHAMPION, promotion=promotion, embedded=emb.embedded, reused=emb.reused)
