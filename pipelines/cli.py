"""The ``router`` command. Heavy libraries (torch, mlflow) are imported inside commands so that
``router --help`` stays instant."""

import functools
import inspect
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, evaluate and export learned LLM routers from multi-model logs.")

# The options that say where the logs are and how to read them: one definition, every command.
LOGS_OPTIONS = {
    "logs": Annotated[Optional[str], typer.Argument(help="log file, glob or directory (default: the config's, "
                                                         "else the bundled sample)")],
    "fmt": Annotated[Optional[str], typer.Option("--format", help="auto | long | wide | pairwise | decisions")],
    "id_column": Annotated[Optional[str], typer.Option("--id-column", help="the query id column (any format)")],
    "prompt_column": Annotated[Optional[str], typer.Option("--prompt-column", help="the prompt column")],
    "task_column": Annotated[Optional[str], typer.Option("--task-column", help="the task column")],
    "model_column": Annotated[Optional[str], typer.Option("--model-column", help="long format: the model column")],
    "score_column": Annotated[Optional[str], typer.Option("--score-column", help="long format: the score column")],
    "cost_column": Annotated[Optional[str], typer.Option("--cost-column", help="long format: the $ cost column")],
    "prompts_file": Annotated[Optional[str], typer.Option("--prompts-file", help="wide format: id -> prompt table")],
    "prices": Annotated[Optional[str], typer.Option("--prices", help="price table ($/M tokens), YAML or JSON")],
    "since": Annotated[Optional[str], typer.Option(
        "--since", help="only queries logged at/after this ISO date or time (UTC unless a zone is given)")],
    "max_queries": Annotated[Optional[int], typer.Option(
        "--max-queries", help="use at most this many queries (seeded random sample of whole queries)")],
    "config": Annotated[Optional[Path], typer.Option("--config", help="job config YAML (default: built-in defaults)")],
}
_CONFIG_FIELDS = {"logs": "path", "fmt": "format"}  # option name -> LogsConfig field, where they differ


def with_job(func):
    """Add the shared options to a command; it receives ``job``, the validated ``JobConfig`` they give.

    The options override the config file's ``logs`` section; a bad value exits 2 with one line.
    """
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for name, p in inspect.signature(func, eval_str=True).parameters.items() if name != "job"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
              for name, ann in LOGS_OPTIONS.items()]

    @functools.wraps(func)
    def command(**kwargs):
        given = {name: kwargs.pop(name) for name in LOGS_OPTIONS}
        try:
            job = _job_config(given)
        except ValueError as exc:
            _fail(exc)
        return func(job=job, **kwargs)

    params = shared[:1] + own + shared[1:]  # the LOGS argument first, then the command's own
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer must see the new signature, not the wrapped one
    return command


def _job_config(given: dict):
    from pipelines.config import load_config

    path = given.pop("config")
    return load_config(path, {_CONFIG_FIELDS.get(k, k): v for k, v in given.items() if v is not None})


def _override(job, update: dict):
    """``job`` with command-line values, validated with the same checks (and messages) as a config file."""
    from pipelines.config import parse_config

    return parse_config({**job.model_dump(), **update}, "command line")


ShareOpt = Annotated[Optional[str], typer.Option(
    "--share", help="MODEL=FRACTION: send that share of calls to MODEL, calibrated on the training split "
                    "(works without costs)")]


ObjectiveOpt = Annotated[Optional[str], typer.Option(
    "--objective", help="savings | quality | budget | share (default auto: savings when every model has a cost)")]
MarginOpt = Annotated[Optional[float], typer.Option(
    "--margin", help="savings: the quality the router may lose, as a fraction of the best single model's (0.01)")]
BudgetOpt = Annotated[Optional[float], typer.Option("--budget", help="$ per query; calibrates lam")]


RoutersOpt = Annotated[Optional[str], typer.Option("--routers", help="comma-separated candidate families, "
                                                                  "e.g. knn,ridge (default: every family)")]


def _routers(routers: str | None) -> dict:
    """The config update ``--routers knn,ridge`` gives: those candidates, the best chosen by selection."""
    if not routers:
        return {}
    return {"routers": [{"family": r.strip()} for r in routers.split(",") if r.strip()], "export_router": "auto"}


