"""Training from the gateway's decision logs (router.data.readers.decision_logs): decisions joined with
their latest feedback, refused without prompts, truncated and malformed lines, and a router trained on
them alone and beside full logs."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from router.data.scan import scan_logs
from router.data.readers.decision_logs import scan_decisions
from router.data.labels import build_routing_data
from router.data.schema import LogValidationError
from router.data.validate import validate_logs
from router.serve.decision_log import DecisionLog, DecisionLogConfig, append_feedback
from tests.conftest import NQ_SAMPLE, record_decision


def _served(folder: Path, prompts: str = "text", n: int = 4, feedback: dict | None = None) -> Path:
    """``n`` decisions r0..r{n-1} (model a for even, b for odd) with feedback for ``feedback`` {i: score}."""
    with DecisionLog(DecisionLogConfig(folder, prompts=prompts)) as log:
        for i in range(n):
            record_decision(log, i, model="ab"[i % 2], task="qa")
        for i, score in (feedback or {}).items():
            log.feedback(request_id=f"r{i}", score=score, cost=0.001 * (i + 1))
    return folder


def test_scan_joins_the_feedback_and_drops_decisions_without(tmp_path, caplog):
    folder = _served(tmp_path, n=4, feedback={0: 1.0, 1: 0.0, 2: 0.5})
    t0 = datetime.now(timezone.utc)
    assert append_feedback(folder, "r1", 0.0, cost=0.002, timestamp=t0) is None  # a repeat: written once
    with caplog.at_level(logging.INFO, logger="router.data.readers.decision_logs"):
        lf = scan_logs(folder)
    assert "1 of 4 decisions have no feedback" in caplog.text
    df = lf.collect().sort("query_id")
    assert df["query_id"].to_list() == ["r0", "r1", "r2"]
    assert df["model"].to_list() == ["a", "b", "a"]
    assert df["score"].to_list() == [1.0, 0.0, 0.5]
    assert df["cost"].to_list() == [0.001, 0.002, 0.003]
    assert df["prompt"].to_list() == ["question 0?", "question 1?", "question 2?"]
    assert df["task"].to_list() == ["qa"] * 3 and df["timestamp"].dtype == pl.Datetime("us", "UTC")
    assert df["_source_row"].to_list() == [1, 2, 3] and df["_source_file"].cast(str).str.contains("decisions-").all()
    assert validate_logs(lf).queries == 3
    data = build_routing_data(lf)  # one scored model per query: the others are masked
    assert data.models == ("a", "b") and data.mask.sum(axis=1).tolist() == [1, 1, 1]
    assert scan_logs(folder, format="decisions").collect().height == 3


def test_feedback_is_checked_where_it_is_written_and_where_it_is_read(tmp_path):
    """An unknown request id (a typo, a forged path) or a second, different outcome is refused by the gateway's
    log and by `router feedback`; a log that holds two outcomes anyway (written by hand, or by an older release)
    is refused at training with the lines named, as ordinary logs refuse two scores of one cell."""
    from router.serve.outcomes import ConflictingFeedback, UnknownRequest

    folder = _served(tmp_path / "log", n=2, feedback={0: 1.0})
    with pytest.raises(ValueError, match=r"no routed request with id '\.\./\.\./etc/passwd' in "):
        append_feedback(folder, "../../etc/passwd", 1.0)
    with pytest.raises(ValueError, match=r"request 'r0' already has feedback score 1.0, cost 0.001"):
        append_feedback(folder, "r0", 0.0)
    with pytest.raises(ValueError, match="no decision log there"):
        append_feedback(tmp_path / "nowhere", "r0", 1.0)
    path = append_feedback(folder, "r1", 0.5)
    assert path.name == f"feedback-cli-{datetime.now(timezone.utc):%Y%m%d}.jsonl"
    assert append_feedback(folder, "r1", 0.5) is None and len(path.read_text().splitlines()) == 1
    with DecisionLog(DecisionLogConfig(folder, prompts="text")) as log:  # a restarted gateway knows them too
        with pytest.raises(UnknownRequest):
            log.feedback(request_id="nope", score=1.0)
        with pytest.raises(ConflictingFeedback):
            log.feedback(request_id="r1", score=1.0)
        log.feedback(request_id="r1", score=0.5)  # the same outcome again: accepted, not written
    with open(path, "a") as f:  # two outcomes for r1 in the files anyway
        f.write(json.dumps({"request_id": "r1", "timestamp": "2025-01-01T00:00:00Z", "score": 0.0}) + "\n")
    with pytest.raises(LogValidationError, match=r"(?s)a request has feedback with different outcomes \(1 request\)"
                                                 r".*request_id.*r1"):
        scan_logs(folder).collect()
    assert len(list(folder.glob("feedback-*.jsonl"))) == 2  # the gateway's file and one CLI file per day


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
