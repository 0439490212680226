"""Serving: the slim install's load and routing speed, the gateway's overhead, and `mlflow models serve` beside it.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_serve.py [--workdir DIR] [--repeat 5] [--no-write]

The router is the real job's: `router train` of the NQ sample's job (`pipelines/configs/nq_sample.yaml`) in a
fresh temporary working directory, or the one already trained in ``--workdir``; its
`models/nq-sample-router/champion` is served.
1. The slim install (tests/serve/slim_env.py: only the base dependency closure, `python -I`): over ``--repeat``
   fresh processes the time from `import router` to `router.load` and to the first answer, RSS after the
   load and at peak, modules imported, training-stack modules loaded; the same in the full dev venv; in
   one process, single-prompt `route` latency (300 distinct NQ prompts after 20 warm-ups) and prompts/s
   of 1 and 8 threads routing single prompts (400 calls each, best of 3).
2. The gateway (`router serve` in a slim venv with the `serve` extra) in front of a stub upstream
   (Starlette under uvicorn, fixed chat.completion): POST /v1/chat/completions p50/p99 at 1 and 16
   concurrent clients, direct to the stub and through the gateway (`model: "router"`); /v1/route at c=1.
3. `mlflow models serve` on the same registered router: POST /invocations at c=1, its RSS (process tree).
Everything listens on 127.0.0.1 and is stopped at the end. Writes the ``serve`` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.results import machine, write_section  # noqa: E402
from tests.serve.slim_env import slim_python  # noqa: E402

VENV_BIN = Path(sys.executable).parent
NAME = "nq-sample-router"
HEAVY = ("torch", "mlflow", "polars", "pandas", "sklearn", "dask", "scipy")
TARGETS = {"load": 0.5, "rss": 150.0, "p50": 3.0, "scaling": 2.0}

_LOAD_PROBE = """
import json, sys, time
def status(key):
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
t = time.perf_counter()
import router
service = router.load(sys.argv[1])
load = time.perf_counter() - t
rss = status("VmRSS")
service.route(["who wrote war and peace?"])
first = time.perf_counter() - t
print(json.dumps({"load": load, "first": first, "rss": rss, "peak": status("VmHWM"), "modules": len(sys.modules),
                  "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)

_SPEED_PROBE = """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np, router
service = router.load(sys.argv[1])
prompts = json.load(open(sys.argv[2]))
for p in prompts[:20]:
    service.route([p])
lat = []
for p in prompts[20:320]:
    t = time.perf_counter(); service.route([p]); lat.append(time.perf_counter() - t)
def rate(threads, n=400):
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: service.route([p]), prompts[:threads]))  # start the workers
        cpu, t = sum(os.times()[:2]), time.perf_counter()
        list(pool.map(lambda p: service.route([p]), [prompts[i % len(prompts)] for i in range(n)]))
        wall = time.perf_counter() - t
    return {"rate": n / wall, "cores": (sum(os.times()[:2]) - cpu) / wall}
runs = {1: [], 8: []}
for _ in range(3):
    for k in runs:
        runs[k].append(rate(k))
best = {k: max(v, key=lambda r: r["rate"]) for k, v in runs.items()}
intra_op = service.embedder.load().threads
service = router.load(sys.argv[1], threads=1)  # the same router, one CPU thread per embedding
single = {k: max((rate(k) for _ in range(3)), key=lambda r: r["rate"]) for k in (1, 8)}
print(json.dumps({"lat_ms": (np.array(lat) * 1e3).tolist(), "best": best, "single": single,
                  "all": {k: [r["rate"] for r in v] for k, v in runs.items()}, "intra_op": intra_op}))
"""

_STUB = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
BODY = (b'{"id":"chatcmpl-stub","object":"chat.completion","created":0,"model":"stub","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"Leo Tolstoy."},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}')
async def chat(request):
    await request.body()
    return Response(BODY, media_type="application/json")
async def health(request):
    return Response(b"ok")
app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/health", health)])
"""

_GATEWAY = "import sys; sys.argv[0] = 'router'; from pipelines.cli import app; app()"


def run_json(cmd: list[str], cwd: Path, timeout: float = 300) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1")})
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """VmRSS of process ``pid``, from /proc/<pid>/status."""
    return next(int(line.split()[1]) / 1024 for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:"))


def start(stack: ExitStack, cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group; on exit SIGTERM the group, SIGKILL it after 15 s."""
    out = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop() -> None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        out.close()

    stack.callback(stop)
    return proc


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> float:
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - t
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


async def _load(url: str, bodies: list[dict], concurrency: int, warmup: int) -> np.ndarray:
    """POST each body (``concurrency`` clients on keep-alive connections); latencies in ms of those after warm-up."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        lat: list[float] = []
        queue = iter(enumerate(bodies))

        async def worker() -> None:
            for i, body in queue:
                t = time.perf_counter()
                r = await client.post(url, json=body)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
                if i >= warmup:
                    lat.append(time.perf_counter() - t)
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=600)
    return np.array(lat) * 1e3


def load_test(url: str, make, n: int, concurrency: int, warmup: int = 30) -> dict:
    start_t = time.perf_counter()
    lat = asyncio.run(_load(url, [make(i) for i in range(n + warmup)], concurrency, warmup))
    wall = time.perf_counter() - start_t
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "n": len(lat),
            "rps": (n + warmup) / wall}


def ok(value: float, target: float, below: bool = True) -> str:
    return "met" if (value <= target if below else value >= target) else "**not met**"


def table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(map(str, r)) + " |"
                                                                          for r in rows]


def train(workdir: Path | None, tmp: Path) -> Path:
    if workdir is None:
        workdir = tmp / "job"
        workdir.mkdir()
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlruns.db"}
        t = time.perf_counter()
        subprocess.run([str(VENV_BIN / "router"), "train", str(ROOT / "data" / "nq_sample.jsonl"),
                        "--config", str(ROOT / "pipelines" / "configs" / "nq_sample.yaml"), "--quiet"],
                       cwd=workdir, env=env, check=True, timeout=1800)
        print(f"trained in {workdir} in {time.perf_counter() - t:.0f} s")
    if not (workdir / "models" / NAME / "champion" / "MLmodel").exists():
        raise SystemExit(f"{workdir}: no models/{NAME}/champion: run `router train` there first")
    return workdir


def part_slim(folder: Path, tmp: Path, repeat: int, prompts_file: Path) -> tuple[list[str], dict]:
    slim = slim_python(tmp / "slim")
    cwd = tmp / "cwd"
    cwd.mkdir()
    out = {}
    for label, python in (("slim (base install)", slim), ("full dev venv", Path(sys.executable))):
        runs = [run_json([str(python), "-I", "-c", _LOAD_PROBE, str(folder)], cwd) for _ in range(repeat)]
        out[label] = {k: float(np.median([r[k] for r in runs])) for k in ("load", "first", "rss", "peak", "modules")}
        out[label]["heavy"] = sorted({m for r in runs for m in r["heavy"]})
        out[label]["range"] = (min(r["load"] for r in runs), max(r["load"] for r in runs))
    speed = run_json([str(slim), "-I", "-c", _SPEED_PROBE, str(folder), str(prompts_file)], cwd, timeout=600)
    lat = np.array(speed["lat_ms"])
    s = out["slim (base install)"]
    one, eight = speed["best"]["1"], speed["best"]["8"]
    scaling = eight["rate"] / one["rate"]
    rows = [[label, f"{r['load']:.2f} ({r['range'][0]:.2f}-{r['range'][1]:.2f})", f"{r['first']:.2f}",
             f"{r['rss']:.0f}", f"{r['peak']:.0f}", f"{r['modules']:.0f}", ", ".join(r["heavy"]) or "none"]
            for label, r in out.items()]
    lines = [f"**1. Load and route in-process** (median of {repeat} fresh processes, `python -I`):", ""]
    lines += table(["environment", "load s (min-max)", "first answer s", "RSS after load MB", "peak RSS MB",
                    "modules", f"of {', '.join(HEAVY)}"], rows)
    lines += ["", "Slim install, one process (`service.route([prompt])`, distinct NQ prompts):", ""]
    lines += table(["measure", "value", "target", ""], [
        ["load (import router -> router.load returns)", f"{s['load']:.2f} s", f"<= {TARGETS['load']} s",
         ok(s["load"], TARGETS["load"])],
        ["RSS after load", f"{s['rss']:.0f} MB", f"<= {TARGETS['rss']:.0f} MB", ok(s["rss"], TARGETS["rss"])],
        ["single-prompt latency p50 / p99 (300 calls)",
         f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 99):.2f} ms",
         f"p50 <= {TARGETS['p50']} ms", ok(np.percentile(lat, 50), TARGETS["p50"])],
        ["1 thread (400 calls, best of 3)", f"{one['rate']:.0f} prompts/s ({one['cores']:.2f} cores busy)", "", ""],
        ["8 threads (400 calls, best of 3)", f"{eight['rate']:.0f} prompts/s ({eight['cores']:.2f} cores busy)",
         "", ""],
        ["8 threads / 1 thread", f"{scaling:.2f}x", f">= {TARGETS['scaling']:.0f}x",
         ok(scaling, TARGETS["scaling"], below=False)],
    ])
    s1, s8 = speed["single"]["1"], speed["single"]["8"]
    lines += ["", f"The service's onnxruntime session runs {speed['intra_op']} intra-op threads (one per core), so one "
              f"calling thread already keeps the cores busy. All runs (prompts/s): 1 thread "
              f"{', '.join(f'{x:.0f}' for x in speed['all']['1'])}; 8 threads "
              f"{', '.join(f'{x:.0f}' for x in speed['all']['8'])}. With `router.load(folder, threads=1)` "
              f"(`router serve --threads 1`), one intra-op thread per embedding: 1 thread {s1['rate']:.0f} "
              f"prompts/s ({s1['cores']:.2f} cores busy), 8 threads "
              f"{s8['rate']:.0f} ({s8['cores']:.2f} cores busy), {s8['rate'] / s1['rate']:.2f}x."]
    return lines, {"one": one, "eight": eight, "scaling": scaling, "p50": float(np.percentile(lat, 50))}


def part_gateway(stack: ExitStack, folder: Path, tmp: Path, prompts: list[str], models: list[str],
                 inproc_p50: float) -> tuple[list[str], dict]:
    python = slim_python(tmp / "slim-serve", extras=("serve",))
    work = tmp / "gw"
    work.mkdir()
    (work / "stub.py").write_text(_STUB)
    stub_port, gw_port = free_port(), free_port()
    stub = start(stack, [str(python), "-I", "-m", "uvicorn", "--app-dir", str(work), "stub:app", "--host", "127.0.0.1",
                         "--port", str(stub_port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
                 work, work / "stub.log")
    base = f"http://127.0.0.1:{stub_port}/v1"
    # every router model -> the stub (JSON is YAML)
    (work / "upstreams.yaml").write_text(json.dumps({"models": {m: {"base_url": base} for m in models}}))
    wait_ready(f"http://127.0.0.1:{stub_port}/health", stub, work / "stub.log", 30)
    gw = start(stack, [str(python), "-I", "-c", _GATEWAY, "serve", str(folder), "--upstreams",
                       str(work / "upstreams.yaml"), "--port", str(gw_port)], work, work / "gateway.log")
    ready = wait_ready(f"http://127.0.0.1:{gw_port}/healthz", gw, work / "gateway.log", 120)
    rss_ready = rss_mb(gw.pid)

    def chat(model):
        return lambda i: {"model": model, "messages": [{"role": "user", "content": prompts[i % len(prompts)]}]}

    res = {}
    for c, n in ((1, 300), (16, 1600)):
        res["stub", c] = load_test(f"{base}/chat/completions", chat("stub"), n, c)
        res["gateway", c] = load_test(f"http://127.0.0.1:{gw_port}/v1/chat/completions", chat("router"), n, c)
    res["route", 1] = load_test(f"http://127.0.0.1:{gw_port}/v1/route",
                                lambda i: {"prompts": [prompts[i % len(prompts)]]}, 300, 1)
    rss_after = rss_mb(gw.pid)
    rows = []
    for c in (1, 16):
        d, g = res["stub", c], res["gateway", c]
        rows.append([f"chat/completions, c={c}, {d['n']:,} requests", f"{d['p50']:.2f} / {d['p99']:.2f}",
                     f"{g['p50']:.2f} / {g['p99']:.2f}", f"{g['p50'] - d['p50']:+.2f} / {g['p99'] - d['p99']:+.2f}",
                     f"{d['rps']:.0f} / {g['rps']:.0f}"])
    r = res["route", 1]
    rows.append([f"/v1/route (one prompt), c=1, {r['n']} requests", "", f"{r['p50']:.2f} / {r['p99']:.2f}", "",
                 f"{r['rps']:.0f}"])
    lines = ["**2. Gateway overhead** (`router serve` in the slim install with the `serve` extra, in front of a stub "
             "upstream; async httpx clients in the benchmark process; 30 warm-up requests per row; all three processes "
             "share the 2 cores):", ""]
    lines += table(["requests", "direct to stub p50 / p99 ms", "through gateway p50 / p99 ms",
                    "overhead p50 / p99 ms", "req/s direct / gateway"], rows)
    lines += ["", f"Gateway process: ready (GET /healthz) {ready:.1f} s after start; "
              f"VmRSS {rss_ready:.0f} MB when ready, {rss_after:.0f} MB after the runs. /v1/route p50 "
              f"{r['p50']:.2f} ms against {inproc_p50:.2f} ms for `route` in-process (part 1): "
              f"{r['p50'] - inproc_p50:.2f} ms is HTTP on loopback, the app and its worker-thread hop. At c=16 "
              f"the client itself is a bottleneck (direct to the stub: {res['stub', 16]['rps']:.0f} req/s against "
              f"{res['stub', 1]['rps']:.0f} at c=1): read that row as the gateway's throughput with client, gateway "
              f"and stub on the same 2 cores ({res['gateway', 16]['rps']:.0f} req/s), not as its latency alone."]
    return lines, {"route": res["route", 1], "rss": rss_after, "ready": ready}


def part_mlflow(stack: ExitStack, workdir: Path, tmp: Path, prompts: list[str], gw: dict) -> list[str]:
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlruns.db",
           "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp / "mlflow-serve.log"
    proc = start(stack, [str(VENV_BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
                         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], workdir, log, env)
    ready = wait_ready(f"http://127.0.0.1:{port}/ping", proc, log, 120)
    body = lambda i: {"dataframe_records": [{"prompt": prompts[i % len(prompts)]}]}  # noqa: E731
    probe = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body(0), timeout=30)
    probe.raise_for_status()
    res = load_test(f"http://127.0.0.1:{port}/invocations", body, 300, 1)
    tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    rss = sum(p.memory_info().rss for p in tree) / 2**20
    parts = " + ".join(f"{p.name()} {p.memory_info().rss / 2**20:.0f}" for p in tree)
    r = gw["route"]
    lines = ["**3. Beside `mlflow models serve`** (same registered router, one prompt per request, c=1, "
             f"{res['n']} requests after 30 warm-ups):", ""]
    lines += table(["server", "p50 / p99 ms", "req/s", "RSS MB", "ready after s"], [
        ["`mlflow models serve` POST /invocations (dataframe_records)", f"{res['p50']:.2f} / {res['p99']:.2f}",
         f"{res['rps']:.0f}", f"{rss:.0f} ({parts})", f"{ready:.1f}"],
        ["`router serve` POST /v1/route (slim install)", f"{r['p50']:.2f} / {r['p99']:.2f}", f"{r['rps']:.0f}",
         f"{gw['rss']:.0f} (1 process)", f"{gw['ready']:.1f}"],
    ])
    lines += ["", "`mlflow models serve` runs in the full dev venv (it needs mlflow, and imports the model's "
              f"pyfunc_model.py); its answer to one prompt: `{probe.text[:160]}`"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path,
                    help="a folder where `router train` already ran (default: train in a temp dir)")
    ap.add_argument("--repeat", type=int, default=5, help="fresh processes per load measurement")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args()
    command = "OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_serve.py" + "".join(
        f" {a}" for a in sys.argv[1:])
    seen, prompts = set(), []
    for line in (ROOT / "data" / "nq_sample.jsonl").read_text().splitlines():
        p = json.loads(line)["prompt"]
        if p not in seen:
            seen.add(p)
            prompts.append(p)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        workdir = train(args.workdir.resolve() if args.workdir else None, tmp)
        folder = workdir / "models" / NAME / "champion"
        meta = json.loads((folder / "artifacts" / "head" / "router_meta.json").read_text())
        (tmp / "prompts.json").write_text(json.dumps(prompts))
        sections = []
        lines, slim = part_slim(folder, tmp, args.repeat, tmp / "prompts.json")
        print("\n".join(lines) + "\n", flush=True)
        sections.append(lines)
        lines, gw = part_gateway(stack, folder, tmp, prompts, meta["models"], slim["p50"])
        print("\n".join(lines) + "\n", flush=True)
        sections.append(lines)
        lines = part_mlflow(stack, workdir, tmp, prompts, gw)
        print("\n".join(lines) + "\n", flush=True)
        sections.append(lines)
    head = ["## Serving: slim install, gateway, mlflow models serve", "",
            f"Command: `{command}` on {machine()}; router `{NAME}@champion` from a fresh `router train --quiet` "
            f"({meta['router']} head, {len(meta['models'])} models, embedder {meta['embedder']['backend']}); "
            f"{len(prompts)} distinct NQ prompts of the bundled sample"
            + (" (on the sample the job's gate ships best_single: the head is a constant, the time is the embedder's)"
               if meta["router"] == "best_single" else "") + ". Issue 14's targets: load <= 0.5 s, "
            "RSS after load <= 150 MB, single-prompt p50 <= 3 ms, 8 threads >= 2x one thread's prompts/s.", ""]
    text = "\n".join(head + [line for part in sections for line in part + [""]])
    if not args.no_write:
        write_section("serve", text)


if __name__ == "__main__":
    main()
