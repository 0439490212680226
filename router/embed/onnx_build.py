"""Build the ONNX file of a sentence-transformers model, offline, once per machine (``onnx.onnx_file`` calls it).

The ONNX file is built on first use, without network, from the local weights: ``torch.onnx.export``
(TorchScript exporter, eager attention so onnxruntime's BERT fusions apply), onnxruntime's
transformer optimizer (fused attention / GELU / LayerNorm; same fp32 results), and for int8
``quantize_dynamic`` with per-channel weights on MatMul and Attention only (per-tensor weights lose
too much: cosine to fp32 down to 0.74 on MMLU-Pro), then the word-embedding table (the largest float
initializer feeding a Gather / EmbedLayerNormalization: for MiniLM 30522 x 384, 47 of the 58 MB)
stored as fp16 with a ``Cast`` back to fp32 at the start of the graph (``fp16_embedding_table``).
onnxruntime folds that constant Cast when it creates the session, so encoding speed is unchanged;
the int8 file drops to ~35 MB (it ships inside exported routers). The recipe's vectors are measured
against torch fp32 by ``benchmarks/bench_embed_speed.py``. Building takes ~5-20 s and is written
atomically to ``onnx_cache_dir()/<key>/``, keyed by a hash of the weights' content and
``RECIPE_VERSION``; later loads take well under a second and need neither torch nor transformers.

Building changes no process-wide state: no environment variables (the weights are read with
``local_files_only=True``) and no logger levels (onnxruntime's quantisation chatter is filtered
out only while ``quantize_dynamic`` runs). One thing outside this module's control: torch sets
``TORCHINDUCTOR_CACHE_DIR`` when ``torch._dynamo`` is first imported (transformers imports it to
load the model), as any torch user's process would see.

Recipe versions: 1 = fused fp32 / int8 MatMul+Attention; 2 = 1 + fp16 word-embedding table in int8.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from router.embed.onnx import RECIPE_VERSION, ModelSpec, _INPUTS

log = logging.getLogger(__name__)

# How many ONNX files this process has built (tests use it to check the on-disk cache is reused).
build_count = 0


def build(model_dir: Path, label: str, folder: Path, *, quantize: bool) -> None:
    """Export (and quantise) into ``folder``; every file appears by an atomic rename, never torn."""
    global build_count
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    fp32 = folder / "model.onnx"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        tmp = Path(tmp)
        if not fp32.is_file():
            export_onnx(model_dir, tmp / "model.onnx")
            os.replace(tmp / "model.onnx", fp32)
        if quantize:
            quantize_onnx(fp32, tmp / "quantized.onnx")
            fp16_embedding_table(tmp / "quantized.onnx", tmp / "model-int8.onnx")
            os.replace(tmp / "model-int8.onnx", folder / "model-int8.onnx")
    (folder / "source.txt").write_text(f"{label}\nrecipe={RECIPE_VERSION}\n")
    build_count += 1
    log.info("built ONNX %s for %s in %.1fs", "int8" if quantize else "fp32", label, time.perf_counter() - start)


def export_onnx(model_dir: Path, out: Path) -> None:
    """fp32 ONNX of the transformer (token vectors out), fused by onnxruntime's BERT optimizer."""
    import torch
    from transformers import AutoModel

    spec = ModelSpec(model_dir)
    # Eager attention exports to the MatMul/Softmax pattern onnxruntime fuses into one Attention op.
    # local_files_only: model_dir is a local directory (resolve_model_dir); never ask a hub.
    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()

    class KeywordInputs(torch.nn.Module):
        """transformers 5 changed the positional order of forward(); pass everything by name."""

        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded row, so nothing shape- or mask-specific is traced as a constant
    raw = out.with_name(out.stem + "-raw.onnx")
    # The tracer warns that Python-side shape checks become constants: for encoder-only inputs they are
    # (padding length is always 0); the tests compare against torch on prompts of many lengths.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            KeywordInputs(model), (ids, mask, torch.zeros_like(ids)), str(raw), dynamo=False, opset_version=17,
            input_names=list(_INPUTS), output_names=["token_embeddings"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*_INPUTS, "token_embeddings")},
        )
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        fused = optimize_model(str(raw), model_type="bert", num_heads=spec.num_heads, hidden_size=spec.hidden_size,
                               opt_level=1)
        fused.save_model_to_file(str(out))
        raw.unlink()
    except Exception as exc:  # noqa: BLE001 - fusion is an optimisation; the unfused graph is correct
        log.warning("onnxruntime BERT fusion failed (%s); using the unfused graph", exc)
        os.replace(raw, out)


