"""Query embeddings: the ``Embedder`` (torch or ONNX backends) and the on-disk content-hash cache."""

from router.embed.cache import EmbeddingCache, EmbedStats, embed_with_cache, text_hashes
from router.embed.embedder import BACKENDS, DEFAULT_BACKEND, Embedder, default_model_path

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "EmbedStats", "Embedder", "EmbeddingCache", "default_model_path",
           "embed_with_cache", "text_hashes"]
