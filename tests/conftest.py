"""Shared fixtures: small real logs, their routing data and embeddings (computed once per session), the paths
of the committed data, and helpers the tests of several packages use (an exported router, a decision record)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from router.data import labels
from router.data.readers.wide import WideSpec, scan_wide
from router.data.scan import scan_logs
from router.embed import Embedder, EmbeddingCache, embed_with_cache

if TYPE_CHECKING:
    from router.serve.decision_log import DecisionLog

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
NQ_SAMPLE = ROOT / "data" / "nq_sample.jsonl"
MMLU_SPEC = WideSpec(
    id_column="question_id", prompt_column="question", task_column="category",
    prompts_file=str(FIXTURES / "mmlu_pro" / "questions.csv"),
)
# The tests embed a few hundred prompts; a cache under the repo keeps re-runs fast and is
# itself what the cache tests exercise. Override with ROUTER_TEST_CACHE.
TEST_CACHE = Path(os.environ.get("ROUTER_TEST_CACHE", ROOT / ".cache" / "test-embeddings"))
# ROUTER_TEST_PERTURB=1e-3: every embedding in this process moves by that much noise (fixed per vector), as
# on another CPU, whose int8 kernels give slightly other vectors. A suite that passes with it asserts behaviour,
# not one machine's fit outcome. The perturbed vectors go to their own cache, never to TEST_CACHE.
PERTURB = float(os.environ.get("ROUTER_TEST_PERTURB") or 0.0)
if PERTURB:
    import tempfile

    TEST_CACHE = Path(tempfile.mkdtemp(prefix="router-test-perturbed-"))


_EXACT = {"on": False}  # inside a test that compares vectors themselves (marked exact_vectors): no noise


@pytest.fixture(scope="session", autouse=True)
def _perturbed_embeddings():
    if not PERTURB:
        yield
        return
    import hashlib

    original = Embedder.encode

    def encode(self, texts):
        X = original(self, texts)
        if _EXACT["on"] or not len(X):
            return X
        # Noise seeded by the vector itself: what embeds the same (a prompt and its truncated prefix) moves the same.
        seeds = [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") for row in X]
        X = X + PERTURB * np.stack([np.random.default_rng(s).standard_normal(X.shape[1]) for s in seeds])
        if self.normalize:  # unit vectors stay unit vectors, as another CPU's would
            X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X.astype(np.float32)

    Embedder.encode = encode
    yield
    Embedder.encode = original


@contextmanager
def unperturbed():
    """Embeddings made inside are the embedder's own (a reference computed once, then compared exactly)."""
    before, _EXACT["on"] = _EXACT["on"], True
    try:
        yield
    finally:
        _EXACT["on"] = before


@pytest.fixture(autouse=True)
def _exact_vectors(request):
    """Tests that compare vectors from two backends, or from this process and another (marked
    ``exact_vectors``), see the unperturbed vectors: they test the vectors, not what is built on them."""
    _EXACT["on"] = bool(request.node.get_closest_marker("exact_vectors"))
    yield
    _EXACT["on"] = False


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="session")
def mmlu_small() -> labels.RoutingData:
    """300 MMLU-Pro questions x 31 models (wide fixture with a separate questions file)."""
    lf = scan_wide(FIXTURES / "mmlu_pro" / "correct_wide.csv", MMLU_SPEC)
    return labels.build_routing_data(lf)


@pytest.fixture(scope="session")
def mmlu_small_X(mmlu_small, embedder) -> np.ndarray:
    X, _ = embed_with_cache(embedder, mmlu_small.prompts, EmbeddingCache(TEST_CACHE))
    return X


@pytest.fixture(scope="session")
def nq() -> labels.RoutingData:
    """The bundled sample: 500 NQ questions x 6 models with $ cost."""
    return labels.build_routing_data(scan_logs(NQ_SAMPLE))


@pytest.fixture(scope="session")
def nq_X(nq, embedder) -> np.ndarray:
    X, _ = embed_with_cache(embedder, nq.prompts, EmbeddingCache(TEST_CACHE))
    return X


def write_export(folder: Path, head, embedder: Embedder, meta) -> Path:
    """An exported router folder as ``router.load`` reads it (``artifacts/head`` + ``artifacts/embedder``),
    written without MLflow: the files ``pipelines.publish.export.log_router`` logs."""
    from pipelines.publish.export import embedder_artifact, write_head

    artifacts = folder / "artifacts"
    write_head(artifacts / "head", head, meta)
    staged = embedder_artifact(embedder, artifacts)
    if staged != artifacts / "embedder":  # the torch backend exports its weights folder as is
        import shutil

        shutil.copytree(staged, artifacts / "embedder")
    return folder


@pytest.fixture(scope="session")
def nq_export(tmp_path_factory, nq, nq_X, embedder) -> Path:
    """A kNN router fitted on the bundled NQ sample (6 models, $ costs), exported to a folder."""
    from router.evaluation.metrics import mean_model_costs
    from router.routers import KNNRouter
    from router.serve.service import RouterMeta

    head = KNNRouter(n_neighbors=10, weighting="uniform").fit(nq_X, nq.scores, nq.costs, nq.mask)
    meta = RouterMeta(models=list(nq.models), model_costs=mean_model_costs(nq).tolist(),
                      embedder=embedder.settings(), router="knn")
    return write_export(tmp_path_factory.mktemp("nq-export"), head, embedder, meta)


def record_decision(log: DecisionLog, i: int, prompt: str | None = None, model: str = "a", **extra) -> None:
    """Decision ``r{i}`` for ``prompt`` (default "question {i}?") routed to ``model`` (scores a 0.7, b 0.4,
    lambda 0.5, router v1-abc); ``extra``: more fields of ``DecisionLog.record``."""
    log.record(request_id=f"r{i}", prompt=prompt if prompt is not None else f"question {i}?", model=model,
               scores={"a": 0.7, "b": 0.4}, lam=0.5, budget=None, share=None, router_version="v1-abc",
               latency_ms=2.5, **extra)
