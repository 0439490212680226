"""The local export folder (issue 12, item 4): version folders, an atomic champion link, staging cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from pipelines.publish import local_export
from pipelines.publish.local_export import CHAMPION, MARKER, open_root, point_champion, prune, versions


def _fake_version(root, label: str) -> None:
    """A version folder as the job writes it (MLmodel + artifacts); contents do not matter here."""
    (root / label / "artifacts").mkdir(parents=True)
    (root / label / "MLmodel").write_text(f"artifact_path: {label}\n")


def test_open_root_makes_the_folder_and_its_marker(tmp_path):
    root = open_root(tmp_path / "models", "nq")
    assert root == tmp_path / "models" / "nq" and (root / MARKER).is_file()
    assert open_root(tmp_path / "models", "nq") == root  # idempotent


@pytest.mark.parametrize("content", ["file", "folder"])
def test_a_folder_the_job_did_not_make_is_refused_and_left_alone(tmp_path, content):
    foreign = tmp_path / "models" / "data"
    foreign.mkdir(parents=True)
    if content == "file":
        (foreign / "important.csv").write_text("1,2,3")
    else:
        (foreign / "v1").mkdir()
        (foreign / "v1" / "MLmodel").write_text("not ours")
    with pytest.raises(ValueError, match="was not made by this job"):
        open_root(tmp_path / "models", "data")
    assert sorted(p.name for p in foreign.rglob("*")) == (["important.csv"] if content == "file" else ["MLmodel", "v1"])


def test_an_export_of_the_older_layout_is_moved_aside_never_deleted(tmp_path, caplog):
    old = tmp_path / "models" / "nq"
    _fake_version(tmp_path / "models", "nq")  # the old layout: the model folder itself at <export_dir>/<name>
    with caplog.at_level("WARNING"):
        root = open_root(tmp_path / "models", "nq")
    aside = tmp_path / "models" / ".nq.old-layout"
    assert (aside / "MLmodel").is_file() and str(aside) in caplog.text
    assert root == old and (root / MARKER).is_file() and not (root / "MLmodel").exists()


def test_champion_link_swaps_atomically_under_a_polling_reader(tmp_path):
    """A reader polling <name>/champion/MLmodel during many swaps always finds one (the old or the new)."""
    root = open_root(tmp_path, "nq")
    for label in ("v1", "v2"):
        _fake_version(root, label)
    point_champion(root, "v1")
    missing, done = [], threading.Event()

    def reader():
        while not done.is_set():
            if not (root / CHAMPION / "MLmodel").is_file():
                missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(2000):
            point_champion(root, f"v{1 + i % 2}")
    finally:
        done.set()
        thread.join()
    assert missing == [] and os.readlink(root / CHAMPION) == "v2"
    with pytest.raises(ValueError, match="not an exported router"):
        point_champion(root, "v9")  # never a link to nothing
    assert os.readlink(root / CHAMPION) == "v2"


def test_prune_keeps_the_champion_and_never_touches_other_files(tmp_path):
    root = open_root(tmp_path, "nq")
    for label in ("v1", "v2", "v3", "nq-20261129T101500Z-0a1b2c3d"):
        _fake_version(root, label)
    (root / "notes.txt").write_text("mine")
    (root / "scratch").mkdir()
    point_champion(root, "v1")
    gone = prune(root, {"v3"})
    assert sorted(gone) == ["nq-20261129T101500Z-0a1b2c3d", "v2"]
    assert sorted(versions(root)) == ["v1", "v3"]
    assert (root / "notes.txt").read_text() == "mine" and (root / "scratch").is_dir()


def test_staging_of_a_dead_process_is_removed_and_a_live_ones_is_kept(tmp_path):
    root = open_root(tmp_path, "nq")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = local_export.owners.host()
    left = root / f".staging-{host}-{dead}-abc123"
    (left / "artifacts").mkdir(parents=True)
    (left / "artifacts" / "model.onnx").write_bytes(b"\0" * 1024)
    live = root / f".staging-{host}-{os.getpid()}-def456"  # a job running right now
    live.mkdir()
    other_host = root / ".staging-elsewhere-1-ghi789"  # cannot be checked from here: kept for a day
    other_host.mkdir()
    open_root(tmp_path, "nq")
    assert not left.exists() and live.is_dir() and other_host.is_dir()
    day_old = local_export.time.time() - local_export._STALE_SECONDS - 60
    os.utime(other_host, (day_old, day_old))
    open_root(tmp_path, "nq")
    assert not other_host.exists() and live.is_dir()


def test_load_resolves_the_champion_link_once(tmp_path, monkeypatch):
    """router.load reads every file of one version even if the link moves mid-load."""
    from router.serve import load as load_module

    root = open_root(tmp_path, "nq")
    for label in ("v1", "v2"):
        _fake_version(root, label)
        (root / label / "artifacts" / "head").mkdir()
        (root / label / "artifacts" / "embedder").mkdir()
    point_champion(root, "v1")
    seen = []

    def from_dir(head, embedder, threads=None):
        point_champion(root, "v2")  # the job swaps the link while this load runs
        seen.extend([head, embedder])
        return "service"

    monkeypatch.setattr(load_module.RouterService, "from_dir", staticmethod(from_dir))
    assert load_module.load(root / CHAMPION) == "service"
    assert [p.relative_to(root.resolve()).parts[0] for p in seen] == ["v1", "v1"]
