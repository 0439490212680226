"""Does a router trained on one machine route the same on another? Routing under embedding perturbations.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_portability.py [--families ridge,knn,...]

The int8 ONNX embedder is built per machine and onnxruntime picks its kernels by CPU (AVX2, AVX-512,
VNNI), so the same prompt's vector differs slightly between CPUs. This machine cannot switch its
kernels off, so the difference is bounded from both sides instead: routers of each family are fitted on
the bundled sample's training split (int8 vectors), then route its held-out prompts (1) from the same
int8 vectors, (2) from vectors moved by Gaussian noise of 1e-4 / 1e-3 / 1e-2 per coordinate, and (3) from
the fp32 ONNX model's vectors (another kernel family: far larger a change than two int8 CPUs make).
Reported per family: the share of held-out prompts routed to another model, at lam 0 (quality) and at the
lam that routes about half the prompts away from the dearest model, and the largest vector difference.
Writes the ``portability`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_routers import CACHE  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402
from pipelines.config import SAMPLE_LOGS  # noqa: E402
from router.data.labels import build_routing_data  # noqa: E402
from router.data.scan import scan_logs  # noqa: E402
from router.embed import Embedder, embed_with_cache  # noqa: E402
from router.evaluation.splits import split_queries  # noqa: E402
from router.routers import make_router  # noqa: E402

NOISE = (1e-4, 1e-3, 1e-2)


def half_lam(router, X: np.ndarray) -> float:
    """The lam at which about half the prompts leave the dearest model (a cost-aware operating point)."""
    dear = int(np.argmax(router.model_costs_))
    for lam in np.geomspace(1e-2, 1e6, 80):
        if (router.route(X, lam=lam) != dear).mean() >= 0.5:
            return float(lam)
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="ridge,knn,logistic,lgbm,mf,irt,classifier")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    data = build_routing_data(scan_logs(SAMPLE_LOGS))
    split = split_queries(data, test_size=0.3, seed=0)
    int8 = Embedder(backend="onnx-int8", show_progress=False)
    X, _ = embed_with_cache(int8, data.prompts, CACHE)
    Xte = X[split.test]
    fp32, _ = embed_with_cache(Embedder(backend="onnx", show_progress=False), data.prompts[split.test], CACHE)
    rng = np.random.default_rng(0)
    variants = {f"noise {s:g}": Xte + s * rng.standard_normal(Xte.shape).astype(np.float32) for s in NOISE}
    variants["fp32 ONNX"] = fp32
    lines = [
        "## Portability: routing from slightly different vectors",
        "",
        f"Command: `OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_portability.py --families "
        f"{args.families}` on {machine()}. Routers fitted on the bundled sample's training split "
        f"({len(split.train):,} queries, int8 vectors) route its {len(split.test):,} held-out prompts from "
        "perturbed vectors; each cell: the share of prompts routed to another model than from the int8 "
        "vectors, at lam 0 / at the lam that moves half the prompts off the dearest model. Largest coordinate "
        "change: " + ", ".join(f"{k} {np.abs(v - Xte).max():.2g}" for k, v in variants.items()) + ".",
        "",
        "| family | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for family in args.families.split(","):
        router = make_router(family).fit(X[split.train], data.scores[split.train], data.costs[split.train],
                                          data.mask[split.train])
        lams = (0.0, half_lam(router, Xte))
        base = [router.route(Xte, lam=lam) for lam in lams]
        cells = []
        for V in variants.values():
            moved = [(router.route(V, lam=lam) != b).mean() for lam, b in zip(lams, base)]
            cells.append(" / ".join(f"{m:.2%}" for m in moved))
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    publish("portability", "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
