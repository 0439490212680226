"""``router.load``: an exported router from a local folder or an MLflow URI, read as data.

Nothing in the artifact is executed or unpickled: the head is read by ``router.serve.artifact``
and the metadata as JSON; the model's ``pyfunc_model.py`` is never imported. ``models:/...`` and
``runs:/...`` URIs are downloaded with MLflow (the ``mlflow`` extra) to a temporary folder that lives
as long as the returned service (the embedder may open its files again later). A folder needs only the
base install: numpy, onnxruntime, tokenizers (and lightgbm for heads with boosters).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from router.serve.artifact import ArtifactError
from router.serve.service import RouterService

_HEAD = Path("artifacts") / "head"
_EMBEDDER = Path("artifacts") / "embedder"


def load_folder(folder: str | Path, threads: int | None = None) -> RouterService:
    """The router exported to ``folder`` (an MLflow model folder written by ``pipelines.publish.export``).

    A link (``models/<name>/champion``) is resolved once, first: if the job moves it during the
    load, every file still comes from the version it pointed at when the load began.
    """
    folder = Path(folder).resolve()
    if not (folder / _HEAD).is_dir() or not (folder / _EMBEDDER).is_dir():
        raise ArtifactError(f"{folder}: not an exported learned-router model (expected {_HEAD}/ and {_EMBEDDER}/)")
    return RouterService.from_dir(folder / _HEAD, folder / _EMBEDDER, threads=threads)


def load(uri: str | Path, *, threads: int | None = None) -> RouterService:
    """Load an exported router: ``load("models:/<name>@champion")``, a ``runs:/`` URI or a local folder.

    The returned service has ``route(prompts, lam=, budget=, share=, margin=, tasks=) -> list[str]`` and
    ``scores(prompts) -> (n, n_models)``, and may be shared between threads. ``threads``: CPU threads
    one embedding may use (default: every core). One prompt's embedding already keeps 2 cores busy;
    a service answering many requests at once gets more throughput from ``threads=1``.
    """
    text = str(uri)
    if Path(text).exists() or "://" not in text and ":/" not in text:
        if not Path(text).exists():
            raise FileNotFoundError(f"no exported router at {text!r} (a folder, or a models:/ or runs:/ URI)")
        return load_folder(text, threads)
    try:
        import mlflow
    except ImportError as exc:
        raise RuntimeError(f"loading {text!r} needs MLflow (pip install 'learned-router[mlflow]'); or pass an "
                           f"exported folder, which needs only the base install") from exc
    store = existing_store(text, mlflow.get_tracking_uri()) if text.startswith(("models:/", "runs:/")) else text
    tmp = tempfile.mkdtemp(prefix="router-load-")
    try:
        service = load_folder(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp), threads)
    except mlflow.exceptions.MlflowException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(f"{text!r} is not in the MLflow store {store}: {exc.message} (set "
                                f"MLFLOW_TRACKING_URI to the store the job wrote, or load its models/<name>/champion "
                                f"folder)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(service, shutil.rmtree, tmp, True)
    return service


def existing_store(uri: str, store: str) -> str:
    """``store`` (the tracking URI MLflow would use), refused when it is an SQLite file that does not exist:
    opening it would create an empty database beside the caller and then say the model is not found."""
    if store.startswith("sqlite:///"):
        path = Path(store.removeprefix("sqlite:///"))
        if not path.is_file():
            raise FileNotFoundError(
                f"cannot load {uri!r}: no MLflow store at {path} (MLflow's default, the job's too: "
                f"sqlite:///mlflow.db in the folder it ran in). Run from that folder, set MLFLOW_TRACKING_URI to "
                f"the job's store, or load the job's models/<name>/champion folder")
    return store
