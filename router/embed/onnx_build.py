"""Build the ONNX file of a sentence-transformers model, offline, once per machine (``onnx.onnx_file`` calls it).

The ONNX file is built on first use, without network, from the local weights: ``torch.onnx.export``
(TorchScript exporter, eager attention so onnxruntime's BERT fusions apply), onnxruntime's
transformer optimizer (fused attention / GELU / LayerNorm; same fp32 results), and for int8
``quantize_dynamic`` with per-channel weights on MatMul and Attention (per-tensor weights lose
too much: cosine to fp32 down to 0.74 on MMLU-Pro) and int8 embedding tables: the fused
``EmbedLayerNormalization`` becomes ``QEmbedLayerNormalization``, which reads its int8 tables as they
are (an unfused graph's ``Gather`` tables are dequantised once, at session creation). The word
embeddings (30522 x 384 for MiniLM) were 47 of recipe 1's 58 MB and, as fp16 in recipe 2, still
47 MB of a serving process's memory once onnxruntime folded them back to fp32: recipe 3's file is
~23 MB and its session ~33 MB (recipe 2: 35 MB, 67 MB). The recipe's vectors are measured against
torch fp32 by ``benchmarks/bench_embed_speed.py``. Building takes ~5-20 s and is written
atomically to ``onnx_cache_dir()/<key>/``, keyed by a hash of the weights' content and
``RECIPE_VERSION``; later loads take well under a second and need neither torch nor transformers.

Building changes no process-wide state: no environment variables (the weights are read with
``local_files_only=True``) and no logger levels (onnxruntime's quantisation chatter is filtered
out only while ``quantize_dynamic`` runs). One thing outside this module's control: torch sets
``TORCHINDUCTOR_CACHE_DIR`` when ``torch._dynamo`` is first imported (transformers imports it to
load the model), as any torch user's process would see.

Recipe versions: 1 = fused fp32 / int8 MatMul+Attention; 2 = 1 + fp16 word-embedding table in int8;
3 = 1 + int8 embedding tables (QEmbedLayerNormalization).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

from router.embed.model_spec import INPUTS, RECIPE_VERSION, ModelSpec

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Attention", "EmbedLayerNormalization", "Gather")

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
            quantize_onnx(fp32, tmp / "model-int8.onnx")
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
            input_names=list(INPUTS), output_names=["token_embeddings"],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "token_embeddings")},
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
    """int8 weights per output channel for MatMul and the fused Attention's QKV projection, and int8
    embedding tables (fused ``EmbedLayerNormalization``, or ``Gather`` in an unfused graph).

    Activations are quantised dynamically, per call. LayerNorms and GELU stay fp32.
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
        quantize_dynamic(str(fp32), str(out), per_channel=True, op_types_to_quantize=list(QUANTIZED_OPS),
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(quiet)
        if placeholder is not None:
            root.removeHandler(placeholder)


class _QuantizationChatter(logging.Filter):
    """Drops records emitted from onnxruntime's ``quantization`` package; passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "onnxruntime/quantization/" not in record.pathname.replace("\\", "/")
