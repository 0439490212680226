"""Size of an exported router and the time to load it, each load in a fresh process.

    .venv/bin/python benchmarks/bench_export.py [--model models/nq-sample-router/champion] [--repeat 5]

Trains the NQ sample's job first (`router train --config pipelines/configs/nq_sample.yaml`) if the folder does
not exist.
Reports the folder's size by part (ONNX file, tokenizer and config files, head, MLflow's own
files) and, over ``--repeat`` fresh processes, the time from ``import router`` to the first
answer of ``router.load(folder)``, the peak RSS and how many modules were imported. Writes the
``export`` section of benchmarks/RESULTS.md. Needs nothing beside the checkout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import machine, publish  # noqa: E402

_PROBE = """
import json, resource, sys, time
t = time.perf_counter()
import router
service = router.load(sys.argv[1])
service.route(["who wrote war and peace?"])
seconds = time.perf_counter() - t
heavy = [m for m in ("torch", "mlflow", "polars", "pandas", "sklearn", "dask") if m in sys.modules]
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "modules": len(sys.modules), "heavy": heavy}))
"""


def size_mb(paths) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "nq-sample-router" / "champion"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    folder = Path(args.model)
    if not (folder / "MLmodel").exists():
        subprocess.run([str(Path(sys.executable).with_name("router")), "train", str(ROOT / "data" /
                        "nq_sample.jsonl"), "--config", str(ROOT / "pipelines" / "configs" / "nq_sample.yaml"),
                        "--quiet"], check=True, cwd=ROOT)

    files = [p for p in folder.rglob("*") if p.is_file()]
    onnx = [p for p in files if p.suffix == ".onnx"]
    head = [p for p in files if "head" in p.relative_to(folder).parts]
    embedder = [p for p in files if "embedder" in p.relative_to(folder).parts and p not in onnx]
    rest = [p for p in files if p not in onnx + head + embedder]
    runs = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", _PROBE, str(folder)], capture_output=True, text=True,
                             check=True, cwd=ROOT)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    seconds = np.array([r["seconds"] for r in runs])
    meta = json.loads((folder / "artifacts" / "head" / "router_meta.json").read_text())
    lines = [
        "## Export size and load time",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_export.py --repeat {args.repeat}` on {machine()}; "
        f"router `{folder.name}` ({meta['router']} head, {len(meta['models'])} models, embedder backend "
        f"{meta['embedder']['backend']}). Each load runs in a fresh process: `import router`, "
        "`router.load(folder)` and the first `route()`.",
        "",
        "| part | MB |",
        "|---|---|",
        f"| ONNX embedding model | {size_mb(onnx):.1f} |",
        f"| tokenizer and config files | {size_mb(embedder):.2f} |",
        f"| head (arrays + JSON + LightGBM text) and router_meta.json | {size_mb(head):.2f} |",
        f"| MLflow's files (MLmodel, pyfunc_model.py, environment, input example) | {size_mb(rest):.2f} |",
        f"| **total** | **{size_mb(files):.1f}** |",
        "",
        f"- load to first answer: median **{np.median(seconds):.2f} s** (min {seconds.min():.2f}, "
        f"max {seconds.max():.2f}, {args.repeat} fresh processes)",
        f"- peak RSS after the first answer: {np.median([r['rss_mb'] for r in runs]):.0f} MB; "
        f"modules imported: {runs[0]['modules']:,}; of torch, mlflow, polars, pandas, sklearn, dask: "
        f"{', '.join(runs[0]['heavy']) or 'none'}",
        "",
        "Before this format (pickled head + a full copy of the embedder weights) a version was 145 MB, "
        "91 MB of it `model.safetensors`, which the ONNX backends never read.",
    ]
    text = "\n".join(lines)
    publish("export", text)


if __name__ == "__main__":
    main()
