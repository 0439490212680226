"""Rebuild the bundled samples from ../shared/data (run from the repository root).

    python data/make_samples.py

- data/nq_sample.jsonl: LLMRouter's Natural Questions routing logs (MIT), all 500 queries x 6
  models, in the canonical long format (responses dropped; cost converted from upstream's
  micro-dollars to $).
- tests/fixtures/mmlu_pro/: 300 MMLU-Pro questions (Apache-2.0) x 31 models in the wide format
  with the questions in a separate file, as upstream ships them.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]


def nq_sample() -> None:
    rows = json.loads((SHARED / "llmrouter_nq/nq/router_train_data_nq.json").read_text())
    records = [
        {"query_id": f"nq-{r['q_id']}", "prompt": r["query"], "model": model, "score": float(perf),
         # Upstream cost_list is tokens x ($ per million tokens), i.e. micro-dollars: store $.
         "cost": float(cost) * 1e-6, "task": r["source"]}
        for r in rows
        for model, perf, cost in zip(r["llm_name_list"], r["perf_list"], r["cost_list"], strict=True)
    ]
    pl.DataFrame(records).write_ndjson(ROOT / "data/nq_sample.jsonl")


def mmlu_pro_fixture(n: int = 300, seed: int = 0) -> None:
    out = ROOT / "tests/fixtures/mmlu_pro"
    out.mkdir(parents=True, exist_ok=True)
    questions = pl.read_csv(SHARED / "mmlu_pro/questions.csv.gz")
    picked = questions.sample(n, seed=seed).sort("question_id")
    picked.select("question_id", "category", "question").write_csv(out / "questions.csv")
    wide = pl.read_csv(SHARED / "mmlu_pro/correct_wide.csv.gz", infer_schema=False)
    ids = picked["question_id"].cast(pl.String)
    wide.filter(pl.col("question_id").is_in(ids.implode())).write_csv(out / "correct_wide.csv")


def pairwise_fixture() -> None:
    """RouteLLM's MMLU anatomy logs (Apache-2.0) as pairwise preferences: the correct answer wins."""
    weak, strong = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
    df = pl.read_csv(SHARED / "routellm/mmlu/mmlu_anatomy.csv")
    winner = (
        pl.when(pl.col(strong) & ~pl.col(weak)).then(pl.lit("model_b"))
        .when(pl.col(weak) & ~pl.col(strong)).then(pl.lit("model_a"))
        .when(pl.col(weak) & pl.col(strong)).then(pl.lit("tie"))
        .otherwise(pl.lit("tie (bothbad)"))
    )
    df.select("prompt", pl.lit(weak).alias("model_a"), pl.lit(strong).alias("model_b"),
              winner.alias("winner")).write_csv(ROOT / "tests/fixtures/pairwise_mmlu_anatomy.csv")


if __name__ == "__main__":
    nq_sample()
    mmlu_pro_fixture()
    pairwise_fixture()
