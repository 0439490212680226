"""The embedding cache (router.embed.cache) skips the encoder for cached prompts: keyed by the embedder's
settings, written in atomic shards, a corrupt shard dropped and re-embedded, cached vectors read in blocks."""

from __future__ import annotations

import numpy as np
import pytest

from router.embed import Embedder, EmbeddingCache, embed_with_cache, text_hashes


class CountingEmbedder(Embedder):
    """The real default embedder, counting the prompts that reach the encoder."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded.extend(texts)
        return super().encode(texts)


def test_second_run_embeds_only_new_prompts(tmp_path, nq, nq_X):
    cache = EmbeddingCache(tmp_path / "cache")
    first = CountingEmbedder()
    prompts = list(nq.prompts[:40])
    X1, s1 = embed_with_cache(first, prompts + prompts[:5], cache)  # duplicates embedded once
    assert (s1.total, s1.unique, s1.embedded, s1.reused) == (45, 40, 40, 0)
    assert len(first.encoded) == 40
    np.testing.assert_allclose(X1[:40], nq_X[:40], atol=1e-5)
    np.testing.assert_array_equal(X1[40:], X1[:5])

    second = CountingEmbedder()
    more = prompts + list(nq.prompts[40:50])
    X2, s2 = embed_with_cache(second, more, cache)
    assert (s2.embedded, s2.reused) == (10, 40)
    assert sorted(second.encoded) == sorted(nq.prompts[40:50])  # only the new prompts hit the encoder
    np.testing.assert_array_equal(X2[:40], X1[:40])
    assert cache.size(second.id) == 50

    third = CountingEmbedder()
    _, s3 = embed_with_cache(third, more[::-1], cache)
    assert s3.embedded == 0 and third.encoded == []


def test_cache_is_keyed_by_embedder_settings(tmp_path, nq):
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(Embedder(), list(nq.prompts[:3]), cache)
    other = CountingEmbedder()
    other.max_seq_length = 32
    _, stats = embed_with_cache(other, list(nq.prompts[:3]), cache)
    assert stats.embedded == 3


def test_cache_writes_are_atomic_shards(tmp_path, nq):
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(Embedder(), list(nq.prompts[:30]), cache, chunk_size=8)
    shards = list(tmp_path.rglob("shard-*.npy"))
    assert len(shards) == 4  # one shard per chunk: an interrupted run keeps finished chunks
    assert not list(tmp_path.rglob("*.tmp"))
    # a torn temp file from a killed run is ignored
    (shards[0].parent / ".shard-x.npy.tmp").write_bytes(b"garbage")
    assert cache.size(Embedder().id) == 30


class _Hashing:
    """A stand-in encoder: a deterministic vector per text, counting what it encodes."""

    id = "test-hashing-encoder"
    dimension = 8

    def __init__(self):
        self.encoded: list[str] = []

    def encode(self, texts):
        self.encoded.extend(texts)
        return np.stack([np.random.default_rng(abs(hash(t)) % 2**32).random(8).astype(np.float32) for t in texts])


@pytest.mark.parametrize("damage", ["truncate", "empty", "flip"])
def test_a_corrupt_cache_shard_is_dropped_with_its_path_and_re_embedded(tmp_path, caplog, damage):
    cache = EmbeddingCache(tmp_path / "cache")
    enc = _Hashing()
    first, second = [f"prompt {i}" for i in range(50)], [f"other {i}" for i in range(50)]
    X1, _ = embed_with_cache(enc, first, cache)
    embed_with_cache(enc, second, cache)
    victim = next(p for p in (tmp_path / "cache").rglob("shard-*.npy")
                  if set(np.load(p)["h"]) == set(text_hashes(first)))  # the first run's shard
    raw = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        victim.write_bytes(b"")
    else:  # one bit in the last vector: still a valid .npy, caught only by the checksum
        victim.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x01]))
    enc.encoded.clear()
    with caplog.at_level("WARNING", logger="router.embed.cache"):
        X, stats = embed_with_cache(enc, first + second, cache)
    assert str(victim) in caplog.text and "dropping corrupt shard" in caplog.text
    assert stats.embedded == 50 and stats.reused == 50 and len(enc.encoded) == 50  # only the lost prompts
    np.testing.assert_array_equal(X[:50], X1)  # the same vectors as before the damage
    assert victim.with_name(victim.name + ".corrupt").exists() and not victim.exists()
    enc.encoded.clear()
    embed_with_cache(enc, first + second, cache)
    assert enc.encoded == []  # healed: the next run reuses everything


def test_cached_vectors_are_read_in_blocks_into_their_rows(tmp_path, monkeypatch, nq, nq_X):
    """Cached vectors are read from several shards a few records at a time (never a whole shard) and land
    in the rows of their prompts, in any order, duplicates included."""
    import router.embed.cache as cache_module

    cache = EmbeddingCache(tmp_path / "cache")
    embed_with_cache(CountingEmbedder(), list(nq.prompts[:30]), cache)
    embed_with_cache(CountingEmbedder(), list(nq.prompts[20:50]), cache, chunk_size=7)  # several shards
    monkeypatch.setattr(cache_module, "_READ_BLOCK", 3)
    order = [49, 0, 31, 7, 7, 18, 44, 2, 0]
    X, stats = embed_with_cache(CountingEmbedder(), [nq.prompts[i] for i in order], cache)
    assert stats.embedded == 0 and stats.reused == 7
    np.testing.assert_allclose(X, nq_X[order], atol=1e-5)
    found, vectors = cache.lookup(CountingEmbedder().id, text_hashes([nq.prompts[5], "never seen", nq.prompts[45]]))
    assert found.tolist() == [True, False, True]
    np.testing.assert_allclose(vectors, nq_X[[5, 45]], atol=1e-5)
