"""Every validation error names the file, the column and offending rows, on real rows made bad."""

from __future__ import annotations

import polars as pl
import pytest

from router.data.scan import scan_logs
from router.data.schema import LogValidationError
from router.data.validate import validate_logs
from tests.conftest import NQ_SAMPLE


@pytest.fixture()
def rows() -> pl.DataFrame:
    return pl.read_ndjson(NQ_SAMPLE).head(60)


def _check(tmp_path, df: pl.DataFrame, name: str = "logs.csv"):
    path = tmp_path / name
    (df.write_parquet if name.endswith(".parquet") else df.write_csv)(path)
    return validate_logs(scan_logs(path), source=str(path))


def test_valid_rows_pass_and_are_counted(tmp_path, rows):
    stats = _check(tmp_path, rows)
    assert (stats.rows, stats.queries, stats.models, stats.missing_scores, stats.duplicate_rows) == (60, 10, 6, 0, 0)


def test_missing_required_column(tmp_path, rows):
    with pytest.raises(LogValidationError, match=r"logs\.csv, column 'score': missing required column 'score'"):
        _check(tmp_path, rows.drop("score"))


def test_non_numeric_score_names_row(tmp_path, rows):
    bad = rows.with_columns(pl.col("score").cast(pl.String))
    bad = bad.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("n/a")).otherwise(pl.col("score"))
                           .alias("score"))
    with pytest.raises(LogValidationError) as err:
        _check(tmp_path, bad)
    msg = str(err.value)
    assert "logs.csv" in msg and "column 'score'" in msg and "non-numeric score (1 row)" in msg
    assert "row=5" in msg and "query_id='nq-0'" in msg and "expected a number" in msg


def test_nan_score(tmp_path, rows):
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(float("nan")).otherwise(pl.col("score"))
                            .alias("score"))
    with pytest.raises(LogValidationError, match=r"(?s)logs\.parquet, column 'score': NaN score \(1 row\).*row=10"):
        _check(tmp_path, bad, "logs.parquet")


def test_negative_cost(tmp_path, rows):
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(-0.01).otherwise(pl.col("cost")).alias("cost"))
    with pytest.raises(LogValidationError, match=r"(?s)column 'cost': negative cost \(1 row\).*row=3.*cost=-0\.01"):
        _check(tmp_path, bad)


def test_conflicting_duplicates(tmp_path, rows):
    dup = rows.head(1).with_columns((1 - pl.col("score")).alias("score"))
    with pytest.raises(LogValidationError) as err:
        _check(tmp_path, pl.concat([rows, dup]))
    msg = str(err.value)
    assert "duplicate (query_id, model) rows with different scores" in msg and "column 'score'" in msg
    assert "row=1" in msg and "row=61" in msg


def test_identical_duplicates_are_merged_and_counted(tmp_path, rows):
    stats = _check(tmp_path, pl.concat([rows, rows.head(3)]))
    assert stats.duplicate_rows == 3 and stats.rows == 63


def test_query_id_with_two_prompts(tmp_path, rows):
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("a different question"))
                            .otherwise(pl.col("prompt")).alias("prompt"))
    with pytest.raises(LogValidationError, match=r"(?s)column 'prompt': one query_id has different prompts.*"
                                                 r"query_id='nq-0'.*a different question"):
        _check(tmp_path, bad)


def test_empty_input(tmp_path, rows):
    with pytest.raises(LogValidationError, match=r"logs\.parquet: no rows"):
        _check(tmp_path, rows.head(0), "logs.parquet")


def test_unknown_split_value(tmp_path, rows):
    bad = rows.with_columns(pl.lit("validation").alias("split"))
    with pytest.raises(LogValidationError, match=r"column 'split': unknown split.*expected one of train, test, ood"):
        _check(tmp_path, bad)


def test_incomplete_rows_are_masked_not_dropped(tmp_path, rows):
    from router.data.labels import build_routing_data

    sparse = rows.with_columns(pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("score"))
                               .alias("score"))
    path = tmp_path / "sparse.csv"
    sparse.write_csv(path)
    lf = scan_logs(path)
    stats = validate_logs(lf)
    data = build_routing_data(lf)
    assert stats.missing_scores == 9
    assert data.n_queries == 10 and (~data.mask).sum() == 9


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_empty_or_whitespace_prompt_is_refused_with_its_row(tmp_path, rows, blank):
    """Validation said it checked empty prompts but only checked nulls: '' and whitespace passed."""
    qid = rows["query_id"][7]
    bad = rows.with_columns(pl.when(pl.col("query_id") == qid).then(pl.lit(blank)).otherwise(pl.col("prompt"))
                            .alias("prompt"))
    with pytest.raises(LogValidationError, match=r"column 'prompt': empty prompt") as err:
        _check(tmp_path, bad, "logs.parquet")
    assert str(qid) in str(err.value) and "not only whitespace" in str(err.value)


def test_absurd_scores_are_refused_before_training(tmp_path, rows):
    """1e308 is finite, so it passed summary and failed much later inside a fit ('infinite values')."""
    bad = rows.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(1e308).otherwise(pl.col("score")).alias("score"))
    with pytest.raises(LogValidationError, match=r"column 'score': score out of range \(1 row"):
        _check(tmp_path, bad, "logs.parquet")


@pytest.mark.parametrize("bad, shown", [(0.0, "propensity=0.0"), (1.5, "propensity=1.5"), ("n/a", "propensity='n/a'")])
def test_propensity_outside_0_1_names_file_row_and_column(tmp_path, bad, shown):
    rows = pl.read_ndjson(NQ_SAMPLE).head(12).with_columns(pl.lit("0.5").alias("propensity"))
    rows = rows.with_columns(pl.when(pl.int_range(pl.len()) == 6).then(pl.lit(str(bad))).otherwise("propensity")
                             .alias("propensity"))
    path = tmp_path / "logs.csv"
    rows.write_csv(path)
    with pytest.raises(LogValidationError) as err:
        validate_logs(scan_logs(path))
    msg = str(err.value)
    assert "logs.csv" in msg and "column 'propensity'" in msg and "(1 row)" in msg and "row=7" in msg
    assert shown in msg and "(0, 1]" in msg
