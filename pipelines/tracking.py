"""MLflow set-up and logging helpers: the only module that writes to the tracking server.

Default: a SQLite database and an artifact folder in the working directory (no server needed);
``MLFLOW_TRACKING_URI`` (or the job config) points at a team server instead.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path



def configure(experiment: str, tracking_uri: str, artifact_root: str | Path | None) -> str:
    """Point mlflow at the tracking store and experiment; returns the experiment id.

    The experiment's artifact location is set explicitly when it is created: otherwise MLflow 3
    puts artifacts in the current working directory.
    """
    import mlflow

    # Per-file download bars flood cron mail and CI logs; the job prints its own progress.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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
