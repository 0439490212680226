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
from collections.abc import Callable, Sequence
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


_READ_BLOCK = 65_536  # shard records per read: ~100 MB at 384 dimensions


def _read_rows(path: Path, rows: np.ndarray, out: np.ndarray, targets: np.ndarray) -> None:
    """``out[targets] = vectors of records rows`` of one shard, read a block of records at a time with
    plain file reads (a memory map would keep every page it touched resident)."""
    mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # for its layout only: no page is read
    dtype, offset = mapped.dtype, mapped.offset
    del mapped
    order = np.argsort(rows, kind="stable")
    rows, targets = rows[order], targets[order]
    for lo in range(0, int(rows[-1]) + 1, _READ_BLOCK):
        a, b = np.searchsorted(rows, [lo, lo + _READ_BLOCK])
        if a == b:
            continue
        count = int(rows[b - 1]) - lo + 1
        block = np.fromfile(path, dtype=dtype, count=count, offset=offset + lo * dtype.itemsize)
        out[targets[a:b]] = block["v"][rows[a:b] - lo]


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

    def _index(self, embedder_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Path], int]:
        """Every cached hash of an embedder, sorted for binary search, with the shard (an index into the
        returned paths) and row holding its vector, and the vectors' length (0: nothing cached); the
        vectors stay on disk until ``read``.

        A shard that fails its checksum or does not load (truncated, empty, bit-flipped) is renamed
        ``*.corrupt`` with a warning naming it; its prompts are simply not found, so they are embedded again.
        """
        hashes, shards, rows, paths, dim = [], [], [], [], 0
        for shard in sorted(self._dir(embedder_id).glob("shard-*.npy")):
            try:
                rec = _read_shard(shard)
            except (ValueError, OSError, EOFError) as exc:
                log.warning("embedding cache: dropping corrupt shard %s (%s); its prompts will be embedded again",
                            shard, exc)
                shard.replace(shard.with_name(shard.name + ".corrupt"))
                continue
            if len(rec):
                hashes.append(np.array(rec["h"]))
                shards.append(np.full(len(rec), len(paths), dtype=np.int32))
                rows.append(np.arange(len(rec), dtype=np.int64))
                paths.append(shard)
                dim = rec.dtype["v"].shape[0]
        if not paths:
            return np.zeros(0, dtype="S16"), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), [], 0
        h = np.concatenate(hashes)
        order = np.argsort(h, kind="stable")
        return h[order], np.concatenate(shards)[order], np.concatenate(rows)[order], paths, dim

    def locate(self, embedder_id: str, hashes: np.ndarray
               ) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], None], int]:
        """(found mask, ``read``, the vectors' length): ``read(out, at)`` writes the i-th found hash's
        vector to ``out[at[i]]``, reading the shards a block at a time (no shard is loaded whole: at a
        million cached prompts that was 1.5 GB, copied twice more on the way out)."""
        cached_h, shard_of, row_of, paths, dim = self._index(embedder_id)
        if not len(cached_h) or not len(hashes):
            return np.zeros(len(hashes), dtype=bool), lambda out, at: None, dim
        pos = np.minimum(np.searchsorted(cached_h, hashes), len(cached_h) - 1)
        found = cached_h[pos] == hashes
        pos = pos[found]

        def read(out: np.ndarray, at: np.ndarray) -> None:
            for k, path in enumerate(paths):
                targets = np.flatnonzero(shard_of[pos] == k)
                if len(targets):
                    _read_rows(path, row_of[pos[targets]], out, at[targets])

        return found, read, dim

    def lookup(self, embedder_id: str, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors of the found hashes in input order)."""
        found, read, dim = self.locate(embedder_id, hashes)
        out = np.empty((int(found.sum()), dim), dtype=np.float32)
        read(out, np.arange(len(out)))
        return found, out

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
        return len(self._index(embedder_id)[0])


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
        found, read, cached_dim = cache.locate(embedder.id, uniq)
    else:
        found, read, cached_dim = np.zeros(len(uniq), dtype=bool), None, 0
    todo = np.flatnonzero(~found)
    parts: list[np.ndarray] = []
    for lo in range(0, len(todo), chunk_size):
        idx = todo[lo : lo + chunk_size]
        vecs = embedder.encode([texts[first[i]] for i in idx])
        if cache is not None:
            cache.add(embedder.id, uniq[idx], vecs)
        parts.append(vecs)
    dim = parts[0].shape[1] if parts else (cached_dim if found.any() else embedder.dimension)
    inverse = inverse.reshape(-1)
    distinct = len(uniq) == len(texts)  # the usual case: vectors go straight to their rows, one n x d array
    out = np.empty((len(uniq), dim), dtype=np.float32)
    at = np.empty(len(uniq), dtype=np.int64)
    at[inverse if distinct else np.arange(len(uniq))] = np.arange(len(uniq))
    if found.any():
        read(out, at[found])
    if parts:
        out[at[todo]] = np.concatenate(parts)
    if not distinct:
        out = out[inverse]
    stats = EmbedStats(total=len(texts), unique=len(uniq), reused=int(found.sum()), embedded=len(todo),
                       seconds=time.perf_counter() - start)
    return out, stats
