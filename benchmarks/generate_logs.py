"""Synthetic canonical logs at scale, reproducible from a seed, for the streaming benchmarks and tests.

    .venv/bin/python benchmarks/generate_logs.py --queries 1000000 --models 10 --out /tmp/gen10m --seed 0

Writes long-format Parquet shards ``<out>/logs-00000.parquet ...`` (one row per (query, model)
answer, rows ordered by time) and ``<out>/manifest.yaml`` (JSON, which YAML reads) with what was
made: rows, queries, duplicates, missing cells, invalid rows and where they are.

Prompts recombine real question text (the committed MMLU-Pro fixture and the bundled NQ sample):
an optional lead-in, one base question, sometimes a second question, and a reference number
that makes every prompt distinct; ~300 characters on average with MMLU-Pro's long tail.
Scores are 0/1 from a model-ability vs query-difficulty model; cost is tokens x a per-model
price. Realistic dirt: exact repeated rows, queries some models never answered, rows whose
score is empty (the model errored), and on request invalid rows (negative cost, or NaN score
when there is no cost column). Everything is vectorised per shard (numpy + polars); shard ``k``
depends only on the seed, ``k`` and the options, so the same command writes the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]

MANIFEST = "manifest.yaml"  # not a log suffix, so scanning the directory reads only the shards
GENERATOR_VERSION = 2  # bump when the output for a given seed changes (benchmarks cache on it)

_LEADS = ["", "", "", "Question: ", "Q: ", "Please answer the following. ", "Answer briefly: ",
          "I need help with this: ", "Can you solve this? ", "Think step by step. "]
_JOINS = [" Also: ", " Related question: ", " And separately, ", " Follow-up: "]
_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
_SPAN_S = 180 * 24 * 3600  # the logs cover ~6 months
_ID_MULT, _ID_MOD = 7_919_000_003, 10**10  # idx -> (idx * mult + offset) mod 1e10 is a bijection


@dataclass
class GenSummary:
    """What ``generate`` wrote; the counts are what validation should report on the valid path."""

    out: str
    seed: int
    queries: int
    models: int
    files: int
    rows: int  # all rows written
    cells: int  # distinct (query, model) pairs present
    missing_cells: int  # (query, model) pairs with no row at all
    missing_scores: int  # rows present with an empty score
    duplicate_rows: int  # exact repeats of rows with a score
    invalid_rows: int  # rows made invalid on purpose (--invalid-rate)
    invalid_kind: str | None  # "negative cost" or "NaN score"
    invalid_examples: list[list] = field(default_factory=list)  # [file, 1-based row] of the first few
    mean_prompt_chars: float = 0.0
    columns: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    version: int = GENERATOR_VERSION


def text_pool() -> tuple[pl.Series, pl.Series, pl.Series]:
    """(base questions, their task tags, short questions) from real text committed in this repository:
    the MMLU-Pro test fixture (300 questions, Apache-2.0) and the bundled NQ sample (500 queries, MIT),
    so the generator (and the tests that use it) need nothing beside the checkout."""
    mmlu = pl.read_csv(ROOT / "tests" / "fixtures" / "mmlu_pro" / "questions.csv",
                       columns=["question", "category"]).filter(pl.col("question").str.len_chars() >= 20)
    nq = pl.read_ndjson(ROOT / "data" / "nq_sample.jsonl").select("prompt").unique(
        maintain_order=True)["prompt"].rename("q")
    nq = nq.str.strip_chars().str.slice(0, 1).str.to_uppercase() + nq.str.strip_chars().str.slice(1)
    nq = nq + "?"
    nq = nq.str.replace(r"\?+$", "?")
    base = pl.concat([mmlu["question"].str.strip_chars(), nq])
    tasks = pl.concat([mmlu["category"], pl.Series(["nq"] * nq.len())])
    return base, tasks, nq


def model_names(m: int) -> list[str]:
    return [f"model-{k:02d}" for k in range(m)]


def _shard(k: int, lo: int, hi: int, seed: int, m: int, pool: tuple[pl.Series, pl.Series, pl.Series],
           opts: dict) -> pl.DataFrame:
    """Rows of queries ``lo..hi-1`` (global indices), ordered by timestamp, with a ``_kind`` column."""
    rng = np.random.default_rng([seed, k])
    base, tasks, short = pool
    n = hi - lo
    qidx = np.arange(lo, hi, dtype=np.int64)

    # --- per query: text, task, difficulty, time
    use_nq = rng.random(n) < 0.12  # NQ questions are short: keep them a minority of bases
    b = np.where(use_nq, base.len() - short.len() + rng.integers(0, short.len(), n),
                 rng.integers(0, base.len() - short.len(), n))
    lead = rng.integers(0, len(_LEADS), n)
    has_second = rng.random(n) < 0.45
    second_src = rng.random(n) < 0.5  # second part: an NQ query or (shortened) MMLU question
    sec_idx = np.where(second_src, base.len() - short.len() + rng.integers(0, short.len(), n),
                       rng.integers(0, base.len() - short.len(), n))
    join = rng.integers(0, len(_JOINS), n)
    lower = rng.random(n) < 0.08
    base_text = base.gather(b)
    base_text = base_text.zip_with(pl.Series(~lower), base_text.str.to_lowercase())
    second = base.gather(sec_idx)
    second = second.str.extract(r"(?s)^(.{20,160}?)(?:[.?!]\s|\s\S*$|$)").fill_null(second.str.slice(0, 160))
    ids = (qidx * _ID_MULT + (seed * 1_000_003 + 12_345)) % _ID_MOD
    q = pl.DataFrame({
        "lead": pl.Series(_LEADS).gather(lead),
        "base": base_text,
        "join": pl.Series(_JOINS).gather(join),
        "second": second,
        "has_second": has_second,
        "ref": qidx,
    }).select(
        pl.concat_str(
            pl.col("lead"), pl.col("base"),
            pl.when(pl.col("has_second")).then(pl.col("join") + pl.col("second")).otherwise(pl.lit("")),
            pl.lit(" (ref "), pl.col("ref").cast(pl.String), pl.lit(")"),
        ).alias("prompt")
    )
    prompt = q["prompt"]
    query_id = "q" + pl.Series(ids).cast(pl.String).str.zfill(10)
    task = tasks.gather(b)
    difficulty = rng.normal(0.0, 1.0, n) + np.where(use_nq, -0.3, 0.2)
    q_time = (qidx + rng.random(n)) * (_SPAN_S / opts["queries"])

    # --- per (query, model) cell: present?, score, cost
    ability = np.linspace(-0.8, 1.2, m)
    price = np.geomspace(0.1, 15.0, m)  # $ per million tokens
    rows_q = np.repeat(np.arange(n), m)
    rows_m = np.tile(np.arange(m), n)
    n_missing = np.where(rng.random(n) < opts["missing_rate"], rng.integers(1, max(m, 2), n), 0)
    n_missing = np.minimum(n_missing, m - 1)  # every query keeps at least one row
    rank = np.argsort(rng.random((n, m)), axis=1).argsort(axis=1).ravel()
    present = rank >= n_missing[rows_q]
    logits = 1.7 * (ability[rows_m] - difficulty[rows_q]) + rng.normal(0.0, 0.8, n * m)
    score = (logits > 0).astype(np.float64)
    prompt_tokens = prompt.str.len_chars().to_numpy()[rows_q] / 4.0
    out_tokens = rng.lognormal(5.0, 0.7, n * m) * (1.0 + 0.1 * rows_m)
    cost = np.round((prompt_tokens + out_tokens) * price[rows_m] / 1e6, 9)
    ts = q_time[rows_q] + rng.exponential(2.0, n * m)  # answers arrive a few seconds apart

    keep = np.flatnonzero(present)
    null_score = rng.random(keep.size) < opts["null_score_rate"]
    sc = score[keep]
    # duplicates: exact repeats of scored rows, logged again at the same time (a retried write)
    dup = (~null_score) & (rng.random(keep.size) < opts["duplicate_rate"])
    order = np.concatenate([keep, keep[dup]])
    kind = np.concatenate([np.where(null_score, 1, 0), np.full(int(dup.sum()), 2)]).astype(np.int8)
    score_col = np.concatenate([np.where(null_score, np.nan, sc), sc[dup]])
    rq, rm = rows_q[order], rows_m[order]
    cols = {
        "query_id": query_id.gather(rq),
        "prompt": prompt.gather(rq),
        "model": pl.Series(model_names(m)).gather(rm),
        "score": pl.Series(score_col).fill_nan(None),
    }
    if opts["cost"]:
        cols["cost"] = pl.Series(cost[order])
    if opts["task"]:
        cols["task"] = task.gather(rq)
    if opts["timestamp"]:
        us = (ts[order] * 1e6).astype(np.int64) + int(_START.timestamp()) * 1_000_000
        cols["timestamp"] = pl.Series(us).cast(pl.Datetime("us", "UTC"))
    cols["_kind"] = pl.Series(kind)
    cols["_t"] = pl.Series(ts[order])
    df = pl.DataFrame(cols).sort("_t", "_kind", maintain_order=True).drop("_t")

    if opts["invalid_rate"] > 0:
        bad = (rng.random(df.height) < opts["invalid_rate"]) & (df["_kind"] != 1).to_numpy()
        bad_s = pl.Series(bad)
        if opts["cost"]:
            df = df.with_columns(pl.when(bad_s).then(-pl.col("cost") - 0.001).otherwise(pl.col("cost")).alias("cost"))
        else:
            df = df.with_columns(pl.when(bad_s).then(float("nan")).otherwise(pl.col("score")).alias("score"))
        df = df.with_columns(pl.when(bad_s).then(3).otherwise(pl.col("_kind")).cast(pl.Int8).alias("_kind"))
    return df


ORDERS = ("query", "model", "random")


class _Files:
    """Where generated rows go, by ``order``: "query" writes each generated block as its own file (rows of a
    query together, by time); "model" one file per model (every model's rows together, as when each
    model's evaluation run is logged to its own file); "random" ``n`` files each taking a random share
    of every block, shuffled (a query's rows scattered through the whole stream)."""

    def __init__(self, out: Path, order: str, models: int, n: int, seed: int) -> None:
        self.out, self.order, self.rng = out, order, np.random.default_rng([seed, 7919])
        self.n = {"query": 0, "model": models, "random": n}[order]
        self.writers: dict[int, object] = {}
        self.rows: dict[str, int] = {}  # rows written per file name, for the manifest's row numbers

    def write(self, k: int, df: pl.DataFrame) -> list[tuple[str, pl.DataFrame, int]]:
        """Write block ``k``; returns (file name, part, first row number in that file) per part written."""
        if self.order == "query":
            parts = [(f"logs-{k:05d}.parquet", df)]
        elif self.order == "model":
            parts = [(f"logs-m{j:03d}.parquet", part) for (j,), part in
                     df.with_columns(pl.col("model").str.extract(r"(\d+)$").cast(pl.Int64).alias("_j"))
                     .partition_by("_j", as_dict=True, include_key=False).items()]
        else:
            bucket = pl.Series(self.rng.integers(0, self.n, df.height))
            parts = [(f"logs-r{b:05d}.parquet", part.sample(fraction=1.0, shuffle=True, seed=int(self.rng.integers(2**31))))
                     for (b,), part in df.with_columns(bucket.alias("_b"))
                     .partition_by("_b", as_dict=True, include_key=False).items()]
        written = []
        for name, part in sorted(parts, key=lambda x: x[0]):
            start = self.rows.get(name, 0)
            data = part.drop("_kind")  # bookkeeping of the manifest, not a log column
            if self.order == "query":
                data.write_parquet(self.out / name, row_group_size=128 * 1024)
            else:
                import pyarrow.parquet as pq

                table = data.to_arrow()
                if name not in self.writers:
                    self.writers[name] = pq.ParquetWriter(self.out / name, table.schema)
                self.writers[name].write_table(table, row_group_size=128 * 1024)
            self.rows[name] = start + part.height
            written.append((name, part, start))
        return written

    def close(self) -> int:
        for w in self.writers.values():
            w.close()
        return len(self.rows)


def generate(out: str | Path, queries: int, models: int, seed: int = 0, *, shards: int | None = None,
             duplicate_rate: float = 0.01, missing_rate: float = 0.05, null_score_rate: float = 0.001,
             invalid_rate: float = 0.0, cost: bool = True, task: bool = True, timestamp: bool = True,
             order: str = "query", verbose: bool = False) -> GenSummary:
    """Write ``queries`` x ``models`` logs as Parquet files under ``out`` in ``order`` (``ORDERS``); return
    what was made."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if queries < 1 or models < 1:
        raise ValueError(f"need at least one query and one model, got queries={queries}, models={models}")
    for name, rate in (("duplicate_rate", duplicate_rate), ("missing_rate", missing_rate),
                       ("null_score_rate", null_score_rate), ("invalid_rate", invalid_rate)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate}")
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("logs-*.parquet"):
        old.unlink()
    shards = shards or min(queries, max(4, math.ceil(queries / 125_000)))
    opts = dict(queries=queries, duplicate_rate=duplicate_rate, missing_rate=missing_rate,
                null_score_rate=null_score_rate, invalid_rate=invalid_rate, cost=cost, task=task,
                timestamp=timestamp, order=order)
    files = _Files(out, order, models, shards, seed)
    pool = text_pool()
    bounds = np.linspace(0, queries, shards + 1).astype(np.int64)
    totals = dict(rows=0, missing_scores=0, duplicate_rows=0, invalid_rows=0)
    examples: list[list] = []
    chars = 0
    columns: list[str] = []
    for k in range(shards):
        df = _shard(k, int(bounds[k]), int(bounds[k + 1]), seed, models, pool, opts)
        kinds = df["_kind"].to_numpy()
        totals["rows"] += df.height
        totals["missing_scores"] += int((kinds == 1).sum())
        totals["duplicate_rows"] += int((kinds == 2).sum())
        totals["invalid_rows"] += int((kinds == 3).sum())
        chars += int(df.filter(pl.col("query_id").is_first_distinct())["prompt"].str.len_chars().sum())
        columns = df.drop("_kind").columns
        for name, part, start in files.write(k, df):
            bad = np.flatnonzero(part["_kind"].to_numpy() == 3)[: max(0, 5 - len(examples))]
            examples += [[str(out / name), start + int(r) + 1] for r in bad]
        if verbose:
            print(f"  block {k}: {df.height:,} rows ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        del df
    n_files = files.close()
    cells = totals["rows"] - totals["duplicate_rows"]
    summary = GenSummary(
        out=str(out), seed=seed, queries=queries, models=models, files=n_files, rows=totals["rows"], cells=cells,
        missing_cells=queries * models - cells, missing_scores=totals["missing_scores"],
        duplicate_rows=totals["duplicate_rows"], invalid_rows=totals["invalid_rows"],
        invalid_kind=("negative cost" if cost else "NaN score") if invalid_rate > 0 else None,
        invalid_examples=examples, mean_prompt_chars=chars / queries, columns=columns,
        options={k: v for k, v in opts.items() if k != "queries"} | {"shards": shards},
        seconds=round(time.perf_counter() - t0, 2),
    )
    (out / MANIFEST).write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def read_manifest(out: str | Path) -> GenSummary | None:
    """The summary written with the shards under ``out`` (None when there is none or it is stale)."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    if raw.get("version") != GENERATOR_VERSION:
        return None
    return GenSummary(**raw)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--out", required=True, help="output directory (its logs-*.parquet are replaced)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=None, help="files to write (default: ~125k queries each, >= 4)")
    ap.add_argument("--duplicate-rate", type=float, default=0.01, help="share of scored rows repeated exactly")
    ap.add_argument("--missing-rate", type=float, default=0.05, help="share of queries missing some models")
    ap.add_argument("--null-score-rate", type=float, default=0.001, help="share of rows with an empty score")
    ap.add_argument("--invalid-rate", type=float, default=0.0,
                    help="share of rows made invalid (negative cost; NaN score with --no-cost)")
    ap.add_argument("--order", choices=ORDERS, default="query",
                    help="row order: query (each query's rows together), model (one file per model), random")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--no-task", action="store_true")
    ap.add_argument("--no-timestamp", action="store_true")
    args = ap.parse_args(argv)
    s = generate(args.out, args.queries, args.models, args.seed, shards=args.shards,
                 duplicate_rate=args.duplicate_rate, missing_rate=args.missing_rate,
                 null_score_rate=args.null_score_rate, invalid_rate=args.invalid_rate, cost=not args.no_cost,
                 task=not args.no_task, timestamp=not args.no_timestamp, order=args.order, verbose=True)
    print(f"{s.rows:,} rows ({s.queries:,} queries x {s.models} models; {s.duplicate_rows:,} duplicates, "
          f"{s.missing_cells:,} missing cells, {s.missing_scores:,} empty scores, {s.invalid_rows:,} invalid) "
          f"in {s.files} files under {s.out}; mean prompt {s.mean_prompt_chars:.0f} chars; {s.seconds:.1f}s")


if __name__ == "__main__":
    main()
