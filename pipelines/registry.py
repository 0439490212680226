"""Model registry: register each job's router and move the ``champion`` alias only on a win.

The alias moves last, after the new version is fully registered, so a failed or killed job
never leaves the alias on a half-written model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

CHAMPION = "champion"


@dataclass(frozen=True)
class Promotion:
    version: str
    promoted: bool
    reason: str
    challenger_value: float
    champion_version: str | None = None
    champion_value: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def current_champion(name: str, alias: str = CHAMPION) -> str | None:
    """Version number the alias points at, or None."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def register_and_promote(
    model_uri: str,
    name: str,
    challenger_value: float,
    champion_value: Callable[[str], float | None],
    *,
    alias: str = CHAMPION,
    min_improvement: float = 0.0,
) -> Promotion:
    """Register ``model_uri`` under ``name``; point ``alias`` at it if it beats the champion.

    ``champion_value(uri)`` scores the current champion on this job's held-out split (same
    metric as ``challenger_value``); it returns None when the champion cannot be compared (for
    instance it routes to models these logs do not have), which lets the challenger in.
    """
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version = str(mlflow.register_model(model_uri, name).version)
    previous = current_champion(name, alias)
    if previous is None:
        promoted, reason, prev_value = True, "no champion yet", None
    else:
        try:
            prev_value, why = champion_value(f"models:/{name}/{previous}"), "cannot be evaluated on these logs"
        except Exception as exc:  # noqa: BLE001 - e.g. a champion pickled by an older, incompatible release
            prev_value, why = None, f"could not be loaded or scored by this release ({type(exc).__name__}: {exc})"
        if prev_value is None:
            promoted, reason = True, f"champion v{previous} {why}"
        elif challenger_value > prev_value + min_improvement:
            promoted = True
            reason = f"beats champion v{previous}: {challenger_value:.4f} > {prev_value:.4f}"
        else:
            promoted = False
            reason = f"champion v{previous} kept: {prev_value:.4f} >= challenger {challenger_value:.4f}"
    if promoted:
        client.set_registered_model_alias(name, alias, version)
    client.set_model_version_tag(name, version, "promotion", reason)
    return Promotion(version=version, promoted=promoted, reason=reason, challenger_value=challenger_value,
                     champion_version=previous, champion_value=prev_value)
