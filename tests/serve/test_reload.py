"""Hot reload (router.serve.reload): the champion link or registry alias moves, requests never notice."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from router.policy.operating_point import Calibration, OperatingPoint
from router.serve.load import load
from router.serve.reload import LoadedRouter, ReloadingRouter

PROMPTS = ["who wrote the origin of species", "how tall is mount everest", "when did the berlin wall fall"]


def _version(root: Path, label: str, export: Path, lam: float | None = None, broken: bool = False) -> Path:
    """``root/label``: the exported router's head (copied; its lambda changed if given) and embedder (linked)."""
    target = root / label / "artifacts"
    shutil.copytree(export / "artifacts" / "head", target / "head")
    (target / "embedder").symlink_to(export / "artifacts" / "embedder", target_is_directory=True)
    meta = target / "head" / "router_meta.json"
    if lam is not None:
        raw = json.loads(meta.read_text())
        raw["calibration"] = Calibration(tuple(raw["models"]), default=OperatingPoint(lam=lam)).to_dict()
        meta.write_text(json.dumps(raw))
    if broken:
        (target / "head" / "head.json").write_text("{ cut short")
    return root / label


def _point(root: Path, label: str) -> None:
    """Move ``root/champion`` to ``label`` atomically, as the job does (a new link renamed over the old)."""
    tmp = root / ".champion-new"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(label, target_is_directory=True)
    os.replace(tmp, root / "champion")


@pytest.fixture(scope="module")
def root(tmp_path_factory, nq_export) -> Path:
    root = tmp_path_factory.mktemp("models") / "x"
    _version(root, "v1", nq_export)
    _version(root, "v2", nq_export, lam=1e6)  # routes to the cheapest model: answers differ from v1
    _version(root, "v3", nq_export, broken=True)
    _point(root, "v1")
    return root


@pytest.fixture(scope="module")
def answers(root) -> dict[str, list[str]]:
    return {label: load(root / label).route(PROMPTS) for label in ("v1", "v2")}


def test_check_now_swaps_when_the_link_moves(root, answers):
    _point(root, "v1")
    reloading = ReloadingRouter(root / "champion", poll_seconds=60)
    first = reloading.current()
    assert isinstance(first, LoadedRouter) and first.version.startswith("v1-") and len(first.version) == 11
    assert first.path == str((root / "v1").resolve())
    assert not reloading.check_now()  # nothing moved
    _point(root, "v2")
    assert reloading.check_now()
    second = reloading.current()
    assert second.version.startswith("v2-") and second.service.route(PROMPTS) == answers["v2"]
    assert first.service.route(PROMPTS) == answers["v1"]  # a request holding the old one finishes on it
    assert answers["v1"] != answers["v2"]


def test_a_broken_version_is_refused_once_and_the_old_keeps_serving(root, answers, caplog):
    calls = []

    def loader(path):
        calls.append(path)
        return load(path)

    _point(root, "v1")
    reloading = ReloadingRouter(root / "champion", poll_seconds=60, loader=loader)
    _point(root, "v3")
    with caplog.at_level(logging.WARNING, logger="router.serve.reload"):
        assert not reloading.check_now()
        assert not reloading.check_now()  # the same broken version is not tried again
    (line,) = [r.getMessage() for r in caplog.records]
    assert str((root / "v3").resolve()) in line and "head.json" in line and "still serving v1-" in line
    assert len(calls) == 2  # the first load, and the broken one once
    assert reloading.current().version.startswith("v1-")
    assert reloading.current().service.route(PROMPTS) == answers["v1"]
    _point(root, "v2")  # a good version after the broken one is taken
    assert reloading.check_now() and reloading.current().version.startswith("v2-")


def test_requests_during_swaps_always_get_a_whole_router(root, answers):
    _point(root, "v1")
    reloading = ReloadingRouter(root / "champion", poll_seconds=0.05).start()
    errors, seen = [], set()
    done = threading.Event()

    def serve():
        try:
            while not done.is_set():
                got = reloading.current().service.route(PROMPTS)
                if got not in (answers["v1"], answers["v2"]):
                    errors.append(got)
                seen.add(tuple(got))
        except Exception as exc:  # noqa: BLE001 - any exception fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=serve) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for label in ("v2", "v3", "v1", "v2", "v1"):
            _point(root, label)
            deadline = time.monotonic() + 20
            while label != "v3" and not reloading.current().version.startswith(label + "-"):
                assert time.monotonic() < deadline, f"not reloaded to {label}"
                time.sleep(0.02)
            time.sleep(0.2)
    finally:
        done.set()
        for t in threads:
            t.join(30)
        reloading.stop()
    assert not errors and seen == {tuple(answers["v1"]), tuple(answers["v2"])}
    assert reloading._thread is None


