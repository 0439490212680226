"""The gateway's decision log (router.serve.decision_log): every field per prompt mode, rotation, no record
lost or blocking, draining at exit, and feedback through the log and the CLI helper."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from router.data.readers.decision_logs import DECISION_FILE
from router.serve import decision_log as D
from router.serve.decision_log import DecisionLog, DecisionLogConfig, append_feedback
from tests.conftest import ROOT, record_decision

FIELDS = {"request_id", "timestamp", "prompt", "prompt_sha256", "task", "model", "scores", "lam", "budget",
          "share", "router_version", "latency_ms", "propensity", "policy"}


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
            record_decision(log, i)
    files = sorted((tmp_path / "size").glob("decisions-*.jsonl"))
    assert len(files) > 3
    line = max(len(line) + 1 for f in files for line in f.read_bytes().splitlines())
    assert all(f.stat().st_size <= 1000 + line for f in files)
    assert [r["request_id"] for r in _lines(tmp_path / "size")] == [f"r{i}" for i in range(40)]

    with DecisionLog(DecisionLogConfig(tmp_path / "age", max_age_s=0.05)) as log:
        record_decision(log, 0)
        time.sleep(0.3)  # the writer has written r0 and its file is now too old
        record_decision(log, 1)
    assert len(list((tmp_path / "age").glob("decisions-*.jsonl"))) == 2


def test_no_record_lost_from_8_threads_after_close(tmp_path):
    log = DecisionLog(DecisionLogConfig(tmp_path, max_bytes=256 * 1024))

    def work(t):
        for i in range(1250):
            record_decision(log, t * 10_000 + i)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    log.close()  # idempotent
    ids = [r["request_id"] for r in _lines(tmp_path)]
    assert len(ids) == 10_000 and len(set(ids)) == 10_000 and log.dropped == 0
    record_decision(log, 99_999)  # after close: counted, never raised
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
            record_decision(log, i)
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
        for i in range(1, 5):
            record_decision(log, i)
        log.feedback(request_id="r1", score=1.0, cost=0.002)
    (rec,) = _lines(tmp_path, "feedback-")
    assert {k: rec[k] for k in ("request_id", "score", "cost")} == {"request_id": "r1", "score": 1.0, "cost": 0.002}

    path = append_feedback(tmp_path, "r2", 1)
    append_feedback(tmp_path, "r3", 0.5, cost=0.01, timestamp=datetime(2025, 1, 1))
    assert path == tmp_path / f"feedback-cli-{datetime.now(timezone.utc):%Y%m%d}.jsonl"  # one file per UTC day
    recs = sorted(_lines(tmp_path, "feedback-cli-"), key=lambda r: r["request_id"])
    assert [(r["request_id"], r["score"], r["cost"]) for r in recs] == [("r2", 1.0, None), ("r3", 0.5, 0.01)]
    assert recs[1]["timestamp"] == "2025-01-01T00:00:00.000000Z"
    for bad, match in [(dict(request_id=""), "request_id"), (dict(score=float("nan")), "finite"),
                       (dict(score="high"), "score must be a number"), (dict(cost=-1.0), "cost must be >= 0")]:
        args = {"request_id": "r4", "score": 1.0, **bad}
        with pytest.raises(ValueError, match=match):
            append_feedback(tmp_path, **args)
    assert len(_lines(tmp_path, "feedback-cli-")) == 2
