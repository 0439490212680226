"""MLflow set-up and logging helpers: the only module that writes to the tracking server.

Default: a SQLite database and an artifact folder in the working directory (no server needed);
``MLFLOW_TRACKING_URI`` (or the job config) points at a team server instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from pipelines.publish import owners


def configure(experiment: str, tracking_uri: str, artifact_root: str | Path | None) -> str:
    """Point mlflow at the tracking store and experiment; returns the experiment id.

    The experiment's artifact location is set explicitly when it is created: otherwise MLflow 3
    puts artifacts in the current working directory.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        exp_id = found.experiment_id
    else:
        location = None
        if artifact_root is not None:
            root = Path(artifact_root)
            root.mkdir(parents=True, exist_ok=True)
            location = root.resolve().as_uri()
        exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


STALE_AFTER_SECONDS = 24 * 3600  # a run of another host is only judged dead after a day


def owner_tags(job_name: str) -> dict[str, str]:
    """Tags naming the process that runs the job, so a later job can tell when it died."""
    return {"job": job_name, "job.host": owners.host(), "job.pid": str(os.getpid())}


def close_stale_runs(job_name: str) -> list[str]:
    """Mark FAILED the runs of ``job_name`` left RUNNING by a killed job (SIGKILL, OOM, lost node).

    A run is stale when its process is gone (same host: the pid is not alive) or, from another host
    or a run without owner tags, when it started more than ``STALE_AFTER_SECONDS`` ago. Its child
    runs are closed with it. Returns the ids of the parent runs closed.
    """
    import time

    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    running = mlflow.search_runs(filter_string="attributes.status = 'RUNNING'", output_format="list")
    now_ms = time.time() * 1000
    closed = []
    for run in running:
        tags = run.data.tags
        if tags.get("job") != job_name and not run.info.run_name.startswith(f"{job_name}-"):
            continue
        if "mlflow.parentRunId" in tags:
            continue  # children are closed with their parent
        pid = tags.get("job.pid", "")
        stale = now_ms - run.info.start_time > STALE_AFTER_SECONDS * 1000
        if not (owners.gone(tags.get("job.host", ""), pid) or stale):
            continue
        reason = f"the job's process {pid or '?'} on {tags.get('job.host', '?')} is gone (killed?)"
        for child in [r for r in running if r.data.tags.get("mlflow.parentRunId") == run.info.run_id] + [run]:
            client.set_tag(child.info.run_id, "stale", reason)
            client.set_terminated(child.info.run_id, status="FAILED")
        closed.append(run.info.run_id)
    return closed


_BAD = re.compile(r"[^0-9A-Za-z_\-. /]")


def metric_key(*parts: str) -> str:
    """An MLflow-legal metric key from free text (model names carry ':' and '|')."""
    return "/".join(_BAD.sub("_", str(p)) for p in parts if p != "")


def flatten(prefix: str, value, out: dict[str, float] | None = None) -> dict[str, float]:
    """Numeric leaves of a nested dict as ``prefix/a/b`` metrics (lists and strings skipped)."""
    out = {} if out is None else out
    if isinstance(value, bool):
        out[metric_key(prefix)] = float(value)
    elif isinstance(value, (int, float)):
        if value == value and abs(value) != float("inf"):  # MLflow rejects NaN on some stores
            out[metric_key(prefix)] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    return out


def log_metrics(metrics: dict[str, float]) -> None:
    import mlflow

    items = list(metrics.items())
    for lo in range(0, len(items), 500):  # batch limit of the REST API
        mlflow.log_metrics(dict(items[lo:lo + 500]))


def log_params(params: dict[str, object]) -> None:
    import mlflow

    # Params are strings of <= 6000 chars; long values (paths, lists) are shortened, not dropped.
    mlflow.log_params({metric_key(k): (str(v) if len(str(v)) <= 6000 else str(v)[:5997] + "...")
                       for k, v in params.items()})


def log_json(obj, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, default=str), artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    mlflow.log_text(text, artifact_file)


