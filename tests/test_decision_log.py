"""The gateway's decision log (router.serve.decision_log) and training from it (router.data.readers.decision_logs)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router.data.scan import scan_logs
from router.data.readers.decision_logs import DECISION_FILE, scan_decisions
from router.data.labels import build_routing_data
from router.data.schema import LogValidationError
from router.data.validate import validate_logs
from router.serve import decision_log as D
from router.serve.decision_log import DecisionLog, DecisionLogConfig, append_feedback

from .conftest import NQ_SAMPLE, ROOT

FIELDS = {"request_id", "timestamp", "prompt", "prompt_sha256", "task", "model", "scores", "lam", "budget",
          "share", "router_version", "latency_ms", "propensity", "policy"}


def _record(log: DecisionLog, i: int, prompt: str | None = None, model: str = "a", **extra) -> None:
    log.record(request_id=f"r{i}", prompt=prompt if prompt is not None else f"question {i}?", model=model,
               scores={"a": 0.7, "b": 0.4}, lam=0.5, budget=None, share=None, router_version="v1-abc",
               latency_ms=2.5, **extra)


def _lines(folder: Path, prefix: str = "decisions-") -> list[dict]:
    out = []
    for path in sorted(folder.glob(f"{prefix}*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n")
        out += [json.loads(line) for line in data.splitlines()]
    return out


@pytest.mark.parametrize("prompts", ["text", "hash", "none"])
def test_record_writes_every_field_per_prompt_mode(tmp_path, prompts):
    when = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    with DecisionLog(DecisionLogConfig(tmp_path, prompts=prompts)) as log:
        log.record(request_id="req-1", prompt="héllo", model="b", scores={"a": 0.1, "b": float("nan")}, lam=0.25,
                   budget=0.002, share={"b": 0.3}, router_version="v3-1a2b3c4d", latency_ms=4.0, task="qa",
                   timestamp=when)
    (name,) = [p.name for p in tmp_path.iterdir()]
    assert DECISION_FILE.fullmatch(name) and name.endswith(f"-{os.getpid()}-0001.jsonl")
    (rec,) = _lines(tmp_path)
    assert set(rec) == FIELDS
    assert rec["timestamp"] == "2025-06-01T12:00:00.123456Z"
    assert rec["prompt"] == ("héllo" if prompts == "text" else None)
    assert rec["prompt_sha256"] == (None if prompts == "none" else hashlib.sha256("héllo".encode()).hexdigest())
    assert rec["scores"] == {"a": 0.1, "b": None}  # NaN is not JSON
    assert (rec["request_id"], rec["model"], rec["task"], rec["lam"], rec["budget"], rec["share"],
            rec["router_version"], rec["latency_ms"]) == ("req-1", "b", "qa", 0.25, 0.002, {"b": 0.3},
                                                          "v3-1a2b3c4d", 4.0)


def test_config_is_checked():
    with pytest.raises(ValueError, match="prompts must be one of"):
        DecisionLogConfig(Path("x"), prompts="full")
    with pytest.raises(ValueError, match="max_bytes"):
        DecisionLogConfig(Path("x"), max_bytes=0)
    assert DecisionLogConfig("x").directory == Path("x")


def test_rotates_by_size_and_age(tmp_path):
    with DecisionLog(DecisionLogConfig(tmp_path / "size", max_bytes=1000)) as log:
        for i in range(40):
            _record(log, i)
    files = sorted((tmp_path / "size").glob("decisions-*.jsonl"))
    assert len(files) > 3
    line = max(len(line) + 1 for f in files for line in f.read_bytes().splitlines())
    assert all(f.stat().st_size <= 1000 + line for f in files)
    assert [r["request_id"] for r in _lines(tmp_path / "size")] == [f"r{i}" for i in range(40)]

    with DecisionLog(DecisionLogConfig(tmp_path / "age", max_age_s=0.05)) as log:
        _record(log, 0)
        time.sleep(0.3)  # the writer has written r0 and its file is now too old
        _record(log, 1)
    assert len(list((tmp_path / "age").glob("decisions-*.jsonl"))) == 2


def test_no_record_lost_from_8_threads_after_close(tmp_path):
    log = DecisionLog(DecisionLogConfig(tmp_path, max_bytes=256 * 1024))

    def work(t):
        for i in range(1250):
            _record(log, t * 10_000 + i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    log.close()  # idempotent
    ids = [r["request_id"] for r in _lines(tmp_path)]
    assert len(ids) == 10_000 and len(set(ids)) == 10_000 and log.dropped == 0
    _record(log, 99_999)  # after close: counted, never raised
    assert log.dropped == 1


def test_record_never_blocks_on_a_slow_writer(tmp_path, monkeypatch, caplog):
    write = D._Rotating.write

    def slow(self, data):
        time.sleep(0.02)
        write(self, data)

    monkeypatch.setattr(D._Rotating, "write", slow)
    log = DecisionLog(DecisionLogConfig(tmp_path, queue_size=10))
    with caplog.at_level(logging.WARNING, logger=D.__name__):
        start = time.perf_counter()
        for i in range(300):
            _record(log, i)
        elapsed = time.perf_counter() - start
        log.close(timeout=10)
    assert elapsed < 0.5  # a blocking writer would take 300 x 20 ms = 6 s
    written = len(_lines(tmp_path))
    assert log.dropped > 0 and written + log.dropped == 300
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(warnings) <= 2  # one for the (single) file, one final count at close


def test_interpreter_exit_without_close_drains(tmp_path):
    code = ("import sys; from router.serve.decision_log import DecisionLog, DecisionLogConfig\n"
            "log = DecisionLog(DecisionLogConfig(sys.argv[1]))\n"
            "for i in range(2000): log.record(request_id=str(i), prompt='p', model='a', scores={}, lam=0.0, "
            "budget=None, share=None, router_version='v1', latency_ms=1.0)\n"
            "bad = [m for m in ('polars', 'pandas', 'sklearn', 'mlflow', 'torch', 'dask') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "import router.serve.reload\n"
            "assert not [m for m in ('polars', 'mlflow') if m in sys.modules]\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT, timeout=60)
    assert len(_lines(tmp_path)) == 2000


def test_feedback_through_the_log_and_the_cli_helper(tmp_path):
    with DecisionLog(DecisionLogConfig(tmp_path)) as log:
        log.feedback(request_id="r1", score=1.0, cost=0.002)
    (rec,) = _lines(tmp_path, "feedback-")
    assert {k: rec[k] for k in ("request_id", "score", "cost")} == {"request_id": "r1", "score": 1.0, "cost": 0.002}

    cli = tmp_path / "cli"
    path = append_feedback(cli, "r2", 1)
    append_feedback(cli, "r3", 0.5, cost=0.01, timestamp=datetime(2025, 1, 1))
    assert path == cli / f"feedback-cli-{os.getpid()}.jsonl"
    recs = _lines(cli, "feedback-")
    assert [(r["request_id"], r["score"], r["cost"]) for r in recs] == [("r2", 1.0, None), ("r3", 0.5, 0.01)]
    assert recs[1]["timestamp"] == "2025-01-01T00:00:00.000000Z"
    for bad, match in [(dict(request_id=""), "request_id"), (dict(score=float("nan")), "finite"),
                       (dict(score="high"), "score must be a number"), (dict(cost=-1.0), "cost must be >= 0")]:
        args = {"request_id": "r4", "score": 1.0, **bad}
        with pytest.raises(ValueError, match=match):
            append_feedback(cli, **args)
    assert len(_lines(cli, "feedback-")) == 2


# ----------------------------------------------------------------------------- reading decision logs


def _served(folder: Path, prompts: str = "text", n: int = 4, feedback: dict | None = None) -> Path:
    """``n`` decisions r0..r{n-1} (model a for even, b for odd) with feedback for ``feedback`` {i: score}."""
    with DecisionLog(DecisionLogConfig(folder, prompts=prompts)) as log:
        for i in range(n):
            _record(log, i, model="ab"[i % 2], task="qa")
        for i, score in (feedback or {}).items():
            log.feedback(request_id=f"r{i}", score=score, cost=0.001 * (i + 1))
    return folder


def test_scan_joins_the_latest_feedback_and_drops_decisions_without(tmp_path, caplog):
    folder = _served(tmp_path, n=4, feedback={0: 1.0, 1: 0.0, 2: 0.5})
    t0 = datetime.now(timezone.utc)
    append_feedback(folder, "r1", 0.8, timestamp=t0 + timedelta(seconds=10))  # later: wins
    append_feedback(folder, "r0", 0.0, timestamp=t0 - timedelta(days=1))  # written last, but older: loses
    with caplog.at_level(logging.INFO, logger="router.data.readers.decision_logs"):
        lf = scan_logs(folder)
    assert "1 of 4 decisions have no feedback" in caplog.text
    df = lf.collect().sort("query_id")
    assert df["query_id"].to_list() == ["r0", "r1", "r2"]
    assert df["model"].to_list() == ["a", "b", "a"]
    assert df["score"].to_list() == [1.0, 0.8, 0.5]
    assert df["cost"].to_list() == [0.001, None, 0.003]
    assert df["prompt"].to_list() == ["question 0?", "question 1?", "question 2?"]
    assert df["task"].to_list() == ["qa"] * 3 and df["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert df["_source_row"].to_list() == [1, 2, 3] and df["_source_file"].cast(str).str.contains("decisions-").all()
    assert validate_logs(lf).queries == 3
    data = build_routing_data(lf)  # one scored model per query: the others are masked
    assert data.models == ("a", "b") and data.mask.sum(axis=1).tolist() == [1, 1, 1]
    assert scan_logs(folder, format="decisions").collect().height == 3


def test_scan_refuses_decisions_logged_without_prompts(tmp_path):
    folder = _served(tmp_path, prompts="hash", n=3, feedback={2: 1.0})
    with pytest.raises(LogValidationError) as err:
        scan_decisions(folder)
    msg = str(err.value)
    assert "--log-prompts text" in msg and "decisions-" in msg and "row=3" in msg and "1 row" in msg


def test_scan_skips_a_truncated_last_line_and_names_a_malformed_one(tmp_path):
    folder = _served(tmp_path / "ok", n=3, feedback={0: 1.0, 2: 0.0})
    (decisions,) = folder.glob("decisions-*.jsonl")
    (feedback,) = folder.glob("feedback-*.jsonl")
    with open(decisions, "a") as f:
        f.write('{"request_id": "r9", "prompt": "cut sh')  # a writer in the middle of a line
    with open(feedback, "a") as f:
        f.write('{"request_id": "r1", "sco')
    assert sorted(scan_decisions(folder).collect()["query_id"]) == ["r0", "r2"]

    bad = shutil.copytree(folder, tmp_path / "bad")
    (decisions,) = bad.glob("decisions-*.jsonl")
    lines = decisions.read_text().splitlines(keepends=True)
    decisions.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    with pytest.raises(LogValidationError, match=r"decisions-.*line 2 is not valid JSON"):
        scan_decisions(bad)


def test_scan_without_any_feedback_says_so(tmp_path):
    with pytest.raises(LogValidationError, match="none of the 2 logged decisions has feedback"):
        scan_logs(_served(tmp_path, n=2))


def _serve_nq(folder: Path, data, rows: np.ndarray, seed: int = 0) -> None:
    """Simulated traffic on NQ prompts: a random model per request, its logged score as feedback."""
    rng = np.random.default_rng(seed)
    with DecisionLog(DecisionLogConfig(folder, prompts="text")) as log:
        for q in rows:
            m = int(rng.integers(data.n_models))
            log.record(request_id=f"req-{q}", prompt=str(data.prompts[q]), model=data.models[m],
                       scores=dict(zip(data.models, map(float, rng.random(data.n_models)))), lam=0.0, budget=None,
                       share=None, router_version="v1", latency_ms=1.0)
            log.feedback(request_id=f"req-{q}", score=float(data.scores[q, m]), cost=float(data.costs[q, m]))


def test_a_router_trains_on_decision_logs_alone_and_beside_full_logs(tmp_path, nq, nq_X):
    from router.routers import KNNRouter, RidgeRouter

    rows = np.arange(0, nq.n_queries, 2)
    _serve_nq(tmp_path / "served", nq, rows)
    lf = scan_logs(tmp_path / "served")
    validate_logs(lf)
    data = build_routing_data(lf, models=list(nq.models))
    assert data.n_queries == len(rows) and (data.mask.sum(axis=1) == 1).all()
    row_of = {p: i for i, p in enumerate(nq.prompts)}
    X = nq_X[[row_of[p] for p in data.prompts]]
    for router in (KNNRouter(n_neighbors=10), RidgeRouter()):
        router.fit(X, data.scores, data.costs, data.mask)
        assert router.predict_scores(X[:5]).shape == (5, nq.n_models)

    # Beside the full logs in one folder: the served queries join the complete ones, masked where unknown.
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "served", mixed / "served")
    shutil.copy(NQ_SAMPLE, mixed / "full.jsonl")
    lf = scan_logs(mixed)
    stats = validate_logs(lf)
    both = build_routing_data(lf)
    assert stats.queries == both.n_queries == nq.n_queries + len(rows)
    assert both.mask.all(axis=1).sum() == nq.n_queries
    X = nq_X[[row_of[p] for p in both.prompts]]
    RidgeRouter().fit(X, both.scores, both.costs, both.mask)
