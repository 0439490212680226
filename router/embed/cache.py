"""On-disk embedding cache keyed by (embedder id, text hash), and ``embed_with_cache``.

A re-run embeds only prompts no shard holds; shards are written to a temp file and renamed, so a
killed job never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """16-byte blake2b digest of each text, as a numpy ``S16`` array."""
    return np.array([hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts], dtype="S16")


@dataclass(frozen=True)
class EmbedStats:
    """How a call to ``embed_with_cache`` got its vectors."""

    total: int  # prompts asked for
    unique: int  # distinct prompts among them
    reused: int  # distinct prompts found in the cache
    embedded: int  # distinct prompts run through the encoder
    seconds: float


class EmbeddingCache:
    """Vectors on disk keyed by (embedder id, text hash).

    Each write is a new shard ``<root>/<embedder key>/shard-*.npy`` (a structured array of hash +
    vector) written to a temp file and renamed, so a killed job never leaves a torn file and a
    re-run embeds only prompts no shard holds.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _dir(self, embedder_id: str) -> Path:
        return self.root / hashlib.sha1(embedder_id.encode()).hexdigest()[:16]

    def _load(self, embedder_id: str) -> tuple[np.ndarray, np.ndarray]:
        """All cached (hashes, vectors) for an embedder, hashes sorted for binary search."""
        shards = sorted(self._dir(embedder_id).glob("shard-*.npy"))
        if not shards:
            return np.zeros(0, dtype="S16"), np.zeros((0, 0), dtype=np.float32)
        arrays = [np.load(s, mmap_mode="r") for s in shards]
        hashes = np.concatenate([a["h"] for a in arrays])
        vectors = np.concatenate([a["v"] for a in arrays])
        order = np.argsort(hashes, kind="stable")
        return hashes[order], vectors[order]

    def lookup(self, embedder_id: str, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors of the found hashes in input order)."""
        cached_h, cached_v = self._load(embedder_id)
        if not len(cached_h) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool), np.zeros((0, cached_v.shape[1] if cached_v.ndim == 2 else 0),
                                                              dtype=np.float32)
        pos = np.searchsorted(cached_h, hashes)
        pos_clipped = np.minimum(pos, len(cached_h) - 1)
        found = cached_h[pos_clipped] == hashes
        return found, np.asarray(cached_v[pos_clipped[found]], dtype=np.float32)

    def add(self, embedder_id: str, hashes: np.ndarray, vectors: np.ndarray) -> Path | None:
        """Write one shard atomically; returns its path (None when there is nothing to add)."""
        if not len(hashes):
            return None
        folder = self._dir(embedder_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "embedder.txt").write_text(embedder_id + "\n")
        dim = vectors.shape[1]
        rec = np.empty(len(hashes), dtype=[("h", "S16"), ("v", "<f4", (dim,))])
        rec["h"], rec["v"] = hashes, vectors
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.npy"
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, rec)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
        return folder / name

    def size(self, embedder_id: str) -> int:
        return len(self._load(embedder_id)[0])


def embed_with_cache(
    embedder,  # an Embedder, or anything with .id, .encode and .dimension (the cluster encoder)
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    *,
    chunk_size: int = 4096,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for ``texts`` (row-aligned), embedding only distinct prompts the cache lacks.

    New vectors are written to the cache every ``chunk_size`` prompts, so an interrupted run
    keeps what it finished.
    """
    start = time.perf_counter()
    texts = list(texts)
    hashes = text_hashes(texts)
    uniq, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    if cache is not None:
        found, cached_vectors = cache.lookup(embedder.id, uniq)
    else:
        found, cached_vectors = np.zeros(len(uniq), dtype=bool), np.zeros((0, 0), dtype=np.float32)
    todo = np.flatnonzero(~found)
    parts: list[np.ndarray] = []
    for lo in range(0, len(todo), chunk_size):
        idx = todo[lo : lo + chunk_size]
        vecs = embedder.encode([texts[first[i]] for i in idx])
        if cache is not None:
            cache.add(embedder.id, uniq[idx], vecs)
        parts.append(vecs)
    dim = parts[0].shape[1] if parts else (cached_vectors.shape[1] if found.any() else embedder.dimension)
    unique_vectors = np.empty((len(uniq), dim), dtype=np.float32)
    if found.any():
        unique_vectors[found] = cached_vectors
    if parts:
        unique_vectors[todo] = np.concatenate(parts)
    stats = EmbedStats(total=len(texts), unique=len(uniq), reused=int(found.sum()), embedded=len(todo),
                       seconds=time.perf_counter() - start)
    return unique_vectors[inverse.reshape(-1)], stats
