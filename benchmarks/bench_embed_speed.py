"""Fast embedding on CPU: naive sentence-transformers vs tuned torch vs ONNX fp32 vs ONNX int8.

    .venv/bin/python benchmarks/bench_embed_speed.py [--n 2000] [--rounds 3] [--latency-n 100]
        [--configs naive,torch-tuned,onnx-fp32,int8-full,int8-default]

Speed: prompts/s on ``--n`` MMLU-Pro questions (sample, seed 0) per configuration. Each
measurement runs in a fresh process (torch's OpenMP threads and onnxruntime's pools interfere when
they share one), best of ``--rounds`` interleaved rounds with the order rotating every round, so a
burst of load from other jobs on the shared cores hits every configuration alike. The tuned torch
settings are picked first by a short threads x batch-size sweep, also in fresh processes.
Latency: p50 of ``--latency-n`` single-prompt calls in the same worker, after the throughput run.
Quality: cosine of each configuration's vectors to the naive torch fp32 vectors (mean, min) on the
same prompts; routing gap closed = (router - best single) / (oracle - best single) on all MMLU-Pro
questions with the models that answered all of them, for a Ridge probe and the project's kNN
router on 5 random 70/30 query splits, each embedding against torch fp32 on the same splits, and a
noise control (torch vectors moved at random as far as int8 moves them).
Writes the tables to benchmarks/RESULTS.md (section embed_speed). ``--configs`` runs a subset of the
configurations (e.g. ``--configs int8-default --rounds 1`` after a change of the int8 recipe): the
routing-quality check still runs (torch fp32 is always its reference), and the result goes to its own
section, embed_speed_subset, clearly labelled, so the full table is never overwritten by partial data.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.results import machine, publish  # noqa: E402
from benchmarks.shared import shared_data  # noqa: E402
from router.embed import Embedder, EmbeddingCache, default_model_path, embed_with_cache  # noqa: E402
from router.embed.embedder import AUTO_MAX_SEQ_LENGTH, DEFAULT_BACKEND, DEFAULT_BATCH_SIZES  # noqa: E402
from router.embed.model_spec import RECIPE_VERSION  # noqa: E402
from router.embed.onnx import available_cores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "bench-embeddings"  # content-hash cache: re-runs skip the routing-set embedding
SWEEP = [(t, b) for t in (1, 2) for b in (8, 32)]  # torch (threads, batch size) candidates for "tuned"
QUALITY_SPLITS = 5  # each split fits the CV-tuned kNN (~10 s on 8k rows)
NOISE_SEEDS = 3  # the control: torch vectors + random noise as far from them as int8 is
MAX_GAP_DELTA = 0.005  # the acceptance bar: gap closed within 0.5 points of torch fp32

NAIVE = {"kind": "naive"}
FULL = {"max_seq_length": None}  # the model's own limit (256 tokens), as the naive encode runs it
INT8 = f"ONNX int8 (1 prompt per call, {available_cores()} workers), full length"
DEFAULT = f"ONNX int8, max_seq_length={AUTO_MAX_SEQ_LENGTH} (the default)"
FAST = {  # name -> Embedder settings; the torch tuned one is added after the sweep
    f"ONNX fp32 (batch {DEFAULT_BATCH_SIZES['onnx']}, {available_cores()} workers), full length":
        {"backend": "onnx", **FULL},
    INT8: {"backend": "onnx-int8", **FULL},
    DEFAULT: {},  # Embedder() as the job builds it
}
# --configs keys -> row names, in table order ("torch-tuned" is named after the sweep picks its settings)
CONFIG_KEYS = {"naive": "naive `SentenceTransformer(path).encode(prompts)`", "torch-tuned": None,
               "onnx-fp32": next(iter(FAST)), "int8-full": INT8, "int8-default": DEFAULT}


def speed_prompts(n: int) -> list[str]:
    return pl.read_csv(shared_data("mmlu_pro", "questions.csv.gz")).sample(n, seed=0)["question"].to_list()


# ------------------------------------------------------------------------------ worker


def worker(spec: dict, texts_file: str, out_file: str, latency_n: int) -> None:
    """One measurement in this fresh process: load, warm up, time the batch, then single prompts."""
    texts = json.loads(Path(texts_file).read_text())
    t = time.perf_counter()
    if spec.get("kind") == "naive":  # what a user writes first: default settings throughout
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(default_model_path()), device="cpu")

        def encode(batch):
            return model.encode(batch, show_progress_bar=False)
    else:
        embedder = Embedder(show_progress=False, **{k: v for k, v in spec.items() if k != "kind"})
        embedder.load()
        encode = embedder.encode
    load_s = time.perf_counter() - t
    encode(texts[:8])  # warm-up
    t = time.perf_counter()
    vectors = np.asarray(encode(texts), dtype=np.float32)
    seconds = time.perf_counter() - t
    ms = []
    for text in texts[:latency_n]:
        t = time.perf_counter()
        encode([text])
        ms.append(1000 * (time.perf_counter() - t))
    np.save(out_file + ".npy", vectors)
    Path(out_file + ".json").write_text(json.dumps({"seconds": seconds, "p50_ms": float(np.median(ms)),
                                                    "load_s": load_s, "load": os.getloadavg()[0]}))


def cold_build(out_file: str) -> None:
    """Worker: build both ONNX files from nothing (an empty cache) in this fresh process."""
    seconds, mb = {}, {}
    for backend in ("onnx", "onnx-int8"):
        t = time.perf_counter()
        encoder = Embedder(backend=backend).load()
        seconds[backend] = time.perf_counter() - t
        mb[backend] = encoder.path.stat().st_size / 1e6
    Path(out_file).write_text(json.dumps({**seconds, "mb": mb}))


def measure_cold_build(tmp: Path) -> dict[str, float]:
    out = tmp / "build.json"
    env = {**os.environ, "ROUTER_ONNX_CACHE": str(tmp / "onnx-cache")}
    subprocess.run([sys.executable, __file__, "--cold-build", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def measure(spec: dict, texts_file: Path, tmp: Path, latency_n: int) -> tuple[dict, np.ndarray]:
    out = tmp / f"run-{time.time_ns()}"
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec), "--texts-file", str(texts_file),
           "--out", str(out), "--latency-n", str(latency_n)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(Path(str(out) + ".json").read_text()), np.load(str(out) + ".npy")


# -------------------------------------------------------------------------------- speed


def tune_torch(texts: list[str], tmp: Path) -> tuple[dict, list[tuple[int, int, float]]]:
    """Best (threads, batch size) for torch on 300 prompts, best of 2 interleaved rounds."""
    texts = texts[:300]
    texts_file = tmp / "sweep.json"
    texts_file.write_text(json.dumps(texts))
    best = {g: 0.0 for g in SWEEP}
    for _ in range(2):
        for t, b in SWEEP:
            res, _ = measure({"backend": "torch", "threads": t, "batch_size": b, **FULL}, texts_file, tmp,
                             latency_n=0)
            best[(t, b)] = max(best[(t, b)], len(texts) / res["seconds"])
    t, b = max(best, key=best.get)
    return {"backend": "torch", "threads": t, "batch_size": b, **FULL}, [(t, b, best[(t, b)]) for t, b in SWEEP]


def speed(configs: dict[str, dict], texts: list[str], rounds: int, latency_n: int, tmp: Path):
    """Per config: prompts/s of each round, best p50 latency, load seconds, vectors of the first round."""
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(texts))
    names = list(configs)
    rates = {n: [] for n in names}
    p50, load_s, vectors = {}, {}, {}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            res, vecs = measure(configs[name], texts_file, tmp, latency_n)
            rates[name].append(len(texts) / res["seconds"])
            p50[name] = min(p50.get(name, np.inf), res["p50_ms"])
            load_s[name] = min(load_s.get(name, np.inf), res["load_s"])
            vectors.setdefault(name, vecs)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{rates[n][-1]:.0f}" for n in names)
              + f" prompts/s (load {os.getloadavg()[0]:.1f})", flush=True)
    return rates, p50, load_s, vectors


# ------------------------------------------------------------------------------ quality


def routing_data():
    from router.data.readers.wide import WideSpec, scan_wide
    from router.data import labels

    spec = WideSpec(id_column="question_id", prompt_column="question", task_column="category",
                            prompts_file=str(shared_data("mmlu_pro", "questions.csv.gz")))
    d = labels.build_routing_data(scan_wide(shared_data("mmlu_pro", "correct_wide.csv.gz"), spec))
    return d.select_models(d.complete_models())


def gap_closed_runs(X: np.ndarray, Y: np.ndarray, splits: list[np.ndarray], alpha: float) -> dict[str, np.ndarray]:
    """Gap closed on each 70/30 split (test rows given) of a Ridge probe on the score matrix and of
    the project's kNN router (``router.routers.KNNRouter``, its default CV grid)."""
    from sklearn.linear_model import Ridge

    from router.routers import make_router

    out = {"ridge": [], "knn": []}
    for test in splits:
        train = np.setdiff1d(np.arange(len(Y)), test)
        best = int(np.argmax(Y[train].mean(axis=0)))  # the single model a user would deploy
        best_q, oracle_q = Y[test, best].mean(), Y[test].max(axis=1).mean()
        ridge = Ridge(alpha=alpha).fit(X[train], Y[train])
        knn = make_router("knn").fit(X[train], Y[train], mask=np.ones(Y[train].shape, dtype=bool))
        preds = {"ridge": ridge.predict(X[test]), "knn": knn.predict_scores(X[test])}
        for name, pred in preds.items():
            routed = Y[test, np.argmax(pred, axis=1)].mean()
            out[name].append((routed - best_q) / (oracle_q - best_q))
    return {k: np.array(v) for k, v in out.items()}


