"""Shared state of the scheduled job's tests (tests/pipelines/test_job*.py) on the bundled sample.

One MLflow store (SQLite, migrated once) for the package; ``MLFLOW_TRACKING_URI`` points at it from the
first test that uses it to the end of tests/pipelines/. The first job makes the champion the other tests
build on, and runs once however many of the files run.

The job's test files run in name order and build on each other's registry state:

- ``test_job.py``: the first job (champion v1) and what it logs; later runs that must not move the
  champion (a worse challenger, the gate, ``--quiet``) and expect it to still be v1;
- ``test_job_export.py``: the first job's exported folder, its pyfunc and serving (the folder is
  pruned by the retention test in ``test_job_registry.py``);
- ``test_job_failures.py``: bad input, killed and terminated jobs (none of them moves the alias);
- ``test_job_registry.py``: promotion, retention (it prunes the first job's version) and races.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.config import JobConfig, LogsConfig, RouterSpec
from pipelines.job import run_job
from tests.conftest import NQ_SAMPLE, TEST_CACHE

NAME = "nq-test-router"
PROMPTS = ["who wrote the novel war and peace", "when did the first moon landing happen",
           "what is the capital of australia", "how many bones are in the human body"]


@pytest.fixture(scope="package")
def store(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri  # what a service process would set
    yield {"root": root, "uri": uri}
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def job_config(store, routers=("knn", "ridge"), logs: str | Path = NQ_SAMPLE, **extra) -> JobConfig:
    return JobConfig(
        name=NAME,
        logs=LogsConfig(path=str(logs)),
        embedder={"cache_dir": str(TEST_CACHE)},
        routers=[RouterSpec(family=r) for r in routers],
        tracking={"uri": store["uri"], "artifact_root": str(store["root"] / "artifacts")},
        export_dir=str(store["root"] / "models"),
        **extra,
    )


def champion_version() -> str:
    return str(MlflowClient().get_model_version_by_alias(NAME, "champion").version)


@pytest.fixture(scope="package")
def first_job(store):
    lines: list[str] = []
    result = run_job(job_config(store), echo=lines.append)
    return result, "\n".join(lines)
