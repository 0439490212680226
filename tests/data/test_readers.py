"""Each adapter on real files: long (JSONL/CSV/Parquet, plain and gzip, glob, directory), wide
(RouterBench's layout, MMLU-Pro with a separate questions table), pairwise, and the price table.
All of them are committed under tests/fixtures (see its README for sources and licenses)."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import polars as pl
import pytest

from router.data.readers.pairwise import scan_pairwise_pairs
from router.data.readers.prices import load_prices
from router.data.readers.wide import WideSpec
from router.data.scan import scan_logs
from router.data import labels
from router.data import schema as S
from router.data.validate import validate_logs
from tests.conftest import FIXTURES, MMLU_SPEC, NQ_SAMPLE


@pytest.fixture(scope="module")
def nq_frame() -> pl.DataFrame:
    return pl.read_ndjson(NQ_SAMPLE)


def _matrices(source, **kw) -> labels.RoutingData:
    lf = scan_logs(source, **kw)
    validate_logs(lf)
    return labels.build_routing_data(lf)


def test_long_jsonl_sample(nq):
    assert nq.n_queries == 500 and nq.n_models == 6
    assert nq.mask.all()
    assert nq.has_cost and (nq.costs > 0).all()
    assert set(nq.tasks) == {"nq"}


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "jsonl.gz", "parquet"])
def test_long_formats_give_identical_matrices(tmp_path, nq_frame, nq, fmt):
    path = tmp_path / f"logs.{fmt}"
    if fmt == "csv":
        nq_frame.write_csv(path)
    elif fmt == "parquet":
        nq_frame.write_parquet(path)
    else:
        raw = tmp_path / "raw"
        (nq_frame.write_csv if fmt.startswith("csv") else nq_frame.write_ndjson)(raw)
        with open(raw, "rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
    got = _matrices(path)
    assert got.models == nq.models
    np.testing.assert_array_equal(got.query_ids, nq.query_ids)
    np.testing.assert_allclose(got.scores, nq.scores)
    np.testing.assert_allclose(got.costs, nq.costs)


def test_glob_and_directory_concatenate_files(tmp_path, nq_frame, nq):
    half = nq_frame.height // 2
    nq_frame[:half].write_ndjson(tmp_path / "part-1.jsonl")
    nq_frame[half:].write_parquet(tmp_path / "part-2.parquet")
    (tmp_path / "notes.txt").write_text("not a log file")
    by_dir = _matrices(tmp_path)
    by_glob = _matrices(str(tmp_path / "part-*"))
    for got in (by_dir, by_glob):
        assert got.n_queries == 500
        np.testing.assert_allclose(got.scores, nq.scores)


def test_optional_columns_are_carried(tmp_path, nq_frame):
    extra = nq_frame.with_columns(
        pl.lit("2026-11-01T12:00:00Z").alias("timestamp"),
        pl.lit(120).alias("latency_ms"),
        pl.when(pl.col("query_id").str.extract(r"(\d+)").cast(pl.Int64) < 400)
        .then(pl.lit("train")).otherwise(pl.lit("TEST")).alias("split"),
    )
    extra.write_csv(tmp_path / "logs.csv")
    lf = scan_logs(tmp_path / "logs.csv")
    schema = lf.collect_schema()
    assert schema[S.TIMESTAMP] == pl.Datetime("us", "UTC")
    assert schema[S.LATENCY_MS] == pl.Float64
    data = labels.build_routing_data(lf)
    assert sorted(np.unique(data.splits)) == ["test", "train"]  # normalised to lower case
    assert (data.splits == "train").sum() == 400
    assert str(data.timestamps[0]).startswith("2026-11-01T12:00")


def test_wide_routerbench_layout_with_costs_and_split_from_file_names(nq):
    """RouterBench's layout (unnamed index column as id, eval_name, <model>|total_cost, an oracle
    column) on tests/fixtures/wide_nq: 200 of the bundled NQ queries, nq_train.csv / nq_test.csv."""
    data = _matrices(FIXTURES / "wide_nq", wide=WideSpec(id_column=""))
    assert data.n_queries == 200 and data.n_models == 6 and data.models == nq.models
    assert "google/gemma-2-27b-it" in data.models and "oracle_model_to_route_to" not in data.models
    assert dict(zip(*np.unique(data.splits, return_counts=True))) == {"test": 60, "train": 140}
    assert set(np.unique(data.tasks)) == {"nq"}
    test = data.subset(data.splits == "test")
    gemma = data.models.index("google/gemma-2-27b-it")
    means = labels.model_means(test.scores, test.mask)
    assert int(np.argmax(means)) == gemma and means[gemma] == pytest.approx(0.3830, abs=1e-3)
    assert np.nanmean(test.costs[:, gemma]) == pytest.approx(3.193e-5, abs=1e-8)
    # Like RouterBench, some scores are empty (2 whole queries + 4 cells): masked and counted, not dropped
    assert (~data.mask).sum() == 16 and (~data.mask.any(axis=1)).sum() == 2
    # every scored cell is the bundled long sample's (the wide files are a pivot of the same logs)
    row_of = {q: i for i, q in enumerate(nq.query_ids)}
    same = nq.subset(np.array([row_of[f"nq-{q}"] for q in data.query_ids]))
    assert list(data.prompts) == list(same.prompts)
    np.testing.assert_array_equal(data.scores[data.mask], same.scores[data.mask])
    np.testing.assert_allclose(data.costs[data.mask], same.costs[data.mask], rtol=1e-12)


def test_wide_with_separate_questions_file(mmlu_small):
    assert mmlu_small.n_queries == 300 and mmlu_small.n_models == 31
    assert "gpt4o_repo_json" in mmlu_small.models
    assert mmlu_small.tasks is not None and len(set(mmlu_small.tasks)) > 5
    assert all(isinstance(p, str) and len(p) > 10 for p in mmlu_small.prompts)
    assert 0 < (~mmlu_small.mask).sum() < 100  # empty cells = no record for that model


def test_wide_mmlu_pro_reproduces_fixture_figures():
    """The figures in tests/fixtures/README.md, through validation and the explicit wide format."""
    data = _matrices(FIXTURES / "mmlu_pro" / "correct_wide.csv", format="wide", wide=MMLU_SPEC)
    complete = data.select_models(data.complete_models())
    assert data.n_queries == 300 and data.n_models == 31 and complete.n_models == 28
    # DeepSeek-Coder-V2 has no record for 34 of the 300 questions: not complete
    assert "DeepSeek-Coder-V2_5shots" in data.models and "DeepSeek-Coder-V2_5shots" not in complete.models
    means = labels.model_means(complete.scores, complete.mask)
    assert complete.models[int(np.argmax(means))] == "gpt4o_repo_json"
    assert means.max() == pytest.approx(229 / 300)
    assert np.mean(labels.oracle_scores(complete.scores, complete.mask)) == pytest.approx(0.95)


def test_pairwise_preferences_become_win_scores():
    path = FIXTURES / "pairwise_mmlu_anatomy.csv"
    pairs = scan_pairwise_pairs(path)
    assert pairs.height == 135
    data = _matrices(path)  # auto-detected as pairwise
    assert data.n_queries == 135 and data.models == ("gpt-4-1106-preview", "mistralai/Mixtral-8x7B-Instruct-v0.1")
    # win = 1, tie = 0.5 each, both wrong = 0 each: the mean win score is derivable by hand
    winner = pl.read_csv(path)["winner"]  # model_a = Mixtral, model_b = GPT-4
    count = {w: int((winner == w).sum()) for w in ("model_a", "model_b", "tie", "tie (bothbad)")}
    # RouteLLM's logged correctness: GPT-4 alone right on 26, Mixtral alone on 5, both on 84, neither on 20
    assert count == {"model_a": 5, "model_b": 26, "tie": 84, "tie (bothbad)": 20}
    expected_gpt4 = (count["model_b"] + 0.5 * count["tie"]) / 135
    expected_mixtral = (count["model_a"] + 0.5 * count["tie"]) / 135
    np.testing.assert_allclose(labels.model_means(data.scores, data.mask), [expected_gpt4, expected_mixtral])


def test_pairwise_rejects_unknown_winner(tmp_path):
    bad = pl.read_csv(FIXTURES / "pairwise_mmlu_anatomy.csv").with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("gpt-5")).otherwise(pl.col("winner")).alias("winner"))
    bad.write_csv(tmp_path / "prefs.csv")
    with pytest.raises(S.LogValidationError, match=r"(?s)prefs\.csv.*'winner'.*unrecognised winner.*row=8.*gpt-5"):
        scan_logs(tmp_path / "prefs.csv")


def test_price_table_costs_token_counts(tmp_path, nq_frame):
    prices = load_prices(FIXTURES / "llmrouter_default_llm.json")  # LLMRouter's own table
    assert prices["qwen/qwen2.5-7b-instruct"] == (0.2, 0.2)  # by full name and short key
    assert prices["qwen2.5-7b-instruct"] == (0.2, 0.2)
    logs = nq_frame.head(12).drop("cost").with_columns(
        pl.lit(1000).alias("input_tokens"), pl.lit(500).alias("output_tokens"))
    # one row keeps an explicit cost, which the price table must not override
    logs = logs.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(0.5).otherwise(None).alias("cost"))
    logs.write_parquet(tmp_path / "tok.parquet")
    out = scan_logs(tmp_path / "tok.parquet", prices=prices).collect()
    row = out.filter(pl.col("model") == "qwen/qwen2.5-7b-instruct", pl.col(S.SOURCE_ROW) != 1)
    assert row["cost"][0] == pytest.approx((1000 * 0.2 + 500 * 0.2) / 1e6)
    assert out.filter(pl.col(S.SOURCE_ROW) == 1)["cost"][0] == 0.5
    unpriced = out.filter(~pl.col("model").is_in(list(prices)))
    assert unpriced["cost"].null_count() == unpriced.height  # unknown model: cost stays unknown


def test_price_table_yaml_and_errors(tmp_path):
    (tmp_path / "p.yaml").write_text("m1: {input: 1.5, output: 3}\n")
    assert load_prices(tmp_path / "p.yaml") == {"m1": (1.5, 3.0)}
    (tmp_path / "bad.json").write_text(json.dumps({"m1": {"input": "cheap"}}))
    with pytest.raises(S.LogValidationError, match=r"bad\.json.*m1.*no numeric input/output price"):
        load_prices(tmp_path / "bad.json")


def test_missing_path_is_named(tmp_path):
    with pytest.raises(S.LogValidationError, match="nowhere.jsonl: no such file"):
        scan_logs(tmp_path / "nowhere.jsonl")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(S.LogValidationError, match="matched no log files"):
        scan_logs(tmp_path / "empty_dir")
