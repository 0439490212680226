"""The streaming path on generated logs: counts match what the generator made, invalid rows are
named by file and row, and the query window / sample helpers (benchmarks/bench_scale.py runs the
same path at 1M and 10M rows)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import numpy as np
import polars as pl
import pytest

from benchmarks.generate_logs import generate, read_manifest
from router.data.scan import scan_logs
from router.data.scan import cap_queries, filter_since
from router.data import labels
from router.data import schema as S
from router.data.schema import LogValidationError
from router.data.validate import validate_logs

QUERIES, MODELS = 20_000, 5


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("gen") / "logs", QUERIES, MODELS, seed=3)


@pytest.fixture(scope="module")
def lf(gen) -> pl.LazyFrame:
    return scan_logs(gen.out)


@pytest.fixture(scope="module")
def data(lf) -> labels.RoutingData:
    return labels.build_routing_data(lf)


def test_counts_match_what_the_generator_made(gen, lf, data):
    assert gen.files >= 4 and gen.duplicate_rows > 0 and gen.missing_cells > 0 and gen.missing_scores > 0
    stats = validate_logs(lf, source=gen.out)
    assert (stats.rows, stats.queries, stats.models, stats.files) == (gen.rows, QUERIES, MODELS, gen.files)
    assert (stats.duplicate_rows, stats.missing_scores) == (gen.duplicate_rows, gen.missing_scores)
    assert data.n_queries == QUERIES and data.models == tuple(f"model-{k:02d}" for k in range(MODELS))
    # every (query, model) pair with a row is a cell; rows with an empty score stay masked
    assert data.mask.sum() == gen.cells - gen.missing_scores
    assert data.scores.size - data.mask.sum() == gen.missing_cells + gen.missing_scores
    assert data.mask.any(axis=1).mean() > 0.99
    assert np.isin(data.scores[data.mask], [0.0, 1.0]).all()
    assert np.isfinite(data.costs[data.mask]).all() and (data.costs[data.mask] > 0).all()
    assert data.tasks is not None and data.timestamps is not None
    assert list(data.query_ids) == sorted(data.query_ids)


def test_prompts_are_distinct_realistic_and_reproducible(gen, data, tmp_path):
    assert len(set(data.prompts)) == QUERIES
    lengths = np.array([len(p) for p in data.prompts])
    assert 250 < lengths.mean() < 350 and lengths.min() >= 20 and lengths.max() > 1000
    assert abs(lengths.mean() - gen.mean_prompt_chars) < 1e-6 * QUERIES
    assert read_manifest(gen.out) == gen
    again = generate(tmp_path / "a", 2_000, 3, seed=3)
    same = generate(tmp_path / "b", 2_000, 3, seed=3)
    other = generate(tmp_path / "c", 2_000, 3, seed=4)
    a, b, c = (pl.read_parquet(f"{s.out}/*.parquet") for s in (again, same, other))
    assert a.equals(b) and not a.equals(c)


def test_optional_columns_can_be_left_out(tmp_path):
    gen = generate(tmp_path, 500, 3, seed=1, cost=False, task=False, timestamp=False)
    assert gen.columns == [S.QUERY_ID, S.PROMPT, S.MODEL, S.SCORE]
    data = labels.build_routing_data(scan_logs(tmp_path))
    assert data.n_queries == 500 and not data.has_cost and data.tasks is None and data.timestamps is None


def test_invalid_rows_are_named_by_file_and_row(tmp_path):
    gen = generate(tmp_path, 4_000, 4, seed=5, invalid_rate=0.002)
    assert gen.invalid_kind == "negative cost" and gen.invalid_rows > 0
    first_file, first_row = gen.invalid_examples[0]
    with pytest.raises(LogValidationError) as err:
        validate_logs(scan_logs(tmp_path), source=str(tmp_path))
    msg = str(err.value)
    assert msg.startswith(f"file {first_file}, column 'cost': negative cost ({gen.invalid_rows} rows)")
    assert f"row={first_row}," in msg and err.value.file == first_file


def test_nan_scores_when_there_is_no_cost(tmp_path):
    gen = generate(tmp_path, 2_000, 3, seed=6, invalid_rate=0.003, cost=False)
    file, row = gen.invalid_examples[0]
    with pytest.raises(LogValidationError, match=rf"(?s)column 'score': NaN score \({gen.invalid_rows} rows?\).*"
                                                 rf"row={row},"):
        validate_logs(scan_logs(tmp_path))


def test_filter_since_keeps_whole_queries_by_their_latest_time(lf, data):
    since = datetime(2025, 4, 1, tzinfo=timezone.utc)
    recent = labels.build_routing_data(filter_since(lf, "2025-04-01"))
    expected = data.query_ids[data.timestamps >= np.datetime64("2025-04-01")]
    assert 0 < recent.n_queries < data.n_queries
    np.testing.assert_array_equal(recent.query_ids, expected)
    keep = np.isin(data.query_ids, expected)
    np.testing.assert_array_equal(recent.scores, data.scores[keep])  # every answer of a kept query
    rows = filter_since(lf, since).select(pl.len()).collect().item()
    for same in (date(2025, 4, 1), "2025-04-01T00:00:00Z", "2025-04-01 02:00:00+02:00", datetime(2025, 4, 1)):
        assert filter_since(lf, same).select(pl.len()).collect().item() == rows
    assert filter_since(lf, None) is lf
    assert filter_since(lf, "2030-01-01").select(pl.len()).collect().item() == 0
    with pytest.raises(LogValidationError, match="column 'timestamp': the logs have no timestamps"):
        filter_since(lf.drop(S.TIMESTAMP), "2025-04-01")
    with pytest.raises(ValueError, match="not an ISO date"):
        filter_since(lf, "last tuesday")


def test_cap_queries_is_a_reproducible_random_sample(lf, data):
    small = labels.build_routing_data(cap_queries(lf, 300, seed=1))
    assert small.n_queries == 300 and set(small.query_ids) <= set(data.query_ids)
    keep = np.isin(data.query_ids, small.query_ids)
    np.testing.assert_array_equal(small.scores, data.scores[keep])
    again = cap_queries(lf, 300, seed=1).select(pl.col(S.QUERY_ID).unique().sort()).collect()
    other = cap_queries(lf, 300, seed=2).select(pl.col(S.QUERY_ID).unique().sort()).collect()
    assert again[S.QUERY_ID].to_list() == sorted(small.query_ids) and not again.equals(other)
    larger = cap_queries(lf, 1_000, seed=1).select(pl.col(S.QUERY_ID).unique()).collect()
    assert set(small.query_ids) <= set(larger[S.QUERY_ID])  # a larger cap keeps the smaller sample
    # a random sample, not the first ids or the first rows
    assert not np.array_equal(np.sort(small.query_ids), data.query_ids[:300])
    assert cap_queries(lf, None) is lf
    assert cap_queries(lf, 10**9).select(pl.col(S.QUERY_ID).n_unique()).collect().item() == QUERIES
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_queries must be a positive integer"):
            cap_queries(lf, bad)


def test_conflicts_across_files_name_both_files_and_rows(tmp_path):
    generate(tmp_path, 2_000, 3, seed=7)
    first = pl.read_parquet(tmp_path / "logs-00002.parquet", n_rows=1)
    extra = tmp_path / "logs-99999.parquet"
    first.with_columns((1 - pl.col(S.SCORE)).alias(S.SCORE)).write_parquet(extra)
    qid, model = first[S.QUERY_ID][0], first[S.MODEL][0]
    with pytest.raises(LogValidationError) as err:
        validate_logs(scan_logs(tmp_path))
    msg = str(err.value)
    assert "duplicate (query_id, model) rows with different scores (1 query-model pair)" in msg
    assert f"file={tmp_path / 'logs-00002.parquet'}, row=1, query_id='{qid}', model='{model}'" in msg
    assert f"file={extra}, row=1, query_id='{qid}'" in msg
    first.with_columns(pl.lit("model-new").alias(S.MODEL), (pl.col(S.PROMPT) + " v2")).write_parquet(extra)
    with pytest.raises(LogValidationError, match=rf"(?s)one query_id has different prompts \(1 query\).*"
                                                 rf"logs-00002\.parquet, row=1, query_id='{qid}'.*"
                                                 rf"logs-99999\.parquet, row=1, query_id='{qid}'"):
        validate_logs(scan_logs(tmp_path))


def test_since_and_max_queries_from_config_and_command_line(gen, data, tmp_path):
    """The job's logs config and every command take the window and the cap; both keep whole queries."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.config import LogsConfig
    from pipelines.prepare import load_routing_data

    since = datetime(2025, 4, 1, tzinfo=timezone.utc)
    expected = int((data.timestamps >= np.datetime64(since.replace(tzinfo=None))).sum())
    assert 0 < expected < QUERIES
    windowed, stats = load_routing_data(LogsConfig(path=str(gen.out), since="2025-04-01"))
    assert windowed.n_queries == stats.queries == expected
    capped, _ = load_routing_data(LogsConfig(path=str(gen.out), since="2025-04-01", max_queries=500))
    assert capped.n_queries == 500 and set(capped.query_ids) <= set(windowed.query_ids)
    # a kept query keeps every model's answer: same cells as in the full data
    full_rows = np.searchsorted(data.query_ids, capped.query_ids)
    assert (capped.mask == data.mask[full_rows]).all()

    out = tmp_path / "summary.json"
    result = CliRunner().invoke(app, ["summary", str(gen.out), "--since", "2025-04-01", "--max-queries", "500",
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    import json

    assert json.loads(out.read_text())["queries"] == 500
    bad = CliRunner().invoke(app, ["summary", str(gen.out), "--since", "last tuesday"])
    assert bad.exit_code != 0 and "since" in bad.output


@pytest.mark.parametrize("order", ["model", "random"])
def test_the_same_logs_in_another_row_order_give_the_same_routing_data(gen, data, tmp_path, order):
    """Rows grouped by model (one file per model) or scattered at random: the same counts, the same matrices,
    prompts, tasks and timestamps per query; invalid rows still named by their file and row."""
    other = generate(tmp_path / order, QUERIES, MODELS, seed=3, order=order)
    assert other.files == (MODELS if order == "model" else gen.files)
    lf_other = scan_logs(other.out)
    stats = validate_logs(lf_other, source=other.out)
    assert (stats.rows, stats.queries, stats.duplicate_rows) == (gen.rows, QUERIES, gen.duplicate_rows)
    got = labels.build_routing_data(lf_other)
    np.testing.assert_array_equal(got.query_ids, data.query_ids)
    np.testing.assert_array_equal(got.prompts, data.prompts)
    np.testing.assert_array_equal(got.mask, data.mask)
    np.testing.assert_array_equal(np.nan_to_num(got.scores, nan=-1), np.nan_to_num(data.scores, nan=-1))
    np.testing.assert_allclose(np.nan_to_num(got.costs, nan=-1), np.nan_to_num(data.costs, nan=-1))
    np.testing.assert_array_equal(got.tasks, data.tasks)
    np.testing.assert_array_equal(got.timestamps, data.timestamps)
    bad = generate(tmp_path / f"{order}-bad", 4_000, 4, seed=5, invalid_rate=0.002, order=order)
    first_file, first_row = bad.invalid_examples[0]
    with pytest.raises(LogValidationError) as err:
        validate_logs(scan_logs(bad.out), source=bad.out)
    assert f"row={first_row}," in str(err.value) and err.value.file == first_file
