"""Routing latency of a loaded (exported) router on this CPU.

    .venv/bin/python benchmarks/bench_latency.py [--model models/nq-sample-router/champion]

Trains the default job first if the exported model folder does not exist. Measures: time from
``router.load()`` to the first answer; single-prompt p50/p99 end to end, split into embedding and
head; prompts/s for batches of 64 and 1,024 (embedding vs head). Writes benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import machine, publish  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "nq-sample-router" / "champion"))
    ap.add_argument("--single", type=int, default=300, help="single-prompt calls to time")
    args = ap.parse_args()
    questions = shared_data("mmlu_pro", "questions.csv.gz")  # checked before the sample router is trained
    if not (Path(args.model) / "MLmodel").exists():
        subprocess.run([str(Path(sys.executable).with_name("router")), "train"], check=True)
    prompts = pl.read_csv(questions).sample(1024, seed=1)["question"].to_list()

    t0 = time.perf_counter()
    import router

    service = router.load(args.model)
    service.route(prompts[:1])
    load_to_first = time.perf_counter() - t0

    emb_t, head_t, total_t = [], [], []
    for i in range(args.single):
        p = [prompts[i % len(prompts)]]
        a = time.perf_counter()
        X = service.embed(p)
        b = time.perf_counter()
        service.choose(service.head.predict_scores(X), service.operating_point())
        c = time.perf_counter()
        emb_t.append(b - a), head_t.append(c - b), total_t.append(c - a)
    ms = lambda xs, q: 1e3 * float(np.percentile(xs, q))  # noqa: E731

    batch_rows = []
    for size in (64, 1024):
        batch = prompts[:size]
        a = time.perf_counter()
        X = service.embed(batch)
        b = time.perf_counter()
        reps = max(1, 20000 // size)  # the head is fast: repeat it for a measurable time
        for _ in range(reps):
            service.choose(service.head.predict_scores(X), service.operating_point())
        c = time.perf_counter()
        head_s = (c - b) / reps
        batch_rows.append((size, size / (b - a), size / head_s, size / ((b - a) + head_s)))

    head_name = type(service.head).__name__
    lines = [
        "## Routing latency of the loaded router",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_latency.py` on {machine()}; router "
        f"`{args.model}` ({head_name} head, {len(service.models)} models, embedder "
        f"{service.embedder.settings()}); prompts: MMLU-Pro questions.",
        "",
        f"- `router.load()` to first answer: **{load_to_first:.2f} s**",
        "",
        "| single prompt | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| end to end | {ms(total_t, 50):.2f} | {ms(total_t, 99):.2f} |",
        f"| embedding | {ms(emb_t, 50):.2f} | {ms(emb_t, 99):.2f} |",
        f"| head + decision | {ms(head_t, 50):.3f} | {ms(head_t, 99):.3f} |",
        "",
        "| batch | embedding prompts/s | head prompts/s | end to end prompts/s |",
        "|---|---|---|---|",
        *[f"| {n:,} | {e:,.0f} | {h:,.0f} | {t:,.0f} |" for n, e, h, t in batch_rows],
    ]
    text = "\n".join(lines)
    publish("latency", text)


if __name__ == "__main__":
    main()
