"""On-disk embedding cache keyed by (embedder id, text hash), and ``embed_with_cache``.

A re-run embeds only prompts no shard holds; shards are written to a temp file and renamed, so a
killed job never leaves a torn file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=8)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _read_shard(path: Path) -> np.ndarray:
    """A shard's records (memory-mapped), after checking the checksum its name carries."""
    expected = path.stem.rsplit("-", 1)[-1]
    if len(expected) == 16 and _digest(path) != expected:
        raise ValueError(f"checksum mismatch: expected {expected}")
    rec = np.load(path, mmap_mode="r", allow_pickle=False)
    if rec.dtype.names != ("h", "v"):
        raise ValueError(f"not a shard of (hash, vector) records: dtype {rec.dtype}")
    return rec


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
        """All cached (hashes, vectors) for an embedder, hashes sorted for binary search.

        A shard that fails its checksum or does not load (truncated, empty, bit-flipped) is renamed
        ``*.corrupt`` with a warning naming it; its prompts are simply not found, so they are embedded again.
        """
        arrays = []
        for shard in sorted(self._dir(embedder_id).glob("shard-*.npy")):
            try:
                arrays.append(_read_shard(shard))
            except (ValueError, OSError, EOFError) as exc:
                log.warning("embedding cache: dropping corrupt shard %s (%s); its prompts will be embedded again",
                            shard, exc)
                shard.replace(shard.with_name(shard.name + ".corrupt"))
        arrays = [a for a in arrays if len(a)]
        if not arrays:
            return np.zeros(0, dtype="S16"), np.zeros((0, 0), dtype=np.float32)
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
        tmp = folder / f".shard-{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, rec)
            fh.flush()
            os.fsync(fh.fileno())
        # The file's checksum is in its name: a shard damaged later is detected, not read as vectors.
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{_digest(tmp)}.npy"
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
