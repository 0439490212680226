"""Model registry: a job's router is registered only when it beats the champion, and the alias moves to it.

``decide`` scores the champion first: a challenger that loses is never logged nor registered (a
nightly job would otherwise store a ~36 MB model per run that nothing serves). ``register`` then
registers the winner, writes its local copy, and moves the alias last, so a failed or killed job never
leaves the alias on a half-written model nor on a version the local champion folder lacks. The move
is a compare-and-set: the alias is re-read just before it moves,
and if another job moved it meanwhile, the decision is made again against the new champion, so
two racing jobs cannot leave the alias on the worse router. Scoring the current champion is part
of the decision: if that fails, the job fails and the alias stays where it is. The one exception
is a champion whose artifact declares a format this release cannot read (``ArtifactVersionError``):
it can never be scored again, so the challenger replaces it and the version's tag says why.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass

from router.serve.artifact import ArtifactVersionError

PENDING = "pending: the job has not decided (a job stopped here never promoted it)"


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    challenger_value: float
    version: str | None = None  # the registered version; None when the challenger lost (nothing registered)
    champion_version: str | None = None
    champion_value: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def current_champion(name: str, alias: str) -> str | None:
    """Version number the alias points at, or None when the model or the alias does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


ChampionScore = Callable[[str], "float | None"]


def decide(name: str, alias: str, challenger_value: float, champion_value: ChampionScore, *,
           min_improvement: float) -> Promotion:
    """Does the challenger beat the version ``alias`` points at? Nothing is registered or moved.

    ``champion_value(uri)`` scores the current champion on this job's held-out split (same metric
    as ``challenger_value``); it returns None when the champion cannot be compared on these logs
    (it routes to models they do not have, and the job allows a model change), which lets the challenger in.
    Any exception it raises
    other than ``ArtifactVersionError`` propagates: the job fails and nothing moves.
    """
    previous = current_champion(name, alias)
    promoted, reason, value = _decide(name, previous, challenger_value, champion_value, min_improvement)
    return Promotion(promoted=promoted, reason=reason, challenger_value=challenger_value,
                     champion_version=previous, champion_value=value)


def register(model_uri: str, name: str, decision: Promotion, champion_value: ChampionScore, *, alias: str,
             min_improvement: float, stage: Callable[[str], object] | None = None) -> Promotion:
    """Register ``model_uri`` (a challenger ``decide`` promoted) and move ``alias`` to it, as a compare-and-set.

    Another job may have moved the alias since ``decide`` read it: it is re-read just before it
    moves, and the decision made again against whatever it points at now. The version's
    ``promotion`` tag says why it was (or, after a lost race, was not) promoted; until then it says the
    job has not decided (``PENDING``: a job killed meanwhile leaves a version that never served).
    ``stage(version)`` runs before the alias moves (the job writes the local copy there): if it fails,
    the alias stays where it was, the tag says why, and the error names both versions.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    with contextlib.redirect_stderr(io.StringIO()):  # MLflow prints its own two lines; the job's [register] says it
        version = str(mlflow.register_model(model_uri, name, tags={"promotion": PENDING}).version)
    previous, promoted, reason, value = (decision.champion_version, decision.promoted, decision.reason,
                                         decision.champion_value)
    for _ in range(_MAX_RACES):
        now = current_champion(name, alias)
        if now == previous:
            break
        previous = now
        promoted, reason, value = _decide(name, previous, decision.challenger_value, champion_value, min_improvement)
    else:
        client.set_model_version_tag(name, version, "promotion", "not promoted: the alias kept moving")
        raise RuntimeError(f"the alias {alias!r} of {name} kept moving while this job decided; not promoted")
    if promoted and stage is not None:
        try:
            stage(version)
        except Exception as exc:
            client.set_model_version_tag(name, version, "promotion", f"not promoted: its local copy could not be "
                                                                     f"written ({type(exc).__name__}: {exc})")
            kept = f"@{alias} still names v{previous}" if previous else f"{name} has no @{alias} yet"
            raise RuntimeError(f"registered {name} v{version} but did not promote it: its local copy could not be "
                               f"written ({exc}); {kept}, and the local champion is unchanged") from exc
        now = current_champion(name, alias)  # staging downloads the model: another job may have moved it
        if now != previous:
            previous = now
            promoted, reason, value = _decide(name, previous, decision.challenger_value, champion_value,
                                              min_improvement)
    if promoted:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", reason)
    return Promotion(promoted=promoted, reason=reason, challenger_value=decision.challenger_value, version=version,
                     champion_version=previous, champion_value=value)


def restore_alias(name: str, alias: str, promotion: Promotion, why: Exception) -> RuntimeError:
    """Move ``alias`` back to the champion ``promotion`` replaced (the local link could not follow it); the
    error to raise says which state was left."""
    from mlflow import MlflowClient

    client = MlflowClient()
    if promotion.champion_version:
        client.set_registered_model_alias(name, alias, promotion.champion_version)
    else:
        client.delete_registered_model_alias(name, alias)
    client.set_model_version_tag(name, promotion.version, "promotion", f"not promoted: the local champion link "
                                                                       f"could not follow it ({why})")
    back = f"moved back to v{promotion.champion_version}" if promotion.champion_version else "removed"
    return RuntimeError(f"{name} v{promotion.version} was promoted but the local champion link could not follow it "
                        f"({why}); @{alias} was {back}, so the registry and the local folder agree")

_MAX_RACES = 5  # re-decisions when other jobs move the alias meanwhile


def _decide(name: str, previous: str | None, challenger_value: float, champion_value: ChampionScore,
            min_improvement: float):
    """(promoted, reason, champion's value) of the challenger against champion version ``previous``."""
    if previous is None:
        return True, "no champion yet", None
    try:
        prev_value = champion_value(f"models:/{name}/{previous}")
    except ArtifactVersionError as exc:
        return True, f"champion v{previous} has an incompatible artifact format ({exc})", None
    if prev_value is None:
        return True, f"champion v{previous} cannot be evaluated on these logs", None
    if challenger_value > prev_value + min_improvement:
        return True, f"beats champion v{previous}: {challenger_value:.4f} > {prev_value:.4f}", prev_value
    return False, f"champion v{previous} kept: {prev_value:.4f} >= challenger {challenger_value:.4f}", prev_value


def prune_versions(name: str, alias: str, keep: int) -> list[str]:
    """Delete every version of ``name`` but the one ``alias`` points at and the newest ``keep`` others:
    their model artifacts (a nightly job adds ~36 MB a run) and their registry entries, so nothing
    can load a version whose files are gone. Runs, metrics and reports stay. Returns the versions deleted."""
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MlflowClient()
    champion = current_champion(name, alias)
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: -int(v.version))
    others = [v for v in versions if str(v.version) != champion]
    kept = [v for v in versions if v not in others[keep:]]

    def model_id(v) -> str | None:
        return v.source.removeprefix("models:/") if str(v.source).startswith("models:/m-") else None

    in_use = {model_id(v) for v in kept}  # two versions may register the same logged model
    deleted = []
    for v in others[keep:]:
        client.delete_model_version(name, v.version)  # first: no service resolves it while files go
        if model_id(v) and model_id(v) not in in_use:
            get_artifact_repository(client.get_logged_model(model_id(v)).artifact_location).delete_artifacts()
            client.delete_logged_model(model_id(v))
            in_use.add(model_id(v))  # deleted once
        deleted.append(str(v.version))
    return deleted
