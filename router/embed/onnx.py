"""ONNX Runtime backend for sentence-transformers models: export once, cache the file, encode fast.

``router.embed.Embedder(backend="onnx" | "onnx-int8")`` uses this module. The pipeline it reproduces
is the sentence-transformers one for a Transformer -> mean Pooling (-> Normalize) model such as
all-MiniLM-L6-v2:

1. tokenize with the model's own ``tokenizer.json`` (the ``tokenizers`` library, offline),
   truncating to the model's ``max_seq_length`` exactly as sentence-transformers does;
2. run the transformer in onnxruntime on length-sorted batches (little padding);
3. mean-pool the token vectors over the attention mask, then L2-normalise.

The ONNX file is built on first use, without network, from the local weights: ``torch.onnx.export``
(TorchScript exporter, eager attention so onnxruntime's BERT fusions apply), onnxruntime's
transformer optimizer (fused attention / GELU / LayerNorm; same fp32 results), and for int8
``quantize_dynamic`` with per-channel weights on MatMul and Attention only (per-tensor weights lose
too much: cosine to fp32 down to 0.74 on MMLU-Pro), then the word-embedding table (the largest float
initializer feeding a Gather / EmbedLayerNormalization: for MiniLM 30522 x 384, 47 of the 58 MB)
stored as fp16 with a ``Cast`` back to fp32 at the start of the graph (``fp16_embedding_table``).
onnxruntime folds that constant Cast when it creates the session, so encoding speed is unchanged;
the int8 file drops to ~35 MB (it ships inside exported routers). The recipe's vectors are measured
against torch fp32 by ``benchmarks/bench_embed_speed.py``. Building takes ~10-20 s and is written
atomically to ``onnx_cache_dir()/<key>/``, keyed by a hash of the weights' content and
``RECIPE_VERSION``; later loads take well under a second and need neither torch nor transformers.

Building changes no process-wide state: no environment variables (the weights are read with
``local_files_only=True``) and no logger levels (onnxruntime's quantisation chatter is filtered
out only while ``quantize_dynamic`` runs).

Recipe versions: 1 = fused fp32 / int8 MatMul+Attention; 2 = 1 + fp16 word-embedding table in int8.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")
RECIPE_VERSION = 2  # bump when the export / quantisation recipe changes: it is part of the file key
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_SUPPORTED_MODULES = {
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
}

# How many ONNX files this process has built (tests use it to check the on-disk cache is reused).
build_count = 0


def onnx_cache_dir() -> Path:
    """Where exported ONNX files live: ``$ROUTER_ONNX_CACHE``, else ``$XDG_CACHE_HOME/learned-router/onnx``."""
    env = os.environ.get("ROUTER_ONNX_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "learned-router" / "onnx"


# ------------------------------------------------------------------------- model directory


class ModelSpec:
    """What the ONNX pipeline needs from a sentence-transformers model directory (read, validated)."""

    def __init__(self, model_dir: str | Path) -> None:
        self.dir = Path(model_dir)
        modules = _read_json(self.dir / "modules.json", default=None)
        if modules is None:  # a bare transformers checkpoint: sentence-transformers adds mean pooling
            modules = [{"type": "sentence_transformers.models.Transformer", "path": ""},
                       {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]
        types = [m["type"].replace(".sentence_transformer.modules.", ".models.") for m in modules]
        unsupported = sorted(set(types) - _SUPPORTED_MODULES)
        if unsupported or not types or types[0] != "sentence_transformers.models.Transformer":
            raise ValueError(f"the ONNX backends support Transformer -> Pooling (-> Normalize) models; "
                             f"{self.dir} has modules {types}: use backend='torch'")
        self.model_normalizes = "sentence_transformers.models.Normalize" in types
        pooling_dir = next((m["path"] for m, t in zip(modules, types) if t.endswith(".Pooling")), None)
        pooling = _read_json(self.dir / pooling_dir / "config.json", default={}) if pooling_dir else {}
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        if modes not in ([], ["pooling_mode_mean_tokens"]):
            raise ValueError(f"the ONNX backends implement mean pooling only; {self.dir} uses {modes}: "
                             f"use backend='torch'")
        st_config = _read_json(self.dir / "sentence_bert_config.json", default={})
        config = _read_json(self.dir / "config.json", default={})
        tok_config = _read_json(self.dir / "tokenizer_config.json", default={})
        self.max_positions = int(config.get("max_position_embeddings", 512))
        self.default_max_seq_length = int(st_config.get("max_seq_length")
                                          or min(int(tok_config.get("model_max_length", 512)), self.max_positions))
        self.do_lower_case = bool(st_config.get("do_lower_case", False))
        self.hidden_size = int(config.get("hidden_size", 0))
        self.num_heads = int(config.get("num_attention_heads", 0))
        st_meta = _read_json(self.dir / "config_sentence_transformers.json", default={})
        if st_meta.get("default_prompt_name"):
            raise ValueError(f"{self.dir} prepends the prompt {st_meta['default_prompt_name']!r} by default; "
                             f"the ONNX backends do not: use backend='torch'")
        if not (self.dir / "tokenizer.json").is_file():
            raise ValueError(f"the ONNX backends need a fast tokenizer file {self.dir / 'tokenizer.json'}: "
                             f"use backend='torch'")


def _read_json(path: Path, *, default):
    if not path.is_file():
        return default
    return json.loads(path.read_text())


def resolve_model_dir(model_path: str) -> Path:
    """A local directory as is; a name from the local Hugging Face cache (never the network)."""
    if Path(model_path).is_dir():
        return Path(model_path)
    from huggingface_hub import snapshot_download  # installed with sentence-transformers

    return Path(snapshot_download(model_path, local_files_only=True))


# -------------------------------------------------------------------------------- export


def bundled_name(backend: str) -> str:
    """File name under ``<model dir>/onnx/`` of a prebuilt file shipped with the weights (e.g. by export)."""
    return f"router-{backend}-recipe{RECIPE_VERSION}.onnx"


def weights_key(model_dir: str | Path) -> str:
    """Content hash of what the ONNX graph is made from: ``config.json`` and the weight files.

    Content, not path: an exported copy of the same weights finds the same cached file. Hashing
    MiniLM's 90 MB takes ~0.1 s and is remembered per (path, sizes, mtimes) for the process.
    """
    model_dir = Path(model_dir).resolve()
    files = sorted(f for pattern in _GRAPH_FILES for f in model_dir.glob(pattern) if f.is_file())
    if not files:
        raise ValueError(f"no weights ({', '.join(_GRAPH_FILES)}) in {model_dir}")
    stamp = (str(model_dir), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
    if stamp not in _KEYS:
        h = hashlib.blake2b(digest_size=10)
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
        _KEYS[stamp] = h.hexdigest()
    return _KEYS[stamp]


_GRAPH_FILES = ("config.json", "*.safetensors", "pytorch_model*.bin")
_KEYS: dict[tuple, str] = {}


def onnx_file(model_dir: str | Path, backend: str, *, cache_dir: str | Path | None = None, label: str = "") -> Path:
    """The ONNX file for the weights in ``model_dir``: shipped with them, else cached, else built now.

    A file ``<model_dir>/onnx/<bundled_name(backend)>`` is used as is, so an exported router can carry
    its ONNX file and skip the build at serving time. Cached files live in
    ``<cache_dir or onnx_cache_dir()>/<weights_key>-r<RECIPE_VERSION>/``; ``label`` (e.g. the
    embedder's ``source_id``) is written beside them for people browsing the cache.
    """
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r}; valid: {', '.join(ONNX_BACKENDS)}")
    bundled = Path(model_dir) / "onnx" / bundled_name(backend)
    if bundled.is_file():
        return bundled
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    folder = folder / f"{weights_key(model_dir)}-r{RECIPE_VERSION}"
    target = folder / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")
    if not target.is_file():
        _build(Path(model_dir), label or str(model_dir), folder, quantize=backend == "onnx-int8")
    return target


def _build(model_dir: Path, label: str, folder: Path, *, quantize: bool) -> None:
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


# ------------------------------------------------------------------------------- encoder


class OnnxEncoder:
    """onnxruntime session + the model's tokenizer; ``encode`` mirrors sentence-transformers.

    Speed on a small CPU comes from three things: no padding work (length-sorted batches, or one
    prompt per call), fused kernels, and parallelism across prompts rather than inside one. A single
    short prompt parallelises poorly inside onnxruntime, so calls with many prompts run them on
    ``threads`` Python workers sharing one single-threaded session (onnxruntime releases the GIL),
    while a call with one batch uses a session with ``threads`` intra-op threads (lowest latency).

    ``batch_invariant`` runs one prompt per call. Dynamic int8 quantisation scales the activations
    by the range of the whole input tensor (all rows, padding included), so inside a batch a
    prompt's vector would depend on its neighbours (cosine ~0.99 between two batchings). One prompt
    per call makes a vector a function of its text alone, as the embedding cache and serving assume.
    """

    def __init__(self, onnx_path: str | Path, model_dir: str | Path, *, max_seq_length: int | None = None,
                 threads: int | None = None, batch_invariant: bool = False) -> None:
        from tokenizers import Tokenizer

        spec = ModelSpec(model_dir)
        self.spec = spec
        self.path = Path(onnx_path)
        self.batch_invariant = batch_invariant
        self.threads = int(threads or available_cores())
        self.max_seq_length = min(max_seq_length or spec.default_max_seq_length, spec.max_positions)
        self.tokenizer = Tokenizer.from_file(str(spec.dir / "tokenizer.json"))
        pad = (self.tokenizer.padding or {}).get("pad_id")
        self.tokenizer.enable_truncation(self.max_seq_length)  # counts [CLS]/[SEP], like transformers
        self.tokenizer.no_padding()  # tokenizer.json may pad to a fixed width; batches pad themselves
        self.pad_id = int(pad if pad is not None else self.tokenizer.token_to_id("[PAD]") or 0)
        self.session = self._session(self.threads)
        self._bulk_session = None  # single-threaded, shared by the workers; made on the first bulk call
        self.input_names = {i.name for i in self.session.get_inputs()}
        dim = self.session.get_outputs()[0].shape[-1]  # an int, or a symbolic name for unknown
        self.dimension = dim if isinstance(dim, int) else spec.hidden_size

    def _session(self, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        return ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, normalize: bool = True,
               show_progress: bool = False) -> np.ndarray:
        """(len(texts), dim) float32 sentence vectors; longest prompts first, in batches."""
        texts = [str(t).strip() for t in texts]
        if self.spec.do_lower_case:
            texts = [t.lower() for t in texts]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Sort by tokenized length: each batch pads only to its own longest prompt.
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        size = 1 if self.batch_invariant else batch_size
        batches = [order[lo : lo + size] for lo in range(0, len(texts), size)]
        if self.threads > 1 and len(batches) > 1:
            if self._bulk_session is None:
                self._bulk_session = self._session(1)
            session = self._bulk_session
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="onnx-embed")
            results = pool.map(lambda idx: self._run(session, [encodings[i] for i in idx]), batches)
        else:
            pool = None
            results = (self._run(self.session, [encodings[i] for i in idx]) for idx in batches)
        try:
            if show_progress:
                from tqdm.auto import tqdm

                results = tqdm(results, total=len(batches), desc="Batches")
            for idx, vectors in zip(batches, results):
                out[idx] = vectors
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
        if normalize or self.spec.model_normalizes:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _run(self, session, encodings) -> np.ndarray:
        """Mean-pooled vectors of one batch (padded here to its longest member)."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        tokens = session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0]
        weights = mask[..., None].astype(np.float32)
        return (tokens * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def available_cores() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
