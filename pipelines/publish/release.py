"""The job's release steps: compare with the champion, then log, export and register the router only if it
wins (a loser is never logged: see ``pipelines.publish.registry``), and keep the local folders in step."""

from __future__ import annotations

from pathlib import Path


from pipelines.config import JobConfig
from pipelines.result import Experiment
from pipelines.prepare import Prepared
from pipelines.publish.champion import champion_value
from pipelines.publish.local_export import mirror_champion, point_champion, prune, versions, write_version
from pipelines.publish.registry import Promotion, decide, prune_versions, register, restore_alias
from pipelines.steps import Steps


def release(job: JobConfig, prep: Prepared, exp: Experiment, card: str, run_label: str, root: Path,
            steps: Steps) -> tuple[Promotion | None, str | None, Path | None]:
    """Compare with the champion, then log, register and export the router only if it wins.

    Returns (promotion, logged model URI, local version folder); the last two are None when the
    champion was kept (a loser is never logged: see ``pipelines.publish.registry``).
    """
    import mlflow
    from mlflow import MlflowClient

    from pipelines.publish.export import log_router, router_meta  # pandas and MLflow's model code: only here

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
        info["detail"] = f"{exp.exported} router logged to this run's MLflow model"
    if not job.registry.enabled:
        folder = write_version(root, run_label, model_info.model_uri)
        point_champion(root, run_label)
        keep = job.registry.keep_versions
        prune(root, set(versions(root)[-keep - 1:]) if keep is not None else set(versions(root)))
        return None, model_info.model_uri, folder
    with steps.step("register") as info:
        promotion = register(model_info.model_uri, job.name, promotion, _scorer(job, prep, exp),
                             alias=job.registry.alias, min_improvement=job.registry.min_improvement,
                             stage=lambda version: write_version(root, f"v{version}", model_info.model_uri))
        _tag(promotion)
        MlflowClient().update_model_version(job.name, promotion.version,
                                            description=f"{card}\n## Registry\n- {promotion.reason}\n")
        try:  # the local link follows the alias first: until it does, the alias can move back
            mirror_champion(root, job.name, job.registry.alias, job.registry.keep_versions)
        except Exception as exc:
            if promotion.promoted:
                error = restore_alias(job.name, job.registry.alias, promotion, exc)
                if promotion.champion_version and (root / f"v{promotion.champion_version}").is_dir():
                    point_champion(root, f"v{promotion.champion_version}")  # the link follows the alias back
                raise error from exc
            raise
        if job.registry.keep_versions is not None:  # only now: the champion it replaced is no longer needed
            deleted = prune_versions(job.name, job.registry.alias, job.registry.keep_versions)
            if deleted:
                mlflow.set_tag("registry.pruned_versions", ",".join(deleted))
                mirror_champion(root, job.name, job.registry.alias, job.registry.keep_versions)  # their folders too
        info["detail"] = f"{job.name} v{promotion.version}: {promotion.reason}"
    folder = root / f"v{promotion.version}"
    return promotion, model_info.model_uri, folder if folder.is_dir() else None


def _challenger_value(exp: Experiment) -> float:
    return exp.value(exp.exported)


def _scorer(job: JobConfig, prep: Prepared, exp: Experiment):
    return lambda uri: champion_value(uri, job, exp, prep.X, prep.embedder.id)


def _tag(promotion: Promotion) -> None:
    import mlflow

    mlflow.set_tags({"registry.version": promotion.version or "", "registry.promoted": str(promotion.promoted),
                     "registry.reason": promotion.reason})
