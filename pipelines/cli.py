"""The ``router`` command. Heavy libraries (torch, mlflow) are imported inside commands so that
``router --help`` stays instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train, evaluate and export learned LLM routers from multi-model logs.")

LogsArg = Annotated[Optional[str], typer.Argument(help="log file, glob or directory (default: bundled sample)")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto | long | wide | pairwise")]
IdOpt = Annotated[Optional[str], typer.Option("--id-column", help="wide format: query id column")]
PromptOpt = Annotated[Optional[str], typer.Option("--prompt-column", help="wide format: prompt column")]
TaskOpt = Annotated[Optional[str], typer.Option("--task-column", help="wide format: task column")]
PromptsFileOpt = Annotated[Optional[str], typer.Option("--prompts-file", help="wide format: id -> prompt table")]
PricesOpt = Annotated[Optional[str], typer.Option("--prices", help="price table ($/M tokens), YAML or JSON")]
SinceOpt = Annotated[Optional[str], typer.Option(
    "--since", help="only queries logged at/after this ISO date or time (UTC unless a zone is given)")]
MaxQueriesOpt = Annotated[Optional[int], typer.Option(
    "--max-queries", help="use at most this many queries (seeded random sample of whole queries)")]


def _logs_config(logs, fmt, id_column, prompt_column, task_column, prompts_file, prices, since=None,
                 max_queries=None, base=None):
    """LogsConfig from command-line options; ``base`` (a config file's logs) supplies the rest."""
    from pipelines.config import LogsConfig

    given = {"path": logs, "format": fmt if logs is not None or base is None else None, "id_column": id_column,
             "prompt_column": prompt_column, "task_column": task_column, "prompts_file": prompts_file,
             "prices": prices, "since": since, "max_queries": max_queries}
    given = {k: v for k, v in given.items() if v is not None}
    if base is None:
        return LogsConfig(**given)
    return LogsConfig.model_validate({**base.model_dump(), **given})


def _fail(exc: Exception) -> None:
    """One clear line (plus the offending rows, if any) and a non-zero exit."""
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=2)


def _print_markdown(text: str) -> None:
    # Plain markdown: readable in a terminal, a cron mail and a CI log alike, and never truncated.
    typer.echo(text)


@app.command()
def summary(
    logs: LogsArg = None,
    fmt: FormatOpt = "auto",
    id_column: IdOpt = None,
    prompt_column: PromptOpt = None,
    task_column: TaskOpt = None,
    prompts_file: PromptsFileOpt = None,
    prices: PricesOpt = None,
    since: SinceOpt = None,
    max_queries: MaxQueriesOpt = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the summary as JSON")] = None,
) -> None:
    """Validate logs and print queries, models, per-model score/cost, best single model and oracle."""
    from pipelines.prepare import load_routing_data
    from router.data.schema import LogValidationError
    from router.data.summary import summarize

    try:
        cfg = _logs_config(logs, fmt, id_column, prompt_column, task_column, prompts_file, prices, since,
                           max_queries)
        data, stats = load_routing_data(cfg)
    except (LogValidationError, ValueError) as exc:
        _fail(exc)
    result = summarize(data, stats)
    _print_markdown(result.to_markdown())
    if json_out:
        from router.io import write_text_atomic

        write_text_atomic(json_out, json.dumps(result.to_dict(), indent=2))


@app.command()
def ingest(
    logs: LogsArg = None,
    out: Annotated[Path, typer.Option("--out", help="write the validated canonical rows here (Parquet)")] = Path(
        "canonical.parquet"),
    fmt: FormatOpt = "auto",
    id_column: IdOpt = None,
    prompt_column: PromptOpt = None,
    task_column: TaskOpt = None,
    prompts_file: PromptsFileOpt = None,
    prices: PricesOpt = None,
    since: SinceOpt = None,
    max_queries: MaxQueriesOpt = None,
) -> None:
    """Validate logs of any supported format and write them in the canonical long format."""
    from router.data import schema as S
    from pipelines.prepare import scan_configured
    from router.io import atomic_path
    from router.data.schema import LogValidationError
    from router.data.validate import validate_logs

    try:
        cfg = _logs_config(logs, fmt, id_column, prompt_column, task_column, prompts_file, prices, since,
                           max_queries)
        lf = scan_configured(cfg)
        stats = validate_logs(lf, source=cfg.path)
    except (LogValidationError, ValueError) as exc:
        _fail(exc)
    keep = [c for c in lf.collect_schema().names() if c in S.CANONICAL]
    with atomic_path(out) as tmp:
        lf.select(keep).sink_parquet(tmp)
    typer.echo(f"wrote {stats.rows:,} rows ({stats.queries:,} queries x {stats.models} models) to {out}")