def routing_quality(settings: dict[str, dict], limit: int = 0, noise_like: str | None = INT8):
    """Gap closed per embedding on the same splits (vectors via the on-disk embedding cache).

    ``noise_like``: the row whose mean cosine to torch fp32 the noise control imitates (None: no control).
    Returns (gaps, queries, models, that cosine, ridge alpha).
    """
    d = routing_data()
    if limit:
        d = d.subset(np.sort(np.random.default_rng(0).permutation(d.n_queries)[:limit]))
    prompts = list(d.prompts)
    rng = np.random.default_rng(0)
    n = len(prompts)
    splits = [np.sort(rng.permutation(n)[: int(0.3 * n)]) for _ in range(QUALITY_SPLITS)]
    cache = EmbeddingCache(CACHE)
    vectors = {}
    for name, kwargs in settings.items():
        vectors[name], stats = embed_with_cache(Embedder(show_progress=False, **kwargs), prompts, cache)
        print(f"embedded {name}: {stats.embedded} prompts in {stats.seconds:.0f}s, {stats.reused} cached", flush=True)
    # Ridge's alpha: chosen once, by CV on the torch fp32 training rows of the first split, then kept
    # for every embedding. (Re-choosing it per embedding let one split jump from alpha 31.6 to 10, a
    # hyper-parameter flip worth -0.03 gap closed that says nothing about the vectors.)
    from sklearn.linear_model import RidgeCV

    train0 = np.setdiff1d(np.arange(n), splits[0])
    alpha = float(RidgeCV(alphas=np.logspace(-1, 3, 9)).fit(vectors["torch fp32"][train0], d.scores[train0]).alpha_)
    gaps = {}
    for name, X in vectors.items():
        gaps[name] = gap_closed_runs(X, d.scores, splits, alpha)
        print(f"routing {name}: ridge {gaps[name]['ridge'].mean():.4f}, knn {gaps[name]['knn'].mean():.4f}", flush=True)
    # Control: how much does gap closed move when the vectors move as much as int8 moves them, at random?
    if noise_like is None:
        return gaps, n, d.n_models, float("nan"), alpha
    ref = vectors["torch fp32"]
    target = float(np.mean(np.sum(vectors[noise_like] * ref, axis=1)))
    sigma = np.sqrt((1 / target**2 - 1) / ref.shape[1])  # E[cos] of unit x vs normalize(x + sigma z)
    for seed in range(NOISE_SEEDS):
        noisy = ref + sigma * np.random.default_rng(seed).standard_normal(ref.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        gaps[f"noise {seed}"] = gap_closed_runs(noisy, d.scores, splits, alpha)
    return gaps, n, d.n_models, target, alpha


# ------------------------------------------------------------------------------- report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="prompts for the throughput runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; best of them is reported")
    ap.add_argument("--latency-n", type=int, default=100, help="prompts for the single-prompt latency")
    ap.add_argument("--routing-n", type=int, default=0, help="questions for the routing check (0: all)")
    ap.add_argument("--configs", default=",".join(CONFIG_KEYS),
                    help=f"comma-separated subset of {', '.join(CONFIG_KEYS)} (default: all); a subset is "
                         f"written to the section embed_speed_subset")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cold-build", help=argparse.SUPPRESS)
    ap.add_argument("--texts-file", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker), args.texts_file, args.out, args.latency_n)
    if args.cold_build:
        return cold_build(args.cold_build)
    selected = [k.strip() for k in args.configs.split(",") if k.strip()]
    unknown = sorted(set(selected) - set(CONFIG_KEYS))
    if unknown or not selected:
        ap.error(f"--configs: unknown {', '.join(unknown) or '(empty)'}; valid: {', '.join(CONFIG_KEYS)}")
    subset = set(selected) != set(CONFIG_KEYS)
    command = " ".join(["benchmarks/bench_embed_speed.py", *sys.argv[1:]])
    load_before = os.getloadavg()[0]

    texts = speed_prompts(args.n)
    for backend in ("onnx", "onnx-int8"):  # make sure the ONNX files are in the cache: no run times a build
        Embedder(backend=backend).load()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_s = measure_cold_build(tmp)
        tuned, sweep = tune_torch(texts, tmp) if "torch-tuned" in selected else (None, [])
        configs = {}
        for key in CONFIG_KEYS:  # table order, whatever the order given
            if key not in selected:
                continue
            if key == "torch-tuned":
                name = f"torch tuned ({tuned['threads']} thread(s), batch {tuned['batch_size']}, length-sorted)"
                configs[name] = tuned
            else:
                configs[CONFIG_KEYS[key]] = NAIVE if key == "naive" else FAST[CONFIG_KEYS[key]]
        rates, p50, load_s, vectors = speed(configs, texts, args.rounds, args.latency_n, tmp)
    names = list(configs)
    noise_like = next((name for name in (INT8, DEFAULT) if name in configs), None)
    gaps, n_rout, n_models, int8_cos, alpha = routing_quality(
        {"torch fp32": {"backend": "torch", **FULL}, **{k: v for k, v in configs.items() if k in FAST}}, args.routing_n,
        noise_like)
    torch_gap = gaps["torch fp32"]
    if NAIVE in configs.values():
        ref, ref_name = vectors[CONFIG_KEYS["naive"]], "the naive torch fp32 vectors"
    else:  # the same vectors (torch fp32, the model's own length), from the cache the routing check filled
        ref, _ = embed_with_cache(Embedder(backend="torch", show_progress=False, **FULL), texts, EmbeddingCache(CACHE))
        ref_name = "torch fp32 vectors (sentence-transformers, full length, via the embedding cache)"
    naive_best = max(rates[CONFIG_KEYS["naive"]]) if CONFIG_KEYS["naive"] in rates else None
    rows = []
    for name in names:
        cos = np.sum(vectors[name] * ref, axis=1) / (
            np.linalg.norm(vectors[name], axis=1) * np.linalg.norm(ref, axis=1))
        g = gaps.get(name, torch_gap)  # the torch configs give the torch fp32 vectors (batching doesn't change them)
        d_ridge, d_knn = (g["ridge"] - torch_gap["ridge"]).mean(), (g["knn"] - torch_gap["knn"]).mean()
        ok = max(abs(d_ridge), abs(d_knn)) <= MAX_GAP_DELTA
        rows.append(
            f"| {name} | {max(rates[name]):,.0f} | {np.median(rates[name]):,.0f} | "
            f"{f'{max(rates[name]) / naive_best:.2f}x' if naive_best else 'n/a'} | {p50[name]:.1f} | "
            f"{cos.mean():.4f} / {cos.min():.4f} | "
            f"{g['ridge'].mean():.4f} ({d_ridge:+.4f}) | {g['knn'].mean():.4f} ({d_knn:+.4f}) | "
            f"{'yes' if ok else 'NO'} |")
    if noise_like is not None:
        noise = {k: np.array([(gaps[f"noise {s}"][k] - torch_gap[k]).mean() for s in range(NOISE_SEEDS)])
                 for k in ("ridge", "knn")}
        spread = {k: float(np.std(torch_gap[k] - gaps[noise_like][k], ddof=1)) for k in ("ridge", "knn")}
        noise_text = (
            f"Noise control for the gap-closed differences: the torch fp32 vectors plus random Gaussian noise, "
            f"renormalised, at the mean cosine of '{noise_like}' to them ({int8_cos:.4f}), {NOISE_SEEDS} seeds, "
            f"same splits: ridge {', '.join(f'{x:+.4f}' for x in noise['ridge'])}; kNN "
            f"{', '.join(f'{x:+.4f}' for x in noise['knn'])}. Split-to-split standard deviation of that row's "
            f"difference to fp32: ridge {spread['ridge']:.4f}, kNN {spread['knn']:.4f}.")
    else:
        noise_text = "No int8 configuration selected: no noise control."
    sweep_text = ("torch sentence-transformers, 300 prompts, best of 2 (prompts/s): "
                  + ", ".join(f"{t} thread(s) batch {b}: {r:.0f}" for t, b, r in sweep) + ".") if sweep else ""
    chars = np.mean([len(t) for t in texts])
    load_after = os.getloadavg()[0]
    title = f"Fast embedding on CPU ({args.n:,} MMLU-Pro prompts, mean {chars:.0f} chars, all-MiniLM-L6-v2)"
    lines = [
        f"## SUBSET run: {title}" if subset else f"## {title}",
        "",
        *([f"**Subset of the configurations** ({', '.join(selected)}; {args.rounds} round(s)), written apart from "
           f"the full table (section embed_speed), which this run does not replace: compare rows across the two "
           f"only through their paired differences to torch fp32 (same splits, same seeds).", ""] if subset else []),
        f"Command: `.venv/bin/python {command}` on {machine()}. `router.embed.embedder.DEFAULT_BACKEND = "
        f"{DEFAULT_BACKEND!r}`, ONNX recipe version {RECIPE_VERSION} (`router.embed.model_spec.RECIPE_VERSION`).",
        "",
        f"Other engineers' jobs share these 2 cores (1-min load average {load_before:.1f} at the start, "
        f"{load_after:.1f} at the end, this benchmark's own processes included), so every measurement runs "
        f"in a fresh process and the configurations are interleaved: {args.rounds} rounds, the order "
        f"rotating each round; prompts/s is the best round (median beside it); the ratios between rows are "
        f"the fair comparison. "
        f"Latency: p50 of {args.latency_n} single-prompt calls (best round). Cosine: to {ref_name}"
        f" of the same prompts. Gap closed = (router - best single) / (oracle - best single) "
        f"on all {n_rout:,} MMLU-Pro questions x the {n_models} models that answered all, mean over "
        f"{QUALITY_SPLITS} random 70/30 query splits (sklearn Ridge on the {n_models} scores, alpha {alpha:g} "
        f"chosen once by RidgeCV on torch fp32 and kept for all rows; the project's `KNNRouter` with its "
        f"default CV grid, tuned per row); in brackets the paired difference to torch fp32; 'within 0.5 pt' = both differences "
        f"within {MAX_GAP_DELTA}. First use on a machine (empty ONNX cache, fresh process, imports "
        f"included): fp32 export + fusion {build_s['onnx']:.1f} s, then int8 quantisation (recipe "
        f"{RECIPE_VERSION}) {build_s['onnx-int8']:.1f} s; later loads read the cached file (<1 s). ONNX file sizes: "
        f"{', '.join(f'{b} {mb:.1f} MB' for b, mb in build_s['mb'].items())}.",
        "",
        "| configuration | prompts/s best | median | vs naive | 1-prompt p50 ms | cosine mean / min | "
        "gap closed ridge (diff) | gap closed kNN (diff) | within 0.5 pt |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        noise_text,
        *(["", sweep_text] if sweep_text else []),
    ]
    text = "\n".join(lines)
    publish("embed_speed_subset" if subset else "embed_speed", text, write=not args.no_write)


if __name__ == "__main__":
    main()
