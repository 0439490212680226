"""Scale: ingest -> validate -> labels on generated logs of 1M and 10M rows, in bounded memory.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 100000 1000000] [--models 10] [--cache /tmp/router-scale]

For each size (queries; rows = queries x models, less missing cells, plus duplicates) the logs are
generated once by ``benchmarks/generate_logs.py`` (cached under ``--cache``, reused while the
manifest matches), then one fresh Python process runs ``scan_logs`` -> ``validate_logs`` ->
``build_routing_data`` on the directory of Parquet shards. Wall time is that child's, per step
and in total; peak RSS is the child's ``ru_maxrss`` (``RUSAGE_CHILDREN``), so the parent's memory
and the generator's are not counted. Writes its table to benchmarks/RESULTS.md (section "scale").
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.generate_logs import ORDERS, generate, read_manifest  # noqa: E402
from benchmarks.results import machine, publish  # noqa: E402

LIMIT_GIB = 2.0


def _child(source: str) -> None:
    """Run in the fresh process: the three steps, timed; one JSON line on stdout."""
    import polars as pl

    from router.data.scan import scan_logs
    from router.data.labels import build_routing_data
    from router.data.validate import validate_logs

    t0 = time.perf_counter()
    lf = scan_logs(source)
    t1 = time.perf_counter()
    stats = validate_logs(lf, source=source)
    t2 = time.perf_counter()
    data = build_routing_data(lf)
    t3 = time.perf_counter()
    print(json.dumps({
        "scan_s": t1 - t0, "validate_s": t2 - t1, "labels_s": t3 - t2, "total_s": t3 - t0,
        "rows": stats.rows, "queries": stats.queries, "models": stats.models, "duplicates": stats.duplicate_rows,
        "missing_scores": stats.missing_scores, "files": stats.files, "n_queries": data.n_queries,
        "observed": int(data.mask.sum()), "polars": pl.__version__,
        "threads": pl.thread_pool_size(),
    }))


def run_once(source: str) -> dict:
    """One fresh interpreter on ``source``; adds its wall time and peak RSS (GiB).

    ``os.wait4`` gives the rusage of that one child, so its ``ru_maxrss`` is its own peak (not the
    maximum over every child this process ever waited for, as ``RUSAGE_CHILDREN`` would be).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, __file__, "--child", source], stdout=out, stderr=err, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"child failed ({proc.returncode}) on {source}:\n{err.read()[-4000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20  # Linux reports KiB
    return result


def ensure_logs(cache: Path, queries: int, models: int, seed: int, order: str = "query") -> tuple[Path, object]:
    out = cache / (f"q{queries}-m{models}-s{seed}" + ("" if order == "query" else f"-{order}"))
    manifest = read_manifest(out)
    if manifest is None or (manifest.queries, manifest.models, manifest.seed) != (queries, models, seed) \
            or manifest.invalid_rows or manifest.options.get("order", "query") != order:
        print(f"generating {queries:,} queries x {models} models ({order} order) into {out} ...", file=sys.stderr)
        manifest = generate(out, queries, models, seed, order=order)
    return out, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="queries per run")
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--orders", nargs="+", choices=ORDERS, default=list(ORDERS),
                    help="row orders: query (a query's rows together), model (one file per model), random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/tmp/router-scale", help="where generated logs are kept")
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (the fastest is shown)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return

    rows = []
    for queries, order in [(q, o) for q in sorted(args.sizes) for o in args.orders]:
        source, manifest = ensure_logs(Path(args.cache), queries, args.models, args.seed, order)
        runs = []
        for _ in range(args.repeat):
            runs.append(run_once(str(source)))
            r = runs[-1]
            print(f"{queries:,} queries, {order} order: {r['rows']:,} rows, {r['total_s']:.1f}s, peak {r['peak_rss_gib']:.2f} GiB",
                  file=sys.stderr)
        best = min(runs, key=lambda r: r["total_s"])
        best["peak_rss_gib"] = max(r["peak_rss_gib"] for r in runs)
        assert best["rows"] == manifest.rows and best["duplicates"] == manifest.duplicate_rows, (best, manifest)
        assert best["queries"] == manifest.queries and best["missing_scores"] == manifest.missing_scores
        rows.append((manifest, best))

    load = os.getloadavg()[0]
    command = "`.venv/bin/python benchmarks/bench_scale.py " + " ".join(
        ["--sizes", *map(str, args.sizes), "--models", str(args.models), "--orders", *args.orders,
         "--seed", str(args.seed)]
        + (["--repeat", str(args.repeat)] if args.repeat > 1 else [])) + "`"
    lines = [
        "## Scale: ingest -> validate -> labels, streaming (generated Parquet logs)",
        "",
        f"Command: {command} on {machine()}, polars {rows[0][1]['polars']}. Logs from "
        "`benchmarks/generate_logs.py` (seed "
        f"{args.seed}; ~1% exact duplicate rows, 5% of queries missing some models, 0.1% empty scores, "
        "cost, task and timestamp columns; distinct prompts). Row orders: `query` (Parquet shards of ~125k "
        "queries, a query's rows together, by time), `model` (one file per model, as when each model's "
        "evaluation run is logged on its own: every query's rows spread over all files), `random` (rows "
        "scattered at random over as many files as `query` has shards). Each size and order runs in a fresh "
        "process: `scan_logs(dir)` -> `validate_logs` -> `build_routing_data`; peak RSS is that process's "
        f"`ru_maxrss` (fastest of the runs shown, largest peak). Generation time is the generator's own "
        f"run (cached afterwards). Target: peak RSS < {LIMIT_GIB:g} GiB at 10M rows in every order.",
        "",
        "| rows | queries x models | order | files | mean prompt chars | generate s | validate s | labels s "
        "| total s | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in rows:
        lines.append(
            f"| {r['rows']:,} | {m.queries:,} x {m.models} | {m.options.get('order', 'query')} | {m.files} | "
            f"{m.mean_prompt_chars:.0f} | {m.seconds:.0f} | {r['validate_s']:.1f} | {r['labels_s']:.1f} | {r['total_s']:.1f} | {r['peak_rss_gib']:.2f} |"
        )
    lines += ["", f"Load average when the table was written: {load:.1f} on {os.cpu_count()} cores"
              + (" (other work was running: timings are noisy, memory is not)." if load > 1.5 else ".")]
    text = "\n".join(lines)
    publish("scale", text, write=not args.no_write)


if __name__ == "__main__":
    main()
