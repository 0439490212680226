"""Export: the fitted head (safe format) + the embedder files serving needs + metadata, as an MLflow pyfunc.

``log_router`` logs a models-from-code pyfunc (``router/serve/pyfunc_model.py``) whose artifacts are
data only: ``head/`` (``router.serve.artifact``: arrays + JSON + LightGBM text, no pickle, and
``router_meta.json``) and ``embedder/`` (the ONNX file and tokenizer files, or the weights for the
torch backend), so a service needs no hub and no training data. ``pipelines.publish.local_export`` copies
logged models to the local export folder. Services load either with ``router.load`` (``router.serve.load``).
"""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import pandas as pd

import router.serve
from pipelines.result import Experiment
from pipelines.prepare import Prepared
from router.embed import Embedder
from router.serve.artifact import save_head
from router.serve.service import META_FILE, RouterMeta

PYFUNC_FILE = Path(router.serve.__file__).with_name("pyfunc_model.py")
INPUT_EXAMPLE = ["what is the capital of australia?", "Prove that the square root of 2 is irrational."]
# Weight files an ONNX backend never reads (it runs the ONNX file): left out of the export.
_NOT_FOR_ONNX = ("*.safetensors", "*.bin", "*.pt", "*.h5", "*.msgpack", "onnx", "openvino", ".git*", "README.md")


def embedder_weights_dir(embedder: Embedder) -> Path:
    """Local folder of the embedder's weights."""
    if embedder.is_default or Path(embedder.model).is_dir():
        return Path(embedder.model_path)
    from huggingface_hub import snapshot_download

    # A hub name: only its local cache copy can be exported (no network here or in CI).
    return Path(snapshot_download(embedder.model, local_files_only=True))


def embedder_artifact(embedder: Embedder, staging: Path) -> Path:
    """The folder exported as the ``embedder`` artifact: what serving reads, nothing more.

    ONNX backends: the tokenizer and config files, plus the ONNX file in ``onnx/`` where
    ``router.embed.onnx.onnx_file`` finds it (no weights: the ONNX file holds them). torch: the weights.
    """
    from router.embed.onnx import bundled_name

    weights = embedder_weights_dir(embedder)
    if embedder.backend == "torch":
        return weights
    target = staging / "embedder"
    shutil.copytree(weights, target, ignore=shutil.ignore_patterns(*_NOT_FOR_ONNX))
    (target / "onnx").mkdir()
    shutil.copy2(embedder.load().path, target / "onnx" / bundled_name(embedder.backend))
    return target


def router_meta(prep: Prepared, exp: Experiment) -> RouterMeta:
    """What the exported router needs beside its head and embedder files (its models: those the job routed
    to, without any it held back)."""
    fitted = exp.fitted[exp.exported]
    return RouterMeta(
        models=list(exp.train.models), model_costs=[float(c) for c in fitted.router.model_costs_],
        embedder=prep.embedder.settings(), router=fitted.spec.family, calibration=fitted.calibration,
        embedder_id=prep.embedder.id,
    )


def write_head(folder: Path, head, meta: RouterMeta) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_head(head, folder)
    (folder / META_FILE).write_text(meta.to_json())
    return folder


def pip_requirements(backend: str, head_dir: Path) -> list[str]:
    """What serving the logged pyfunc needs, pinned to this environment's versions; not the training
    stack. Explicit: inferring them is slow and misses packages (STACK.md)."""
    names = ["mlflow", "pandas", "numpy"]  # the pyfunc flavour: MLflow loads it, a DataFrame carries its input
    names += ["torch", "sentence-transformers"] if backend == "torch" else ["onnxruntime", "tokenizers"]
    if any(head_dir.rglob("booster-*.txt")):  # a head with LightGBM boosters
        names.append("lightgbm")
    reqs = []
    for name in names:
        try:
            reqs.append(f"{name}=={version(name)}")
        except Exception:  # noqa: BLE001 - an optional package not installed is simply not pinned
            continue
    return reqs


def log_router(head, embedder: Embedder, meta: RouterMeta, *, name: str = "router"):
    """Log the router as a pyfunc model in the active MLflow run; returns mlflow's ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    example = pd.DataFrame({"prompt": INPUT_EXAMPLE})
    example_out = pd.DataFrame({"model": [meta.models[0]] * len(INPUT_EXAMPLE)})
    params = {"lam": float(meta.default_lam), "budget": 0.0, "margin": -1.0, "share_model": "", "share": 0.0,
              "return_scores": False}
    signature = infer_signature(example, example_out, params=params)
    # An optional "task" column: a service that knows each prompt's task tag may send it (a task head
    # routes by it; other heads ignore it).
    signature.inputs = Schema([*signature.inputs.inputs, ColSpec("string", "task", required=False)])
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        head_dir = write_head(staging / "head", head, meta)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(PYFUNC_FILE),
            artifacts={"head": str(head_dir), "embedder": str(embedder_artifact(embedder, staging))},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(embedder.backend, head_dir),
        )