def _targets(objective: str | None, margin: float | None, budget: float | None, share: str | None) -> dict:
    """The config update the objective options give (validated with the config's own checks)."""
    update: dict = {}
    for key, value in (("objective", objective), ("margin", margin), ("budget", budget)):
        if value is not None:
            update[key] = value
    if share is not None:
        update["share"] = _share(share)
    return update


def _share(value: str | None) -> dict | None:
    """``MODEL=0.3`` as a config ``share`` section (model names may hold '=' and ':'; the last '=' splits)."""
    if value is None:
        return None
    model, sep, fraction = value.rpartition("=")
    try:
        return {"model": model, "value": float(fraction)} if sep and model else {"model": value, "value": None}
    except ValueError:
        return {"model": model, "value": fraction}  # validation names the bad value


def _fail(exc: Exception) -> None:
    """One clear line (plus the offending rows, if any) and a non-zero exit."""
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


@app.command()
@with_job
def summary(job, json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the summary as JSON")]
            = None) -> None:
    """Validate logs and print queries, models, per-model score/cost, best single model and oracle."""
    from pipelines.prepare import load_routing_data
    from router.data.summary import summarize

    try:
        data, stats = load_routing_data(job.logs)
    except ValueError as exc:
        _fail(exc)
    result = summarize(data, stats)
    typer.echo(result.to_markdown())
    if json_out:
        from router.io import write_text_atomic

        write_text_atomic(json_out, json.dumps(result.to_dict(), indent=2))


@app.command()
@with_job
def ingest(job, out: Annotated[Path, typer.Option("--out", help="write the validated canonical rows here (Parquet)")]
           = Path("canonical.parquet")) -> None:
    """Validate logs of any supported format and write them in the canonical long format."""
    from pipelines.prepare import scan_configured
    from router.data import schema as S
    from router.data.validate import validate_logs
    from router.io import atomic_path

    try:
        lf = scan_configured(job.logs)
        stats = validate_logs(lf, source=job.logs.path)
    except ValueError as exc:
        _fail(exc)
    keep = [c for c in lf.collect_schema().names() if c in S.CANONICAL]
    with atomic_path(out) as tmp:
        lf.select(keep).sink_parquet(tmp)
    typer.echo(f"wrote {S.counted(stats.rows, 'row')} ({S.counted(stats.queries, 'query')} x "
               f"{S.counted(stats.models, 'model')}) to {out}")


@app.command()
@with_job
def embed(job) -> None:
    """Embed the logs' prompts into the on-disk cache (only prompts not cached yet are encoded)."""
    from pipelines.prepare import embed_prompts, load_routing_data

    try:
        data, _ = load_routing_data(job.logs)
    except ValueError as exc:
        _fail(exc)
    X, _, st = embed_prompts(job.embedder, data.prompts)
    typer.echo(f"{st.total:,} prompts ({st.unique:,} distinct): embedded {st.embedded:,}, reused {st.reused:,} "
               f"from cache in {st.seconds:.1f}s; vectors {X.shape[0]:,} x {X.shape[1]}")