def quantize_onnx(fp32: Path, out: Path) -> None:
    """int8 weights per output channel for MatMul and the fused Attention's QKV projection.

    Activations are quantised dynamically, per call. The embeddings, LayerNorms and GELU stay fp32
    (``fp16_embedding_table`` then halves the word-embedding table's storage).
    """
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    # quantize_dynamic logs on the root logger (``logging.warning(...)``) that the model was not
    # pre-processed: drop onnxruntime's quantisation records only, only during the call.
    root = logging.getLogger()
    quiet = _QuantizationChatter()
    # A module-level logging.warning() on a root logger without handlers runs logging.basicConfig(),
    # i.e. installs a stderr handler for the whole process: keep that from happening here.
    placeholder = logging.NullHandler() if not root.handlers else None
    root.addFilter(quiet)
    if placeholder is not None:
        root.addHandler(placeholder)
    try:
        quantize_dynamic(str(fp32), str(out), per_channel=True, op_types_to_quantize=["MatMul", "Attention"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(quiet)
        if placeholder is not None:
            root.removeHandler(placeholder)


class _QuantizationChatter(logging.Filter):
    """Drops records emitted from onnxruntime's ``quantization`` package; passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime/quantization/" not in record.pathname.replace("\\", "/")


def fp16_embedding_table(model_in: Path, out: Path) -> str | None:
    """Store the word-embedding table as fp16 behind a ``Cast`` to fp32; returns the table's name.

    The table is found by structure, not by name: the largest float initializer read as the data of a
    ``Gather`` or as a table of a fused ``com.microsoft.EmbedLayerNormalization``. It becomes
    ``<name>_fp16`` and a ``Cast(to=FLOAT)`` inserted first in the graph produces ``<name>`` again, so
    every consumer is untouched. onnxruntime folds the constant Cast at session creation (no cost per
    call); the values are rounded to fp16 (relative error <= 2**-11). A model without such a table, or
    one whose values do not fit fp16, is written unchanged (and ``None`` returned).
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_in))
    graph = model.graph
    tables = _embedding_table_inputs(graph)
    graph_inputs = {i.name for i in graph.input}
    candidates = [init for init in graph.initializer
                  if init.name in tables and init.data_type == onnx.TensorProto.FLOAT and init.name not in graph_inputs]
    table = max(candidates, key=lambda init: int(np.prod(init.dims)), default=None)
    name = None
    if table is not None:
        values = numpy_helper.to_array(table)
        if np.abs(values).max(initial=0.0) < np.finfo(np.float16).max:
            name = table.name
            half = numpy_helper.from_array(values.astype(np.float16), f"{name}_fp16")
            cast = helper.make_node("Cast", [half.name], [name], name=f"{name}_fp16_cast", to=onnx.TensorProto.FLOAT)
            graph.initializer.remove(table)
            graph.initializer.append(half)
            graph.node.insert(0, cast)
        else:
            log.warning("embedding table %s exceeds the fp16 range; kept as fp32", table.name)
    onnx.save(model, str(out))
    return name


# Node inputs that are lookup tables: (domain, op_type) -> input positions.
_TABLE_INPUTS = {("", "Gather"): (0,), ("com.microsoft", "EmbedLayerNormalization"): (2, 3, 4)}


def _embedding_table_inputs(graph) -> set[str]:
    names = set()
    for node in graph.node:
        domain = "" if node.domain in ("", "ai.onnx") else node.domain
        for position in _TABLE_INPUTS.get((domain, node.op_type), ()):
            if position < len(node.input) and node.input[position]:
                names.add(node.input[position])
    return names
