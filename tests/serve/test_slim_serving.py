"""A service installs the package without the training stack, and loading and routing import none of it.

A fresh virtual environment sees only what ``pip install learned-router`` (the base install, no
extras) would bring: the dependency closure of ``[project] dependencies`` in pyproject.toml, read from
the installed packages' metadata, linked into one folder on its path, plus this package. Neither
torch, mlflow, polars, pandas, scikit-learn nor dask is importable there, so a load that needed any of
them fails here, not in a service.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

import router
from tests.serve.slim_env import slim_python

pytestmark = pytest.mark.slow

TRAINING_STACK = ("torch", "mlflow", "polars", "pandas", "sklearn", "dask", "sentence_transformers", "transformers",
                  "pyarrow", "matplotlib", "onnx")


def run_isolated(python: Path, code: str, cwd: Path, timeout: float = 120) -> dict:
    proc = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def slim(tmp_path_factory) -> Path:
    return slim_python(tmp_path_factory.mktemp("slim"))


PROMPTS = ["who wrote the declaration of independence", "what is the boiling point of water in kelvin",
           "name the longest river in africa"]


@pytest.mark.exact_vectors  # routes in a subprocess (unperturbed) and compares with this process
def test_base_install_loads_and_routes_without_the_training_stack(slim, nq_export, tmp_path):
    code = f"""
import importlib.util, json, sys
import router
service = router.load({str(nq_export)!r})
models = service.route({PROMPTS!r})
scores = service.scores({PROMPTS!r}).tolist()
loaded = sorted(m for m in {TRAINING_STACK!r} if m in sys.modules)
installed = sorted(m for m in {TRAINING_STACK!r} if importlib.util.find_spec(m) is not None)
print(json.dumps({{"models": models, "scores": scores, "loaded": loaded, "installed": installed,
                  "scipy": "scipy" in sys.modules}}))
"""
    out = run_isolated(slim, code, tmp_path)
    assert out["installed"] == []  # the environment really is slim: none of them could be imported
    assert out["loaded"] == [] and not out["scipy"]  # scipy comes only with a head's LightGBM boosters
    full = router.load(nq_export)
    assert out["models"] == full.route(PROMPTS)
    np.testing.assert_allclose(out["scores"], full.scores(PROMPTS), atol=1e-6)


def test_every_head_family_loads_without_the_training_stack(slim, nq, nq_X, embedder, tmp_path):
    """Each family's saved head predicts in the slim environment exactly as it does after fit."""
    from router.routers import ROUTERS
    from router.serve.artifact import save_head
    from tests.routers.conftest import FAST

    rows = np.arange(200)
    X, expected = nq_X[rows], {}
    for family in ROUTERS:
        if family == "random":
            continue
        head = ROUTERS[family](**FAST.get(family, {})).fit(X, nq.scores[rows], nq.costs[rows], nq.mask[rows])
        save_head(head, tmp_path / family)
        expected[family] = head.predict_scores(X[:20])
    np.save(tmp_path / "X.npy", X[:20])
    code = f"""
import json, sys, numpy as np
from router.serve.artifact import load_head
X = np.load({str(tmp_path / "X.npy")!r})
out = {{f: load_head({str(tmp_path)!r} + "/" + f).predict_scores(X).tolist() for f in {sorted(expected)!r}}}
print(json.dumps({{"scores": out, "loaded": sorted(m for m in {TRAINING_STACK!r} if m in sys.modules)}}))
"""
    out = run_isolated(slim, code, tmp_path)
    assert out["loaded"] == []
    for family, scores in expected.items():
        # float32 products summed in another order (BLAS threads) move kNN's sharp kernel weights by ~1e-5
        np.testing.assert_allclose(out["scores"][family], scores, rtol=1e-4, atol=1e-7, err_msg=family)


def test_the_gateway_runs_on_the_serve_extra_alone(nq_export, tmp_path_factory, tmp_path):
    """`pip install learned-router[serve]`: the `router` command and the gateway load and route, and the
    training stack is neither imported nor importable."""
    python = slim_python(tmp_path_factory.mktemp("slim-serve"), extras=("serve",))
    code = f"""
import importlib.util, json, sys
from starlette.testclient import TestClient
from pipelines.cli import app as cli  # the `router` command's module
from router.serve.gateway import ServeConfig
from router.serve.server import build_server
server = build_server({str(nq_export)!r}, ServeConfig(decision_log={str(tmp_path / "decisions")!r}))
with TestClient(server.app) as client:
    health = client.get("/healthz").json()
    routed = client.post("/v1/route", json={{"prompts": {PROMPTS!r}}}).json()
server.close()
print(json.dumps({{"models": routed["models"], "health": health["status"],
                  "loaded": sorted(m for m in {TRAINING_STACK!r} if m in sys.modules),
                  "installed": sorted(m for m in {TRAINING_STACK!r} if importlib.util.find_spec(m) is not None)}}))
"""
    out = run_isolated(python, code, tmp_path)
    assert out["installed"] == [] and out["loaded"] == []
    assert out["health"] == "ok"
    assert out["models"] == router.load(nq_export).route(PROMPTS)
    assert list((tmp_path / "decisions").glob("decisions-*.jsonl"))  # the decision log was written and closed


def test_threads_caps_one_embedding_and_changes_no_answer(nq_export):
    """``router.load(folder, threads=1)``: each embedding runs on one CPU thread (more requests/s when many
    run at once), with the same answers as the default."""
    one, default = router.load(nq_export, threads=1), router.load(nq_export)
    assert one.embedder.load().threads == 1 and default.embedder.load().threads >= 1
    assert one.route(PROMPTS) == default.route(PROMPTS)
    np.testing.assert_allclose(one.scores(PROMPTS), default.scores(PROMPTS), atol=1e-6)
