"""Does the default ``max_seq_length`` (128 tokens) change routing? Paired check on sets with long prompts.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_truncation.py [--sets routerbench,routellm_mmlu,mmlu_pro] \
        [--routers ensemble,lgbm] [--splits 5] [--no-write]

For each set (loaded as in bench_routers.py, queries with every model's score), the default int8
embedder at full length (the model's own 256-token limit) and at the default 128 tokens embed the
same prompts (on-disk embedding cache). Each router family is fitted on the same ``--splits`` random
70/30 query splits for both; gap closed = (routed - best single) / (oracle - best single) on the
test queries, best single chosen on the training queries. The paired difference (128 - full) per
split, its mean and standard deviation say whether truncation moves routing beyond the 0.5-point
bar of benchmarks/bench_embed_speed.py. Token counts use the model's own tokenizer.
Writes the table to benchmarks/RESULTS.md (section truncation) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_routers import CACHE, load  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from router.embed import Embedder, embed_with_cache
from router.embed.embedder import AUTO_MAX_SEQ_LENGTH  # noqa: E402
from router.routers import make_router  # noqa: E402

BAR = 0.005  # gap closed within 0.5 points: the bar for a faster embedding


def token_lengths(prompts: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    from router.embed import default_model_path

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return np.array([len(e.ids) for e in tok.encode_batch(prompts)])


def run_set(name: str, families: list[str], n_splits: int) -> list[str]:
    d = load(name)
    d = d.subset(np.flatnonzero(d.mask.all(axis=1)))
    prompts = list(d.prompts)
    lengths = token_lengths(prompts)
    vectors = {}
    for label, msl in (("full", None), ("128", AUTO_MAX_SEQ_LENGTH)):
        vectors[label], st = embed_with_cache(Embedder(show_progress=False, max_seq_length=msl), prompts, CACHE)
        print(f"{name} {label}: {st.embedded} embedded, {st.reused} cached", flush=True)
    Y, n = d.scores, d.n_queries
    rng = np.random.default_rng(0)
    gaps = {(lab, f): [] for lab in vectors for f in families}
    fit_s = {f: 0.0 for f in families}
    for s in range(n_splits):
        perm = rng.permutation(n)
        test, train = np.sort(perm[: int(0.3 * n)]), np.sort(perm[int(0.3 * n):])
        best = int(np.argmax(Y[train].mean(axis=0)))
        best_q, oracle_q = Y[test, best].mean(), Y[test].max(axis=1).mean()
        for lab, X in vectors.items():
            for f in families:
                t = time.perf_counter()
                router = make_router(f).fit(X[train], Y[train], mask=np.ones(Y[train].shape, dtype=bool))
                fit_s[f] += time.perf_counter() - t
                routed = Y[test, np.argmax(router.predict_scores(X[test]), axis=1)].mean()
                gaps[(lab, f)].append((routed - best_q) / (oracle_q - best_q))
        print(f"{name} split {s + 1}/{n_splits}: " + ", ".join(
            f"{f} {lab} {gaps[(lab, f)][-1]:+.4f}" for f in families for lab in vectors), flush=True)
    rows = []
    for f in families:
        full, short = np.array(gaps[("full", f)]), np.array(gaps[("128", f)])
        diff = short - full
        ok = "yes" if abs(diff.mean()) <= BAR else ("better" if diff.mean() > 0 else "NO")
        rows.append(f"| {name} | {n:,} x {d.n_models} | {np.median(lengths):.0f} / {np.percentile(lengths, 90):.0f} | "
                    f"{(lengths > AUTO_MAX_SEQ_LENGTH).mean():.1%} / {(lengths > 256).mean():.1%} | {f} | "
                    f"{full.mean():+.4f} | {short.mean():+.4f} | {diff.mean():+.4f} ({diff.std(ddof=1):.4f}) | "
                    f"{diff.min():+.4f} .. {diff.max():+.4f} | {ok} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="routerbench,routellm_mmlu,mmlu_pro")
    ap.add_argument("--routers", default="ensemble,lgbm")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    families = [f for f in args.routers.split(",") if f]
    t = time.perf_counter()
    rows = [r for s in args.sets.split(",") if s for r in run_set(s, families, args.splits)]
    cmd = " ".join(["OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_truncation.py", *sys.argv[1:]])
    text = "\n".join([
        f"## Truncation: default max_seq_length={AUTO_MAX_SEQ_LENGTH} vs full length (256), routing paired",
        "",
        f"Command: `{cmd}` on {machine()}; {time.perf_counter() - t:.0f} s. Default int8 embedder both ways; "
        f"{args.splits} random 70/30 query splits per set, the same for both lengths; gap closed = (routed - "
        "best single) / (oracle - best single); diff = 128 minus full, per split (mean, standard deviation "
        f"over splits); 'within 0.5 pt' = |mean diff| <= {BAR}. Tokens: the model's tokenizer, [CLS]/[SEP] "
        "included.",
        "",
        "| set | queries x models | tokens p50 / p90 | > 128 / > 256 tokens | router | gap closed full | "
        "gap closed 128 | diff mean (sd) | diff range | within 0.5 pt |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ])
    publish("truncation", text, write=not args.no_write)


if __name__ == "__main__":
    main()
