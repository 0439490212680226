"""ONNX backends of the Embedder: same vectors as torch (within int8 noise), cached export, picklable."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from router.embed import onnx as onnx_embed
from router.embed.model_spec import RECIPE_VERSION, ModelSpec
from router.embed import onnx_build
from router.embed import BACKENDS, DEFAULT_BACKEND, Embedder, EmbeddingCache, embed_with_cache
from tests.conftest import PERTURB, TEST_CACHE, unperturbed

FAST = ("onnx", "onnx-int8")


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """A fresh ONNX cache for this session: the first load below builds the files (~15 s), once."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    old = os.environ.get("ROUTER_ONNX_CACHE")
    os.environ["ROUTER_ONNX_CACHE"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("ROUTER_ONNX_CACHE", None)
    else:
        os.environ["ROUTER_ONNX_CACHE"] = old


@pytest.fixture(scope="session")
def fast_embedders(onnx_cache) -> dict[str, Embedder]:
    embedders = {backend: Embedder(backend=backend) for backend in FAST}
    for e in embedders.values():
        e.load()
    return embedders


@pytest.fixture(scope="session")
def prompts(mmlu_small) -> list[str]:
    """50 real MMLU-Pro questions of mixed lengths (12 to 210 tokens)."""
    return list(mmlu_small.prompts[:50])


@pytest.fixture(scope="session")
def torch_X(prompts) -> np.ndarray:
    """The reference: sentence-transformers (torch fp32) vectors, from the shared test cache."""
    if PERTURB:  # the shared cache holds perturbed vectors then: the reference is computed afresh
        with unperturbed():
            return Embedder(backend="torch").encode(prompts)
    X, _ = embed_with_cache(Embedder(backend="torch"), prompts, EmbeddingCache(TEST_CACHE))
    return X


@pytest.mark.exact_vectors  # two backends' vectors, compared
@pytest.mark.parametrize("backend", FAST)
def test_onnx_vectors_match_torch(backend, fast_embedders, torch_X, prompts):
    ref = torch_X
    X = fast_embedders[backend].encode(prompts)
    assert X.shape == ref.shape == (50, 384) and X.dtype == np.float32
    assert fast_embedders[backend].dimension == 384
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    cos = np.sum(X * ref, axis=1)
    floor = 0.9999 if backend == "onnx" else 0.98  # fp32 is the same computation; int8 rounds weights
    assert cos.min() > floor, (backend, cos.min())


@pytest.mark.exact_vectors  # two backends' vectors, compared
def test_onnx_truncation_matches_torch(onnx_cache, fast_embedders, prompts):
    """max_seq_length truncates exactly as sentence-transformers does (same tokens in, same vector out)."""
    short_torch = Embedder(backend="torch", max_seq_length=16).encode(prompts[:10])
    short_onnx = Embedder(backend="onnx", max_seq_length=16)
    assert short_onnx.load().max_seq_length == 16
    cos = np.sum(short_onnx.encode(prompts[:10]) * short_torch, axis=1)
    assert cos.min() > 0.9999
    full = fast_embedders["onnx"].encode(prompts[:10])
    assert np.sum(full * short_torch, axis=1).min() < 0.99  # truncation really happened


@pytest.mark.parametrize("backend", FAST)
def test_vector_does_not_depend_on_batch(backend, fast_embedders, prompts):
    """One prompt alone or inside a padded batch gets the same vector (cache and serving agree)."""
    e = fast_embedders[backend]
    batch = e.encode(prompts[:20])
    alone = np.vstack([e.encode([p]) for p in prompts[:3]])
    np.testing.assert_allclose(alone, batch[:3], atol=2e-5)
    assert e.encode([]).shape == (0, 384)


def test_backend_is_part_of_id_and_settings():
    ids = {Embedder(backend=b).id for b in BACKENDS}
    assert len(ids) == len(BACKENDS)
    assert Embedder(backend="torch").id == Embedder(backend="torch", threads=1).id  # threads: same vectors
    for b in BACKENDS:
        e = Embedder(backend=b, max_seq_length=128)
        assert e.settings()["backend"] == b
        assert Embedder.from_settings(e.settings()).id == e.id  # serving rebuilds the same embedder
    assert Embedder().backend == DEFAULT_BACKEND
    with pytest.raises(ValueError, match="unknown embedder backend 'tensorrt'; valid: torch, onnx, onnx-int8"):
        Embedder(backend="tensorrt")


def test_onnx_export_is_cached_on_disk(onnx_cache, fast_embedders):
    paths = {b: e.load().path for b, e in fast_embedders.items()}
    assert all(p.is_file() and onnx_cache in p.parents for p in paths.values())
    mtimes = {b: p.stat().st_mtime_ns for b, p in paths.items()}
    builds = onnx_build.build_count
    for b in FAST:
        again = Embedder(backend=b, max_seq_length=64)  # other settings, same weights: same file
        assert again.load().path == paths[b]
    assert onnx_build.build_count == builds
    assert {b: p.stat().st_mtime_ns for b, p in paths.items()} == mtimes
    assert not list(onnx_cache.rglob(".build-*"))  # no temp leftovers


def test_embedder_pickles_without_session(fast_embedders, prompts):
    e = fast_embedders["onnx-int8"]
    before = e.encode(prompts[:5])
    blob = pickle.dumps(e)
    assert len(blob) < 10_000  # settings only: no onnxruntime session, no weights
    clone = pickle.loads(blob)
    assert clone._model is None and clone.id == e.id
    np.testing.assert_allclose(clone.encode(prompts[:5]), before, atol=1e-6)


def _linked_copy(folder):
    """A copy of the packaged weights made of symlinks (an exported router's weights, cheaply)."""
    from router.embed import default_model_path

    folder.mkdir()
    for f in default_model_path().iterdir():
        (folder / f.name).symlink_to(f)
    return folder


def test_copied_weights_reuse_the_cached_file(tmp_path, fast_embedders):
    """The cache is keyed by the weights' content, not their path: an exported copy builds nothing."""
    builds = onnx_build.build_count
    copy = Embedder(str(_linked_copy(tmp_path / "exported")), backend="onnx-int8")
    assert copy.load().path == fast_embedders["onnx-int8"].load().path
    assert onnx_build.build_count == builds


def test_onnx_file_shipped_with_weights_is_used(tmp_path, fast_embedders, prompts):
    """An exported router can carry its ONNX file beside the weights: no build at serving time."""
    weights = _linked_copy(tmp_path / "weights")
    built = fast_embedders["onnx-int8"].load().path
    (weights / "onnx").mkdir()
    (weights / "onnx" / onnx_embed.bundled_name("onnx-int8")).symlink_to(built)
    builds = onnx_build.build_count
    served = Embedder.from_settings(fast_embedders["onnx-int8"].settings(), model=str(weights))  # as serving does
    assert served.load().path.parent == weights / "onnx"
    assert onnx_build.build_count == builds
    np.testing.assert_allclose(served.encode(prompts[:3]), fast_embedders["onnx-int8"].encode(prompts[:3]), atol=1e-6)


def test_missing_model_fails_clearly_on_onnx(onnx_cache):
    with pytest.raises(RuntimeError, match="could not load embedder 'no-such/model-xyz' offline"):
        Embedder("no-such/model-xyz", backend="onnx").load()


def test_unsupported_models_name_the_torch_backend(tmp_path):
    """CLS pooling (or extra modules) is not what the ONNX path computes: refuse, don't guess."""
    import json

    copy = _linked_copy(tmp_path / "cls")
    (copy / "1_Pooling").unlink()
    (copy / "1_Pooling").mkdir()
    (copy / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(ValueError, match="mean pooling only.*use backend='torch'"):
        ModelSpec(copy)
    with pytest.raises(ValueError, match="runs on CPU only"):
        Embedder(backend="onnx-int8", device="cuda")


@pytest.mark.exact_vectors  # two backends' vectors, compared
def test_default_truncates_at_128_tokens_for_the_packaged_model_only(fast_embedders, prompts):
    """max_seq_length "auto": 128 for the default model (prompts longer than that change, shorter ones
    do not), the model's own limit for any other model; None still means the model's own limit."""
    from router.embed.embedder import AUTO_MAX_SEQ_LENGTH, default_model_path

    e = fast_embedders["onnx-int8"]
    assert AUTO_MAX_SEQ_LENGTH == 128 and e.max_seq_length == 128 and e.load().max_seq_length == 128
    assert e.settings()["max_seq_length"] == 128 and "|max_seq=128|" in e.id  # resolved: serving and cache agree
    assert Embedder.from_settings(e.settings()).id == e.id
    legacy = {"model": "default", "max_seq_length": None, "normalize": True, "backend": "onnx-int8"}
    assert Embedder.from_settings(legacy).max_seq_length is None  # routers exported before "auto" keep 256
    assert Embedder(str(default_model_path())).max_seq_length is None  # another model (by path): its own limit
    full = Embedder(backend="onnx-int8", max_seq_length=None)
    assert full.load().max_seq_length == 256
    tokens = np.array([len(full.load().tokenizer.encode(p.strip()).ids) for p in prompts])
    long = tokens > 128
    assert long.any() and (~long).any(), tokens
    cos = np.sum(e.encode(prompts) * full.encode(prompts), axis=1)
    assert cos[~long].min() > 0.99999  # same tokens in, same vector out
    assert cos[long].max() < 0.9999  # the tail past 128 tokens is dropped
    with pytest.raises(ValueError, match="max_seq_length must be a positive int, None or 'auto', got 'long'"):
        Embedder(max_seq_length="long")


def test_config_max_seq_length_values(tmp_path):
    from pipelines.config import load_config

    for text, expected in (("auto", 128), ("null", None), ("64", 64)):
        (tmp_path / "job.yaml").write_text(f"embedder: {{max_seq_length: {text}}}\n")
        assert load_config(tmp_path / "job.yaml").embedder.build().max_seq_length == expected
    assert load_config(None).embedder.build().max_seq_length == 128
    (tmp_path / "job.yaml").write_text("embedder: {max_seq_length: long}\n")
    with pytest.raises(ValueError, match=r"job\.yaml: embedder\.max_seq_length"):
        load_config(tmp_path / "job.yaml")


def test_int8_file_keeps_its_embedding_tables_int8(fast_embedders):
    """Recipe 3: the fused embedding layer reads int8 tables (QEmbedLayerNormalization), so neither the
    file an exported router carries (58.5 MB in recipe 1, 35 MB in recipe 2) nor a serving process
    holds a float copy of the 30522 x 384 word-embedding table."""
    import onnx

    path = fast_embedders["onnx-int8"].load().path
    assert path.stat().st_size < 25e6, path.stat().st_size
    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    assert not [n for n in graph.node if n.op_type == "EmbedLayerNormalization"]
    fused = [n for n in graph.node if n.op_type == "QEmbedLayerNormalization"]
    assert len(fused) == 1
    word = inits[fused[0].input[2]]  # word embeddings
    assert word.data_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8) and list(word.dims) == [30522, 384]
    big_floats = [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT and
                  int(np.prod(i.dims)) > 1_000_000]
    assert big_floats == []
    # The fp32 file is the plain fused export: its table stays fp32.
    fp32 = onnx.load(str(fast_embedders["onnx"].load().path)).graph
    assert any(n.op_type == "EmbedLayerNormalization" for n in fp32.node)


def test_a_router_exported_under_an_earlier_recipe_keeps_its_onnx_file(tmp_path, fast_embedders):
    """An export carries the ONNX file its head was trained with: after a recipe change, serving reads
    that file (same vectors as at training) instead of building the current recipe."""
    import shutil

    from router.embed.onnx import bundled_name, onnx_file

    folder = tmp_path / "embedder"
    (folder / "onnx").mkdir(parents=True)
    older = folder / "onnx" / bundled_name("onnx-int8").replace(f"recipe{RECIPE_VERSION}", "recipe2")
    shutil.copy2(fast_embedders["onnx-int8"].load().path, older)
    assert onnx_file(folder, "onnx-int8") == older
    current = folder / "onnx" / bundled_name("onnx-int8")
    shutil.copy2(older, current)
    assert onnx_file(folder, "onnx-int8") == current  # the current recipe's file wins when both are there


def test_building_changes_no_process_wide_state(tmp_path, monkeypatch):
    """Library code leaves the process alone: building the ONNX files sets no environment variable and
    leaves the root logger's level, filters and handlers as they were. While quantize_dynamic runs, only
    onnxruntime's quantisation records are dropped: the root level stays, other records pass."""
    import logging

    import onnxruntime.quantization as ort_quantization
    import torch._dynamo  # noqa: F401 - torch sets TORCHINDUCTOR_CACHE_DIR when this is first imported
    from router.embed import default_model_path

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # as in a process that never set them
        monkeypatch.delenv(name, raising=False)
    root = logging.getLogger()
    during = {}
    real = ort_quantization.quantize_dynamic

    def spy(*args, **kwargs):
        def passes(pathname):
            return bool(root.filter(logging.LogRecord("root", logging.WARNING, pathname, 1, "msg", None, None)))

        during["level"] = root.level
        during["ours passes"] = passes(str(Path(onnx_embed.__file__)))
        during["onnxruntime dropped"] = not passes(str(Path(ort_quantization.__file__).with_name("quantize.py")))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort_quantization, "quantize_dynamic", spy)
    handlers = root.handlers[:]
    for h in handlers:  # a bare process: no handler, where a stray logging.warning() runs basicConfig()
        root.removeHandler(h)
    try:
        env = dict(os.environ)
        state = (root.level, root.filters[:], root.handlers[:])
        path = onnx_embed.onnx_file(default_model_path(), "onnx-int8", cache_dir=tmp_path)
        after = (root.level, root.filters[:], root.handlers[:])
    finally:
        for h in handlers:
            root.addHandler(h)
    assert path.is_file() and (path.parent / "model.onnx").is_file()  # really built: export and quantisation
    assert dict(os.environ) == env
    assert after == state
    assert during == {"level": state[0], "ours passes": True, "onnxruntime dropped": True}