@app.command()
@with_job
def evaluate(
    job,
    routers: RoutersOpt = None,
    split_by: Annotated[Optional[str], typer.Option("--split-by", help="query | task (out-of-distribution)")] = None,
    lam: Annotated[Optional[float], typer.Option("--lam", help="cost weight of the decision rule")] = None,
    objective: ObjectiveOpt = None,
    margin: MarginOpt = None,
    budget: BudgetOpt = None,
    share: ShareOpt = None,
    report_json: Annotated[Optional[Path], typer.Option("--report-json", help="write the report as JSON")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write the cost-quality curve PNG")] = None,
) -> None:
    """Fit the configured routers on the training split and compare them on the held-out split.

    A `split` column in the logs (train/test/ood) is used as given; otherwise a seeded split by query.
    """
    from pipelines.experiment import run_experiment
    from pipelines.prepare import prepare

    try:
        update: dict = _routers(routers)
        if split_by:
            update["split"] = {**job.split.model_dump(), "by": split_by}
        if lam is not None:
            update["lam"] = lam
        job = _override(job, {**update, **_targets(objective, margin, budget, share)})
        prep = prepare(job.logs, job.embedder)
        exp = run_experiment(prep.data, prep.X, job)
    except ValueError as exc:
        _fail(exc)
    typer.echo(exp.report.to_markdown())
    typer.echo("\n".join(exp.outcome_lines(job)))
    timing = " | ".join(f"{k}: fit {f.fit_seconds:.1f}s, predict {f.predict_seconds * 1e3:.0f}ms"
                        for k, f in exp.fitted.items())
    typer.echo(f"timing: {timing}")
    if report_json:
        from router.io import write_text_atomic

        write_text_atomic(report_json, json.dumps({**exp.report.to_dict(), "shipped": exp.to_dict()}, indent=2))
        typer.echo(f"report written to {report_json}")
    if plot and exp.report.baselines.has_cost:
        from router.evaluation.plots import plot_cost_quality

        plot_cost_quality(exp.report, plot, budget=job.budget, shipped=exp.exported,
                          margin=exp.goal.margin if exp.goal.kind == "savings" else None)
        typer.echo(f"cost-quality curve written to {plot}")


@app.command()
@with_job
def train(job, quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the final line")] = False,
          name: Annotated[Optional[str], typer.Option("--name", help="registered name and export folder (default: "
                                                      "from the logs' name, e.g. mylogs.csv -> mylogs-router)")]
          = None,
          routers: RoutersOpt = None, objective: ObjectiveOpt = None, margin: MarginOpt = None,
          budget: BudgetOpt = None, share: ShareOpt = None,
          allow_model_change: Annotated[bool, typer.Option(
              "--allow-model-change", help="let a router over other models replace the champion")] = False) -> None:
    """Run the job: ingest -> labels -> embed (cached) -> fit -> evaluate -> MLflow -> export -> register."""
    # This process is the job: MLflow's per-file download bars would flood a cron mail or CI log; with
    # --quiet its INFO lines too (read when mlflow is first imported; warnings still show).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if quiet:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from pipelines.job import Terminated, run_job

    update = {**_routers(routers), **_targets(objective, margin, budget, share)}
    if name is not None:
        update["name"] = name
    if allow_model_change:
        update["registry"] = {**job.registry.model_dump(), "allow_model_change": True}
    if update:
        try:
            job = _override(job, update)
        except ValueError as exc:
            _fail(exc)

    # A scheduler's SIGTERM should end the job cleanly (run KILLED, alias untouched), not silently.
    def stop(signum, frame):
        raise Terminated(f"terminated by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)
    try:
        run_job(job, echo=typer.echo, quiet=quiet)
    except Terminated as exc:
        typer.secho(f"error: {exc}; the run is marked KILLED and the alias did not move", err=True,
                    fg=typer.colors.RED)
        raise typer.Exit(code=128 + signal.SIGTERM) from None
    except Exception as exc:  # the job's one-line reason; the traceback helps nobody in a cron mail
        _fail(exc)


@app.command()
@with_job
def probe(job, model: Annotated[str, typer.Option("--model", help="the new model's name, as its logs will name it")],
          n: Annotated[int, typer.Option("--n", min=1, help="how many queries it should answer")] = 200,
          out: Annotated[Path, typer.Option("--out", help="where to write them (JSONL)")] = Path("probe.jsonl"),
          seed: Annotated[int, typer.Option("--seed", help="seed of the clustering")] = 0) -> None:
    """Choose the N queries a new model should answer first: a sample spread over the logs' embeddings in
    proportion. Run the model on them, fill score (and cost), and add the file to the logs."""
    from pipelines.prepare import prepare
    from pipelines.probe import answered_by, choose_probes, disagreement, expectation, write_probes
    from router.evaluation.sparse import logged_rows

    try:
        prep = prepare(job.logs, job.embedder)
    except ValueError as exc:
        _fail(exc)
    known = answered_by(prep.data, model)
    if known.all():
        _fail(ValueError(f"{model} already has a score on every query of these logs: nothing to probe"))
    # only queries the pool answered together: the router's own traffic holds one model's answer per query
    out_of_pool = known | ~logged_rows(prep.data)
    if out_of_pool.all():
        _fail(ValueError(f"no query of these logs that {model} has not answered was answered by two models or "
                         "more (the router's own traffic is not probed): nothing to compare it with"))
    rows = choose_probes(prep.X, prep.data, n, exclude=out_of_pool, seed=seed)
    write_probes(out, prep.data, rows, model)
    spread = disagreement(prep.data)
    typer.echo(f"wrote {len(rows):,} of {prep.data.n_queries:,} queries for {model} to {out}: a sample stratified "
               f"over the logs' embeddings (the current models' score variance on them {spread[rows].mean():.3f}, "
               f"on all {spread.mean():.3f})")
    typer.echo(expectation(int(known.sum()) + len(rows), job.split.test_size, job.min_answers))
    typer.echo(f"next: run {model} on them, fill each row's score (and cost), add {out} to the logs and run "
               f"router train with --allow-model-change (the champion routes to the current models only)")


@app.command()
def serve(
    source: Annotated[str, typer.Argument(metavar="MODEL_URI_OR_FOLDER",
                                          help="exported router folder, or models:/NAME@ALIAS")],
    upstreams: Annotated[Optional[Path], typer.Option("--upstreams", help="YAML map of model -> upstream "
                                                      "(base_url, api_key_env, model)")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="bind address (default: loopback only)")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="port to listen on")] = None,
    decision_log: Annotated[Optional[Path], typer.Option("--decision-log", help="log each routing decision "
                                                         "in this folder (enables /v1/feedback)")] = None,
    log_prompts: Annotated[Optional[str], typer.Option(
        "--log-prompts", help="hash | text | none: what the decision log keeps of a prompt (text to retrain on it)")]
        = None,
    reload_seconds: Annotated[Optional[float], typer.Option("--reload-seconds", help="poll the source for a new "
                                                            "export this often; 0: never reload")] = None,
    max_body_bytes: Annotated[Optional[int], typer.Option("--max-body-bytes", help="largest request body")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads of one embedding (default: "
                                                   "every core; 1 gives the most requests/s under load)")] = None,
    exploration: Annotated[Optional[str], typer.Option(
        "--exploration", help="off | epsilon:0.05 | softmax:0.1: draw the served model from the router's "
                              "probabilities and log the propensity, for off-policy evaluation (default off)")] = None,
    exploration_seed: Annotated[Optional[int], typer.Option("--exploration-seed", help="seed of the "
                                                            "exploration draws (default: fresh)")] = None,
    explore_new: Annotated[Optional[str], typer.Option(
        "--explore-new", help="NAME:SHARE[,...]: serve a new model the router does not route to yet this share of "
                              "the chat traffic (propensity logged), until a router that lists it is loaded")]
        = None,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", envvar="ROUTER_API_KEY", show_envvar=True,
        help="clients of /v1/ must send Authorization: Bearer <key> (prefer the variable: arguments show in ps)")]
        = None,
) -> None:
    """Serve the router behind an OpenAI-compatible gateway: /v1/chat/completions with model "router"."""
    from router.serve.gateway import ServeConfig
    from router.serve.server import build_server

    given = {"upstreams": upstreams, "host": host, "port": port, "decision_log": decision_log,
             "log_prompts": log_prompts, "reload_seconds": reload_seconds, "max_body_bytes": max_body_bytes,
             "threads": threads, "exploration": exploration, "exploration_seed": exploration_seed, "api_key": api_key,
             "explore_new": explore_new}
    try:  # defaults live in ServeConfig: pass only what was given
        server = build_server(source, ServeConfig(**{k: v for k, v in given.items() if v is not None}))
    except (ValueError, OSError, RuntimeError) as exc:
        _fail(exc)
    server.run()


@app.command()
def feedback(
    request_id: Annotated[str, typer.Argument(help="the x-request-id of the routed answer")],
    score: Annotated[float, typer.Argument(help="quality of the answer (the scale of the training logs)")],
    decision_log: Annotated[Path, typer.Option("--decision-log", help="the folder given to router serve")],
    cost: Annotated[Optional[float], typer.Option("--cost", help="$ the answer cost, if known")] = None,
) -> None:
    """Record the outcome of a routed request in the decision log (joined with its decision at training)."""
    from router.serve.decision_log import append_feedback

    try:
        path = append_feedback(decision_log, request_id, score, cost)
    except (ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f"feedback for {request_id} written to {path}" if path is not None
               else f"feedback for {request_id} was already recorded with this outcome")


def main() -> None:  # pragma: no cover
    sys.exit(app())
