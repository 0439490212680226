"""ONNX Runtime backend for sentence-transformers models: find (or build) the file, encode fast.

``router.embed.Embedder(backend="onnx" | "onnx-int8")`` uses this module. The pipeline it reproduces
is the sentence-transformers one for a Transformer -> mean Pooling (-> Normalize) model such as
all-MiniLM-L6-v2:

1. tokenize with the model's own ``tokenizer.json`` (the ``tokenizers`` library, offline),
   truncating to the model's ``max_seq_length`` exactly as sentence-transformers does (long prompts
   are first cut by characters without changing their tokens: ``router.embed.truncate``);
2. run the transformer in onnxruntime on length-sorted batches (little padding);
3. mean-pool the token vectors over the attention mask, then L2-normalise.

``onnx_file`` finds the ONNX file: shipped beside the weights (an exported router carries it), else
in the on-disk cache ``onnx_cache_dir()/<key>/`` (keyed by a hash of the weights' content and
``RECIPE_VERSION``), else built there now by ``router.embed.onnx_build`` (needs torch and
transformers; serving never does). Recipe versions: see ``router.embed.onnx_build``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from router.embed.model_spec import RECIPE_VERSION, ModelSpec
from router.embed.truncate import PromptTruncator

ONNX_BACKENDS = ("onnx", "onnx-int8")
def onnx_cache_dir() -> Path:
    """Where exported ONNX files live: ``$ROUTER_ONNX_CACHE``, else ``$XDG_CACHE_HOME/learned-router/onnx``."""
    env = os.environ.get("ROUTER_ONNX_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "learned-router" / "onnx"


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

    A file ``<model_dir>/onnx/<bundled_name(backend)>`` (or the one file of an earlier recipe there) is
    used as is, so an exported router can carry its ONNX file and skip the build at serving time.
    Cached files live in ``<cache_dir or onnx_cache_dir()>/<weights_key>-r<RECIPE_VERSION>/``; ``label`` (e.g. the
    embedder's ``source_id``) is written beside them for people browsing the cache.
    """
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r}; valid: {', '.join(ONNX_BACKENDS)}")
    bundled = Path(model_dir) / "onnx" / bundled_name(backend)
    if bundled.is_file():
        return bundled
    # A router exported under an earlier recipe carries that recipe's file: its head was trained on
    # those vectors, so serving must use that file, not build the current recipe.
    earlier = sorted((Path(model_dir) / "onnx").glob(f"router-{backend}-recipe*.onnx"))
    if len(earlier) == 1:
        return earlier[0]
    folder = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    folder = folder / f"{weights_key(model_dir)}-r{RECIPE_VERSION}"
    target = folder / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")
    if not target.is_file():
        try:
            import onnx  # noqa: F401 - only building the file needs it (and torch)
        except ImportError as exc:
            raise RuntimeError(f"no ONNX file for {model_dir} ({backend}): building one needs the training "
                               f"extra (pip install -c constraints.txt 'learned-router[train]'): {exc}") from exc
        from router.embed.onnx_build import build

        build(Path(model_dir), label or str(model_dir), folder, quantize=backend == "onnx-int8")
    return target


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

    Thread-safe: the tokenizer is configured once here and only read afterwards, and onnxruntime
    sessions may be run from several threads, so concurrent ``encode`` calls need no lock.
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
        self.truncate = PromptTruncator(self.tokenizer, self.max_seq_length)
        self.pad_id = int(pad if pad is not None else self.tokenizer.token_to_id("[PAD]") or 0)
        self.session = self._session(self.threads)
        self._bulk_session = None  # single-threaded, shared by the workers; made on the first bulk call
        self._bulk_lock = threading.Lock()
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
        texts = [self.truncate.head(str(t)) for t in texts]
        if self.spec.do_lower_case:
            texts = [t.lower() for t in texts]
        texts = self.truncate(texts)  # a 50 MB prompt costs what its first tokens cost
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        # Sort by tokenized length: each batch pads only to its own longest prompt.
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        size = 1 if self.batch_invariant else batch_size
        batches = [order[lo : lo + size] for lo in range(0, len(texts), size)]
        if self.threads > 1 and len(batches) > 1:
            with self._bulk_lock:
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
