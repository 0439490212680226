"""The package installs as a normal (non-editable) package and its job runs from an empty folder.

A fresh virtual environment gets this package by ``pip install --no-deps .``; its dependencies come
from the test environment's site-packages through a ``.pth`` line (a full install of the stack
would take minutes and gigabytes). Then ``router train`` runs from an empty working directory:
everything it writes (embedding cache, MLflow store, exported model) lands there, and nothing is
written into site-packages or the source tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if "__pycache__" not in p.parts}


def _source_tree_files() -> set[str]:
    return _files(ROOT / "router") | _files(ROOT / "pipelines")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", purelib],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The test environment's packages, but not its editable install of this repository.
    (site / "test-env-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # pip builds in the source folder (build/, *.egg-info): build from a copy, so the checkout stays as it is.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "router", "pipelines"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, src / name)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps", str(src)],
                          capture_output=True, text=True, timeout=600, cwd=venv)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def test_installed_job_writes_only_under_the_working_directory(installed, tmp_path):
    site = Path(subprocess.run([str(installed / "bin" / "python"), "-c",
                                "import router, pathlib; print(pathlib.Path(router.__file__).parents[1])"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip())
    assert site != ROOT and "site-packages" in str(site)  # the installed copy, not the checkout
    before_site, before_src = _files(site), _source_tree_files()
    work = tmp_path / "job"
    work.mkdir()
    (work / "job.yaml").write_text("name: installed-router\nrouters: [{family: ridge}]\n")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([str(installed / "bin" / "router"), "train", "--config", "job.yaml"],
                          capture_output=True, text=True, timeout=600, cwd=work, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "6,000 queries x 3 models" in proc.stdout  # the bundled sample, found as package data
    assert "promoted to @champion" in proc.stdout
    assert (work / "mlflow.db").is_file() and (work / "mlruns").is_dir()
    assert any((work / ".cache" / "embeddings").rglob("shard-*.npy"))
    assert (work / "models" / "installed-router" / "champion" / "MLmodel").is_file()
    assert _files(site) == before_site  # nothing written into site-packages
    assert _source_tree_files() == before_src  # nor into the checkout
