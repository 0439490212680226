"""Does more signal than the sentence embedding help routing? Lexical features stacked with it, measured.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_features.py [--sets zeroeval_small,...] [--no-write]

For each set, the job (``run_experiment``, default candidates plus irt; nested-CV
selection, then the gate) runs twice on the same split: on the embedding alone, and on the
embedding stacked with lexical features of the prompt: character 3-5-gram TF-IDF (hashed, 2^18
buckets, fitted on the training prompts) reduced to 64 dimensions by truncated SVD, plus log
length, digit / upper-case / non-ASCII / punctuation shares and code and math markers; the
lexical block is standardised on the training prompts and scaled to the embedding's norm. Writes
the ``features`` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_peers import load_any  # noqa: E402
from benchmarks.bench_routers import CACHE  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.config import JobConfig, RouterSpec, SelectionConfig  # noqa: E402
from pipelines.experiment import run_experiment, split_data  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402

EXTRA = ("irt",)  # the families not among the defaults but lgbm, which never won alone
_MARKERS = [re.compile(p) for p in (r"\bdef |\breturn\b|\[PYTHON\]|[{};]", r"\\frac|\\sqrt|\$|\^|\\\(|\\\[",
                                      r"\d+\s*[-+*/=]\s*\d+", r"\?\s*$")]


def handmade(prompts) -> np.ndarray:
    """Length, character-class shares and code / math markers, one row per prompt."""
    rows = []
    for p in prompts:
        n = max(len(p), 1)
        rows.append([np.log1p(len(p)), sum(c.isdigit() for c in p) / n, sum(c.isupper() for c in p) / n,
                     sum(ord(c) > 127 for c in p) / n, sum(not c.isalnum() and not c.isspace() for c in p) / n,
                     *(float(bool(m.search(p))) for m in _MARKERS)])
    return np.asarray(rows, dtype=np.float64)


def lexical(train_prompts, all_prompts) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    vec = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2 ** 18, alternate_sign=False)
    tfidf = TfidfTransformer(sublinear_tf=True).fit(vec.transform(train_prompts))
    svd = TruncatedSVD(64, random_state=0).fit(tfidf.transform(vec.transform(train_prompts)))
    dense = svd.transform(tfidf.transform(vec.transform(all_prompts)))
    return np.hstack([dense, handmade(all_prompts)])


def stacked(X: np.ndarray, L: np.ndarray, train: np.ndarray) -> np.ndarray:
    mean, std = L[train].mean(0), L[train].std(0) + 1e-9
    Z = (L - mean) / std
    Z *= np.linalg.norm(X, axis=1).mean() / np.linalg.norm(Z[train], axis=1).mean()  # equal weight to both blocks
    return np.hstack([X, Z]).astype(np.float32)


def run(name: str, embedder: Embedder, folds: int) -> list[str]:
    data, note = load_any(name)
    X, _ = embed_with_cache(embedder, data.prompts, CACHE)
    job = JobConfig(export_router="auto", selection=SelectionConfig(folds=folds))
    job = job.model_copy(update={"routers": job.routers + [RouterSpec(family=f) for f in EXTRA]})
    split = split_data(data, job)
    t = time.perf_counter()
    L = lexical(list(data.prompts[split.train]), list(data.prompts))
    lex_s = time.perf_counter() - t
    rows = []
    for label, feats in (("embedding", X), ("embedding + lexical", stacked(X, L, split.train))):
        t = time.perf_counter()
        exp = run_experiment(data, feats, job, split=split)
        res = exp.fitted[exp.exported].result
        best = max(exp.fitted, key=lambda k: exp.fitted[k].result.quality)
        rows.append(f"| {name} | {label} | {exp.selected} -> {exp.exported} | {res.quality:.4f} | "
                    f"{res.gap_closed:+.1%} | {best} {exp.fitted[best].result.quality:.4f} | "
                    f"{time.perf_counter() - t:.0f} |")
        print(rows[-1], flush=True)
    print(f"  ({name}: lexical features {lex_s:.0f}s; {note})", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="zeroeval_small,theoremqa_no_gpt4,theoremqa,routerbench,nq")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    embedder = Embedder(show_progress=False)
    lines = ["## More signal: lexical features stacked with the embedding", "",
             "| set | features | selected -> shipped | shipped quality | gap closed | held-out best candidate | s |",
             "|---|---|---|---:|---:|---|---:|"]
    for name in args.sets.split(","):
        lines += run(name, embedder, args.folds)
    lines += ["", " ".join(__doc__.split("\n\n")[2].split()), "",
              f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_features.py --sets {args.sets} "
              f"--folds {args.folds}` on {machine()}."]
    body = "\n".join(lines)
    publish("features", body, write=not args.no_write)


if __name__ == "__main__":
    main()