def log_file(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    mlflow.log_artifact(str(path), artifact_path)


def file_fingerprint(source: str) -> str:
    """sha256 over the input files' names and bytes: which data a run saw."""
    from router.data.read import resolve_paths

    h = hashlib.sha256()
    for path in resolve_paths(source):
        h.update(str(path.name).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def log_router_run(label: str, fitted, exp, plots_dir: Path) -> None:
    """One nested run per fitted router: its params, held-out metrics and routing-share plot."""
    import mlflow

    from router.evaluation.plots import plot_routing_share

    with mlflow.start_run(run_name=label, nested=True):
        log_params({"family": fitted.spec.family, "lam": fitted.lam,
                    **{f"param.{k}": v for k, v in fitted.router.get_params(deep=False).items()},
                    **{f"best.{k}": v for k, v in getattr(fitted.router, "best_params_", {}).items()}})
        if exp.selection is not None:
            log_metrics({"selection/oof_objective": exp.selection.oof[label]})
        metrics = {k: v for k, v in flatten("", fitted.result.to_dict()).items() if not k.startswith("curve/")}
        metrics.update(fit_seconds=fitted.fit_seconds, predict_seconds=fitted.predict_seconds,
                       job_seconds=fitted.seconds)
        log_metrics(metrics)
        png = plot_routing_share(fitted.result, exp.test.models, plots_dir / f"routing_share_{label}.png",
                                 title=f"{label}: routing share on held-out queries")
        log_file(png, "plots")


def provenance() -> dict[str, str]:
    """The package version and, when it runs from a git checkout, the source commit."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("learned-router")
    except PackageNotFoundError:
        package = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"package_version": package, "source_commit": commit}


def log_dataset(path: str, sha256: str) -> None:
    """The training logs as the run's MLflow dataset input (by reference and digest, not a copy)."""
    import warnings

    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # a local path matches two equivalent source types; MLflow warns
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(Path(path).resolve()))
    mlflow.log_input(MetaDataset(source=source, name=Path(path).name, digest=sha256[:16]), context="training")


def _job_params(job, exp) -> dict:
    """The job's choices, as the run's params."""
    return {"routers": [r.label for r in job.candidates()], "export_router": exp.exported, "lam": exp.lam,
            "objective": exp.goal.kind, "margin": job.margin, "registry.min_savings": job.registry.min_savings,
            "registry.cross_fit_folds": job.registry.cross_fit_folds, "selection.folds": job.selection.folds,
            "selection.max_queries": job.selection.max_queries, "registry.min_gain": job.registry.min_gain,
            "registry.confidence": job.registry.confidence, "budget": job.budget,
            "task_at_serving": job.task_at_serving, **exp.split.sizes()}


def _log_gate(g) -> None:
    """The gate's evidence as ``gate/*`` metrics (the saving's only under the savings objective)."""
    log_metrics({"gate/gain": g.gain, "gate/lower_bound": g.lower, "gate/passed": g.passed, "gate/queries": g.n})
    if g.saving is not None:
        log_metrics({"gate/saving": g.saving, "gate/saving_lower_bound": g.saving_lower,
                     "gate/saved_per_1k_queries": g.saved_per_query[0] * 1000})


def log_job_run(job, prep, exp, summary, plots_dir: Path, workers: int | None = None) -> str:
    """The job's parent run: params, data summary, evaluation report, plots and one child run per router
    (everything but the model); returns the model card's markdown."""
    import mlflow

    from router.evaluation.plots import plot_cost_quality

    exported = exp.exported
    mlflow.set_tags({"job": job.name, "exported_router": exported, "selected_router": exp.selected,
                     "split": exp.split.how, "decision": exp.decision, "verdict": exp.verdict,
                     "objective": exp.goal.kind, "operating_point": exp.fitted[exported].point.target})
    if exp.sparse is not None:  # which models a data scientist comparing runs should know were thin
        mlflow.set_tags({"models.sparse": ", ".join(exp.sparse.models) or "none",
                         "models.held_back": ", ".join(exp.sparse.held_back) or "none"})
    cluster = {}
    if job.cluster is not None:
        mlflow.set_tag("cluster.address", job.cluster.address)
        cluster = {"cluster.address": job.cluster.address, "cluster.partition_size": job.cluster.partition_size,
                   "cluster.workers": workers}
    sha = file_fingerprint(job.logs.path)
    source = provenance()
    mlflow.set_tags(source)
    log_dataset(job.logs.path, sha)
    log_params({"logs.path": job.logs.path, "logs.format": job.logs.format, "logs.sha256": sha, **source,
                "embedder.id": prep.embedder.id,
                **{f"embedder.{k}": v for k, v in prep.embedder.settings().items()},
                **_job_params(job, exp), **cluster})
    log_json(job.model_dump(mode="json"), "config/resolved_config.json")
    log_json(summary.to_dict(), "data/summary.json")
    log_text(summary.to_markdown(), "data/summary.md")
    emb = prep.embedding
    log_metrics({"data/queries": prep.data.n_queries, "data/models": prep.data.n_models,
                 "data/missing_cells": summary.missing_cells, "embed/embedded": emb.embedded,
                 "embed/reused": emb.reused, "embed/seconds": emb.seconds})
    report = exp.report.to_dict()
    log_json({**report, "shipped": exp.to_dict()}, "evaluation/report.json")
    log_text(exp.report.to_markdown(), "evaluation/report.md")
    for label, fitted in exp.fitted.items():
        log_router_run(label, fitted, exp, plots_dir)
    if exp.gate is not None:
        _log_gate(exp.gate)
    headline = report["routers"][exported]
    log_metrics(flatten("test", {k: headline.get(k) for k in ("quality", "cost", "gap_closed", "aiq")}))
    log_metrics(flatten("test", {"routing_share": headline["routing_share"], "per_task": headline["per_task"]}))
    if exp.report.baselines.has_cost:
        margin = exp.goal.margin if exp.goal.kind == "savings" else None
        log_file(plot_cost_quality(exp.report, plots_dir / "cost_quality.png", budget=job.budget,
                                   shipped=exported, margin=margin,
                                   title=f"{job.name} on {Path(job.logs.path).name}: cost vs quality, "
                                         f"{exp.report.baselines.n_eval} held-out queries"), "plots")
    from pipelines.publish.model_card import model_card

    card = model_card(job, prep, exp, sha, source)
    log_text(card, "model_card.md")
    return card