def test_a_registry_alias_is_followed_by_its_version(monkeypatch):
    """``models:/NAME@ALIAS``: the alias's registry version is the identity (MLflow faked here)."""
    alias = {"version": "3"}

    class Client:
        def get_model_version_by_alias(self, name, which):
            assert (name, which) == ("nq-router", "champion")
            return types.SimpleNamespace(version=alias["version"])

    monkeypatch.setitem(sys.modules, "mlflow", types.SimpleNamespace(MlflowClient=Client,
                                                                     get_tracking_uri=lambda: "http://mlflow:5000"))
    loaded = []
    reloading = ReloadingRouter("models:/nq-router@champion", loader=lambda uri: loaded.append(uri) or uri)
    assert reloading.current() == LoadedRouter(service="models:/nq-router/3", version="v3",
                                               path="models:/nq-router/3")
    assert not reloading.check_now()
    alias["version"] = "4"
    assert reloading.check_now() and reloading.current().version == "v4"
    assert loaded == ["models:/nq-router/3", "models:/nq-router/4"]


def test_a_missing_source_fails_at_start():
    with pytest.raises(FileNotFoundError):
        ReloadingRouter("/nonexistent/models/x/champion", loader=lambda p: p)


def test_gateway_requests_never_fail_while_the_champion_moves(root, answers):
    """The gateway over a reloading router: 4 clients post /v1/route while the link moves between two good
    versions and a broken one; every request answers 200 with one version's whole answer."""
    import httpx

    from router.serve.gateway import create_app
    from tests.serve.conftest import serve_in_thread

    _point(root, "v1")
    reloading = ReloadingRouter(root / "champion", poll_seconds=0.05).start()
    statuses, wrong, versions = [], [], set()
    done = threading.Event()

    def client(url):
        with httpx.Client(base_url=url, timeout=30) as http:
            while not done.is_set():
                r = http.post("/v1/route", json={"prompts": PROMPTS})
                statuses.append(r.status_code)
                if r.status_code == 200:
                    body = r.json()
                    versions.add(body["router_version"].split("-")[0])
                    if body["models"] not in (answers["v1"], answers["v2"]):
                        wrong.append(body)

    try:
        with serve_in_thread(create_app(reloading)) as url:
            threads = [threading.Thread(target=client, args=(url,)) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                for label in ("v2", "v3", "v1", "v2"):
                    _point(root, label)
                    time.sleep(0.5)
            finally:
                done.set()
                for t in threads:
                    t.join(30)
    finally:
        reloading.stop()
    assert statuses and set(statuses) == {200} and not wrong
    assert versions == {"v1", "v2"}  # both served; the broken v3 never was


def test_the_gateway_refuses_a_router_over_models_it_has_no_upstream_for(root, answers, upstream_map, caplog):
    """A job that replaced the champion with a router over other models (issue 24, B1): the gateway keeps
    the router it serves, and says which models lack an upstream, instead of answering every request 502."""
    from router.serve.gateway import create_app
    from router.serve.upstreams import parse_upstreams
    from tests.serve.conftest import ENV

    other = _version(root, "v9", root / "v1")
    meta = other / "artifacts" / "head" / "router_meta.json"
    raw = json.loads(meta.read_text())
    raw["models"] = [f"other/model-{i}" for i in range(len(raw["models"]))]
    meta.write_text(json.dumps(raw))
    _point(root, "v1")
    reloading = ReloadingRouter(root / "champion", poll_seconds=60)
    create_app(reloading, upstreams=parse_upstreams(upstream_map, "upstreams.yaml"), environ=ENV)
    _point(root, "v9")
    with caplog.at_level(logging.WARNING, logger="router.serve.reload"):
        assert not reloading.check_now()
    assert reloading.current().version.startswith("v1-")
    assert reloading.current().service.route(PROMPTS) == answers["v1"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "refused" in line and "no upstream" in line and "other/model-0" in line and "still serving v1-" in line
    _point(root, "v2")  # a router over the served models is still taken
    assert reloading.check_now() and reloading.current().version.startswith("v2-")