@app.command()
def embed(
    logs: LogsArg = None,
    fmt: FormatOpt = "auto",
    id_column: IdOpt = None,
    prompt_column: PromptOpt = None,
    prompts_file: PromptsFileOpt = None,
    since: SinceOpt = None,
    max_queries: MaxQueriesOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="job config: logs and embedder settings")] = None,
) -> None:
    """Embed the logs' prompts into the on-disk cache (only prompts not cached yet are encoded)."""
    from pipelines.config import load_config
    from pipelines.prepare import load_routing_data
    from router.embed import EmbeddingCache, embed_with_cache
    from router.data.schema import LogValidationError

    try:
        job = load_config(config)
        data, _ = load_routing_data(_logs_config(logs, fmt, id_column, prompt_column, None, prompts_file, None, since,
                                                 max_queries, base=job.logs))
    except (LogValidationError, ValueError) as exc:
        _fail(exc)
    X, st = embed_with_cache(job.embedder.build(), data.prompts, EmbeddingCache(job.embedder.cache_dir))
    typer.echo(f"{st.total:,} prompts ({st.unique:,} distinct): embedded {st.embedded:,}, reused {st.reused:,} "
               f"from cache in {st.seconds:.1f}s; vectors {X.shape[0]:,} x {X.shape[1]}")


@app.command()
def evaluate(
    logs: LogsArg = None,
    fmt: FormatOpt = "auto",
    id_column: IdOpt = None,
    prompt_column: PromptOpt = None,
    task_column: TaskOpt = None,
    prompts_file: PromptsFileOpt = None,
    prices: PricesOpt = None,
    since: SinceOpt = None,
    max_queries: MaxQueriesOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="job config: routers, split, embedder")] = None,
    routers: Annotated[Optional[str], typer.Option("--routers", help="comma-separated families, e.g. knn,ridge")] = None,
    split_by: Annotated[Optional[str], typer.Option("--split-by", help="query | task (out-of-distribution)")] = None,
    lam: Annotated[Optional[float], typer.Option("--lam", help="cost weight of the decision rule")] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help="$ per query; calibrates lam")] = None,
    report_json: Annotated[Optional[Path], typer.Option("--report-json", help="write the report as JSON")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write the cost-quality curve PNG")] = None,
) -> None:
    """Fit the configured routers on the training split and compare them on the held-out split.

    A `split` column in the logs (train/test/ood) is used as given; otherwise a seeded split by query.
    """
    from pipelines.config import RouterSpec, load_config
    from pipelines.prepare import load_routing_data
    from router.embed import EmbeddingCache, embed_with_cache
    from pipelines.experiment import run_experiment
    from router.data.schema import LogValidationError

    try:
        job = load_config(config)
        logs_cfg = _logs_config(logs, fmt, id_column, prompt_column, task_column, prompts_file, prices, since,
                                max_queries, base=None if logs is not None else job.logs)
        update: dict = {"logs": logs_cfg}
        if routers:
            update["routers"] = [RouterSpec(family=r.strip()) for r in routers.split(",") if r.strip()]
            update["export_router"] = None
        if split_by:
            update["split"] = job.split.model_copy(update={"by": split_by})
        if lam is not None:
            update["lam"] = lam
        if budget is not None:
            update["budget"] = budget
        # Re-validate so command-line overrides get the same checks as a config file.
        job = type(job).model_validate(job.model_copy(update=update).model_dump())
        data, _ = load_routing_data(job.logs)
        X, _ = embed_with_cache(job.embedder.build(), data.prompts, EmbeddingCache(job.embedder.cache_dir))
        exp = run_experiment(data, X, job)
    except (LogValidationError, ValueError) as exc:
        _fail(exc)
    typer.echo(exp.report.to_markdown())
    timing = " | ".join(f"{k}: fit {f.fit_seconds:.1f}s, predict {f.predict_seconds * 1e3:.0f}ms"
                        for k, f in exp.fitted.items())
    typer.echo(f"timing: {timing}")
    if report_json:
        from router.io import write_text_atomic

        write_text_atomic(report_json, json.dumps(exp.report.to_dict(), indent=2))
        typer.echo(f"report written to {report_json}")
    if plot and exp.report.baselines.has_cost:
        from router.evaluation.plots import plot_cost_quality

        plot_cost_quality(exp.report, plot)
        typer.echo(f"cost-quality curve written to {plot}")


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Option("--config", help="job config YAML (default: bundled sample)")] = None,
    since: SinceOpt = None,
    max_queries: MaxQueriesOpt = None,
) -> None:
    """Run the job: ingest -> labels -> embed (cached) -> fit -> evaluate -> MLflow -> export -> register."""
    from pipelines.config import load_config
    from pipelines.job import run_job

    try:
        job = load_config(config)
        if since is not None or max_queries is not None:
            logs = _logs_config(None, None, None, None, None, None, None, since, max_queries, base=job.logs)
            job = type(job).model_validate({**job.model_dump(), "logs": logs.model_dump()})
        run_job(job)
    except Exception as exc:  # the job's one-line reason; the traceback helps nobody in a cron mail
        _fail(exc)


def main() -> None:  # pragma: no cover
    sys.exit(app())
