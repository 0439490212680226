"""The training job: ingest -> labels -> embed (cached) -> fit -> evaluate -> log -> export -> register.

One parent MLflow run per job, one nested run per router family. The champion alias moves
last and only on a win, so a job that fails anywhere leaves the previous champion in place.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import tracking
from pipelines.config import JobConfig, load_config
from pipelines.prepare import load_routing_data
from router.embed import EmbeddingCache, embed_with_cache
from pipelines.experiment import Experiment, run_experiment
from router.data.ingest import resolve_paths
from router.data.labels import RoutingData
from router.data.summary import summarize

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    run_id: str
    experiment: Experiment
    model_uri: str
    export_path: Path
    promotion: object | None  # registry.Promotion
    embedded: int
    reused: int


def file_fingerprint(source: str) -> str:
    """sha256 over the input files' names and bytes: which data a run saw."""
    h = hashlib.sha256()
    for path in resolve_paths(source):
        h.update(str(path.name).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def held_out_utility(choices: np.ndarray, test: RoutingData, rows: np.ndarray, lam: float,
                     model_costs: np.ndarray) -> float:
    """Mean score - lam * cost of ``choices`` on test ``rows`` (the promotion metric)."""
    i = np.arange(len(rows))
    score = test.scores[rows, choices]
    cost = test.costs[rows, choices]
    cost = np.where(np.isfinite(cost), cost, model_costs[choices])
    return float(np.mean(score - lam * cost))


def _champion_value(uri: str, exp: Experiment, lam: float, rows: np.ndarray, model_costs: np.ndarray):
    """The current champion's held-out utility on this job's test queries (None if incomparable)."""
    from pipelines.export import load

    service = load(uri)
    missing = [m for m in service.models if m not in exp.test.models]
    if missing:
        log.warning("champion routes to models absent from these logs: %s", missing)
        return None
    cols = np.array([exp.test.models.index(m) for m in service.models])
    picks = service.choose(service.scores(list(exp.test.prompts[rows])), lam)
    return held_out_utility(cols[picks], exp.test, rows, lam, model_costs)


def _log_router_run(label: str, fitted, exp: Experiment, plots_dir: Path) -> None:
    import mlflow

    from router.evaluation.plots import plot_routing_share

    with mlflow.start_run(run_name=label, nested=True):
        tracking.log_params({"family": fitted.spec.family, "lam": exp.lam,
                             **{f"param.{k}": v for k, v in fitted.router.get_params(deep=False).items()}})
        metrics = tracking.flatten("", fitted.result.to_dict())
        metrics = {k: v for k, v in metrics.items() if not k.startswith("curve/")}
        metrics.update(fit_seconds=fitted.fit_seconds, predict_seconds=fitted.predict_seconds)
        tracking.log_metrics(metrics)
        png = plot_routing_share(fitted.result, exp.test.models, plots_dir / f"routing_share_{label}.png",
                                 title=f"{label}: routing share on held-out queries")
        tracking.log_file(png, "plots")


def run_job(config: str | Path | JobConfig | None = None, *, echo=print) -> JobResult:
    """Run the whole job; raises on any failure (the CLI turns that into a one-line error).

    With ``cluster`` in the config, the prompts the cache lacks are embedded on the Dask workers and
    the LightGBM heads train there (see ``pipelines.cluster``); everything else runs here.
    """
    job = config if isinstance(config, JobConfig) else load_config(config)
    started = time.perf_counter()
    client = None
    try:
        if job.cluster is not None:
            from pipelines.cluster import connect

            client = connect(job.cluster)
            echo(f"Dask cluster {job.cluster.address}: {len(client.nthreads())} workers")
        return _run(job, client, started, echo)
    finally:
        if client is not None:
            client.close()


def _run(job: JobConfig, client, started: float, echo) -> JobResult:
    """``run_job`` once the config is loaded and the cluster (if any) connected."""
    import mlflow

    from pipelines.export import log_router, save_router
    from router.evaluation.plots import plot_cost_quality
    from pipelines.registry import register_and_promote
    from router.serve.service import RouterMeta

    data, stats = load_routing_data(job.logs)
    summary = summarize(data, stats)
    echo(summary.to_markdown())

    embedder = job.embedder.build()  # the one exported; the cluster path only runs its encode remotely
    cache = EmbeddingCache(job.embedder.cache_dir)
    if client is None:
        X, emb = embed_with_cache(embedder, data.prompts, cache)
        fit_job = job
    else:
        from pipelines.cluster import ClusterEmbedder, with_cluster

        encoder = ClusterEmbedder(embedder, client, job.cluster.partition_size)
        X, emb = embed_with_cache(encoder, data.prompts, cache, chunk_size=encoder.chunk_size)
        fit_job = with_cluster(job, job.cluster.address)
    echo(f"\nembeddings: {emb.embedded:,} prompts embedded, {emb.reused:,} reused from cache ({emb.seconds:.1f}s)")

    exp = run_experiment(data, X, fit_job)
    echo("\n" + exp.report.to_markdown())

    tracking.configure(job.tracking.experiment, job.tracking.resolved_uri(), job.tracking.resolved_artifact_root())
    exported = job.exported_spec().label
    with mlflow.start_run(run_name=job.name) as run, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlflow.set_tags({"job": job.name, "exported_router": exported, "split": exp.split.how})
        if job.cluster is not None:
            mlflow.set_tag("cluster.address", job.cluster.address)
        tracking.log_params({
            "logs.path": job.logs.path, "logs.format": job.logs.format,
            "logs.sha256": file_fingerprint(job.logs.path),
            "embedder.id": embedder.id, **{f"embedder.{k}": v for k, v in embedder.settings().items()},
            "routers": [r.label for r in job.routers], "export_router": exported, "lam": exp.lam,
            "budget": job.budget, **exp.split.sizes(),
            **({"cluster.address": job.cluster.address, "cluster.partition_size": job.cluster.partition_size,
                "cluster.workers": len(client.nthreads())} if client is not None else {}),
        })
        tracking.log_json(job.model_dump(mode="json"), "config/resolved_config.json")
        tracking.log_json(summary.to_dict(), "data/summary.json")
        tracking.log_text(summary.to_markdown(), "data/summary.md")
        tracking.log_metrics({"data/queries": data.n_queries, "data/models": data.n_models,
                              "data/missing_cells": summary.missing_cells, "embed/embedded": emb.embedded,
                              "embed/reused": emb.reused, "embed/seconds": emb.seconds})
        report = exp.report.to_dict()
        tracking.log_json(report, "evaluation/report.json")
        tracking.log_text(exp.report.to_markdown(), "evaluation/report.md")
        for label, fitted in exp.fitted.items():
            _log_router_run(label, fitted, exp, tmp)
        headline = report["routers"][exported]
        tracking.log_metrics(tracking.flatten("test", {k: headline.get(k) for k in
                                                       ("quality", "cost", "gap_closed", "aiq")}))
        tracking.log_metrics(tracking.flatten("test", {"routing_share": headline["routing_share"],
                                                       "per_task": headline["per_task"]}))
        if exp.report.baselines.has_cost:
            tracking.log_file(plot_cost_quality(exp.report, tmp / "cost_quality.png",
                                                title=f"{job.name}: cost vs quality on held-out queries"), "plots")

        fitted = exp.fitted[exported]
        if client is not None:
            from pipelines.cluster import detach

            detach(fitted.router)  # the exported router never refits on this cluster
        curve = fitted.result.curve
        meta = RouterMeta(
            models=list(data.models), model_costs=[float(c) for c in fitted.router.model_costs_],
            default_lam=float(exp.lam), embedder=embedder.settings(), router=fitted.spec.family,
            budget_curve=[[lam, c, q] for lam, c, q in zip(curve["lam"], curve["cost"], curve["quality"])
                          if c == c and q == q],
        )
        info = log_router(fitted.router, embedder, meta)
        export_path = save_router(Path(job.export_dir) / job.name, fitted.router, embedder, meta)
        echo(f"\nexported {exported} router: {info.model_uri} (local copy {export_path})")

        promotion = None
        if job.registry.enabled:
            rows = np.flatnonzero(exp.test.mask.all(axis=1))
            costs = fitted.router.model_costs_
            challenger = held_out_utility(fitted.result.choices, exp.test, rows, exp.lam, costs)
            promotion = register_and_promote(
                info.model_uri, job.name, challenger,
                lambda uri: _champion_value(uri, exp, exp.lam, rows, costs),
                alias=job.registry.alias, min_improvement=job.registry.min_improvement,
            )
            mlflow.set_tags({"registry.version": promotion.version, "registry.promoted": str(promotion.promoted),
                             "registry.reason": promotion.reason})
            echo(f"registered {job.name} v{promotion.version}: "
                 f"{'promoted to @' + job.registry.alias if promotion.promoted else 'not promoted'} "
                 f"({promotion.reason})")
        tracking.log_metrics({"job/seconds": time.perf_counter() - started})
    return JobResult(run_id=run.info.run_id, experiment=exp, model_uri=info.model_uri, export_path=export_path,
                     promotion=promotion, embedded=emb.embedded, reused=emb.reused)
