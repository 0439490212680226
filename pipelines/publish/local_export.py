"""The local export folder ``<export_dir>/<name>/``: one folder per exported version, a ``champion`` link.

Layout (each version folder is an MLflow model folder that ``router.load`` reads)::

    models/nq-sample-router/
        .learned-router     marker: this folder is the job's, so it may prune inside it
        v3/  v4/            registered versions (registry off: one folder per run, <run name>-<run id>)
        champion -> v4      symlink: moves only with the registry alias, swapped atomically

A version folder is downloaded into a staging folder beside it and renamed into place, and the
``champion`` link is replaced by renaming a new link over it, so a reader sees the old router or
the new one, never a half-written folder. Staging left by a killed job is removed by the next one.
Nothing in ``<export_dir>/<name>`` is deleted unless its marker says the job made it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from pipelines.publish import owners

log = logging.getLogger(__name__)

MARKER = ".learned-router"
CHAMPION = "champion"
_STAGING = ".staging-"
_STALE_SECONDS = 24 * 3600  # staging of another host is only removed once surely abandoned
_VERSION = re.compile(r"^(v\d+|.+-\d{8}T\d{6}Z-[0-9a-f]{8})$")  # v<N>, or <job>-<UTC time>-<run id>


def open_root(export_dir: str | Path, name: str) -> Path:
    """``<export_dir>/<name>``, made (with its marker) if new; raises if it is a folder the job did not make.

    An export written by an older release (an MLflow model folder directly at this path) is moved
    aside to ``<export_dir>/.<name>.old-layout`` with a warning, never deleted. Stale staging is cleaned.
    """
    root = Path(export_dir) / name
    if (root / "MLmodel").is_file() and not (root / MARKER).is_file():
        aside = root.with_name(f".{name}.old-layout")
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(root, aside)
        log.warning("moved the export of an older release from %s to %s (delete it once no service reads it)",
                    root, aside)
    if root.exists() and not (root / MARKER).is_file() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"export folder {root} exists and was not made by this job; move it, or choose "
                         "another name or export_dir")
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if not marker.is_file():
        _write_atomic(marker, json.dumps({"name": name, "layout": 1}) + "\n")
    _clean_staging(root)
    return root


def write_version(root: Path, label: str, model_uri: str) -> Path:
    """``root/label``: the logged model ``model_uri`` downloaded and renamed into place (kept if already there)."""
    import mlflow

    target = root / label
    if (target / "MLmodel").is_file():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{_STAGING}{owners.host()}-{os.getpid()}-", dir=root))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging)))
        # mkdtemp made it private (0700): give it the folder's own mode, so a service running as
        # another user can read it as it could read the folder.
        os.chmod(local, root.stat().st_mode & 0o777)
        os.replace(local, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def point_champion(root: Path, label: str) -> Path:
    """Make ``root/champion`` a link to ``root/label``, atomically (a new link renamed over the old one)."""
    if not (root / label / "MLmodel").is_file():
        raise ValueError(f"{root / label} is not an exported router: the champion link was not moved")
    link = root / CHAMPION
    if link.is_symlink() and os.readlink(link) == label:
        return link
    tmp = root / f"{_STAGING}{owners.host()}-{os.getpid()}-link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(label, target_is_directory=True)
    os.replace(tmp, link)
    return link


def champion_label(root: Path) -> str | None:
    link = root / CHAMPION
    return os.readlink(link) if link.is_symlink() else None


def versions(root: Path) -> list[str]:
    """Version folders in ``root``, oldest first (by modification time)."""
    found = [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and _VERSION.match(p.name)
             and (p / "MLmodel").is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]


def prune(root: Path, keep: set[str]) -> list[str]:
    """Delete the version folders not in ``keep`` (never the champion's); returns their names."""
    keep = keep | {champion_label(root)}
    gone = [v for v in versions(root) if v not in keep]
    for label in gone:
        # Renamed first: a reader never finds a half-deleted folder under a version's name.
        trash = root / f"{_STAGING}{owners.host()}-{os.getpid()}-{label}"
        os.replace(root / label, trash)
        shutil.rmtree(trash, ignore_errors=True)
    return gone


def _clean_staging(root: Path) -> None:
    """Remove staging left by killed jobs: this host's whose process is gone, any host's after a day."""
    host = owners.host()
    for path in root.glob(f"{_STAGING}*"):
        owner = path.name[len(_STAGING):]
        pid = owner[len(host) + 1:].split("-", 1)[0] if owner.startswith(f"{host}-") else ""
        try:
            age = time.time() - path.lstat().st_mtime
        except FileNotFoundError:
            continue
        if owners.gone(host, pid) or age > _STALE_SECONDS:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            log.info("removed %s, left by a job that was killed", path)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def mirror_champion(root: Path, name: str, alias: str, keep: int | None) -> Path | None:
    """Point ``root/champion`` at the version the registry alias names now (downloading it if this
    folder lacks it), then keep only it and the newest ``keep`` other version folders whose
    versions are still registered.

    Called by every job, promoted or not: a job killed between moving the alias and the link, or a
    fresh ``export_dir``, is brought back in line with the registry. Returns the champion's folder.
    """
    from mlflow import MlflowClient

    from pipelines.publish.registry import current_champion

    version = current_champion(name, alias)
    if version is None:
        return None
    label = f"v{version}"
    folder = write_version(root, label, f"models:/{name}/{version}")
    point_champion(root, label)
    registered = {f"v{v.version}" for v in MlflowClient().search_model_versions(f"name='{name}'")}
    others = [v for v in versions(root) if v != label and v in registered]
    if keep is not None:
        others = others[len(others) - keep:] if keep else []
    prune(root, set(others))
    return folder
