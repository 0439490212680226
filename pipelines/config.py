"""Typed job configuration: the one home for defaults. Unknown keys are rejected.

A job config is YAML (see ``pipelines/configs/*.yaml``); every field has a description and a
default here, nowhere else. ``load_config`` validates it and names the bad key on failure.
Relative paths (logs, cache, export folder, the default MLflow store) are relative to the working
directory the job runs in, never to the installed package.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from router.embed import embedder as E
from router.data.readers.wide import WideSpec

# The bundled sample ships inside the package (package data), so an installed `router train` finds it.
SAMPLE_LOGS = Path(__file__).resolve().parent / "sample" / "mmlu_pro_sample.jsonl.gz"
_WIDE = WideSpec()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogsConfig(_Strict):
    """Where the logs are and how to read them."""

    path: str = Field(str(SAMPLE_LOGS), description="file, glob or directory of logs (default: the bundled sample)")
    format: Literal["auto", "long", "wide", "pairwise", "decisions"] = Field(
        "auto", description="auto: from the columns (decision logs of `router serve`: from the file names)")
    id_column: str | None = Field(None, description=f"the query id column (default: query_id; wide format: "
                                                    f"{_WIDE.id_column})")
    prompt_column: str | None = Field(None, description="the prompt column (default: prompt)")
    task_column: str | None = Field(None, description=f"the task column, optional (default: task; wide format: "
                                                      f"{_WIDE.task_column})")
    model_column: str | None = Field(None, description="long format: the model column (default: model)")
    score_column: str | None = Field(None, description="long format: the score column (default: score)")
    cost_column: str | None = Field(None, description="long format: the $ cost column (default: cost; wide "
                                                      "format: see cost_suffix)")
    cost_suffix: str = Field(_WIDE.cost_suffix, description="wide format: suffix of <model> cost columns")
    prompts_file: str | None = Field(None, description="wide format: separate table of id -> prompt/task")
    prices: str | None = Field(None, description="YAML/JSON price table ($/M tokens) to cost token counts")
    since: datetime | None = Field(
        None, description="keep queries last logged at/after this time (ISO; UTC if no zone)")
    max_queries: int | None = Field(None, ge=1, description="use at most this many queries (seeded random sample)")
    sample_seed: int = Field(0, description="seed of the max_queries sample")

    def wide_spec(self) -> WideSpec:
        given = lambda value, default: default if value is None else value  # noqa: E731 ("" is a choice)
        return WideSpec(id_column=given(self.id_column, _WIDE.id_column),
                        prompt_column=given(self.prompt_column, _WIDE.prompt_column),
                        task_column=given(self.task_column, _WIDE.task_column), cost_suffix=self.cost_suffix,
                        prompts_file=self.prompts_file)

    def columns(self) -> dict[str, str]:
        """The columns given, as canonical name -> the logs' own (long and pairwise formats)."""
        given = {"query_id": self.id_column, "prompt": self.prompt_column, "task": self.task_column,
                 "model": self.model_column, "score": self.score_column, "cost": self.cost_column}
        return {k: v for k, v in given.items() if v is not None}


class EmbedderConfig(_Strict):
    """The query embedder; the same settings are stored with the exported router."""

    model: str = Field("default", description="'default' (packaged all-MiniLM-L6-v2), a local path or a name")
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        E.DEFAULT_BACKEND, description="torch: sentence-transformers; onnx / onnx-int8: onnxruntime on CPU (faster)")
    batch_size: int | None = Field(None, ge=1, description="prompts per forward pass (default: the backend's)")
    max_seq_length: Annotated[int, Field(ge=8)] | Literal["auto"] | None = Field(
        E.DEFAULT_MAX_SEQ_LENGTH,
        description=f"truncate prompts (tokens); auto: {E.AUTO_MAX_SEQ_LENGTH} for the default model, else the "
                    "model's own limit; null: the model's own limit")
    normalize: bool = True
    threads: int | None = Field(E.DEFAULT_THREADS, ge=1, description="CPU threads (default: all cores)")
    cache_dir: str = Field(".cache/embeddings", description="on-disk embedding cache")

    def build(self) -> E.Embedder:
        return E.Embedder(self.model, batch_size=self.batch_size, max_seq_length=self.max_seq_length,
                          normalize=self.normalize, backend=self.backend, threads=self.threads)


class SplitConfig(_Strict):
    """How queries are held out. A ``split`` column in the logs wins over all of this."""

    test_size: float = Field(0.3, gt=0, lt=1, description="share of queries held out for evaluation")
    seed: int = Field(0, description="seed of the query split")
    by: Literal["query", "task"] = Field("query", description="query: random queries; task: whole tasks (OOD)")
    test_tasks: list[str] | None = Field(None, description="by=task: the tasks to hold out")


RouterFamily = Literal["best_single", "random", "knn", "ridge", "logistic", "lgbm", "classifier", "mf", "ensemble",
                       "cluster", "irt", "task"]  # the names of router.routers.ROUTERS (a test keeps them equal)
ParamValue = int | float | str | bool | None | list[int] | list[float] | list[str]


class RouterSpec(_Strict):
    """One router to fit: a family from ``router.routers.ROUTERS`` and its parameters."""

    family: RouterFamily
    name: str | None = Field(None, description="label in reports (default: the family)")
    params: dict[str, ParamValue] = Field(default_factory=dict, description="checked against the family")

    @property
    def label(self) -> str:
        return self.name or self.family


# A job name is a registered-model name and a folder name: nothing that could climb out of export_dir.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

# The default candidates: every family but random (a control, not a router to ship), whatever its record on
# our own benchmark sets; selection decides on the user's logs, and the job reports each family's fitting time.
# best_single first (it wins ties in selection); task sits out when the logs have no task column. Families
# whose cost grows fastest with the logs are capped, not dropped (knn max_references, cluster
# max_kmeans_queries, lgbm max_train_queries, selection.max_queries).
DEFAULT_FAMILIES = ("best_single", "knn", "ridge", "logistic", "lgbm", "classifier", "mf", "cluster", "irt", "task",
                    "ensemble")


def default_name(logs: str) -> str:
    """The registered name a job on ``logs`` gets when it is not given one: the file's name without its
    extensions (a folder's or a glob's folder's name), plus ``-router``; ``mylogs.csv`` -> ``mylogs-router``.
    Other logs get another name, so a job on them never replaces the champion of another model pool."""
    path = Path(logs)
    while any(c in path.name for c in "*?[") and path.parent != path:
        path = path.parent
    stem = re.sub(r"[^A-Za-z0-9.-]+", "-", path.name.split(".")[0]).strip("-.")
    return f"{stem[:90] or 'logs'}-router"


def _default_routers() -> list[RouterSpec]:
    return [RouterSpec(family=f) for f in DEFAULT_FAMILIES]


class SelectionConfig(_Strict):
    """How the router to export is chosen on the training split (``export_router: auto``)."""

    folds: int = Field(5, ge=2, description="cross-validation folds over the training queries (nested: each "
                                            "candidate's own hyper-parameter search runs inside every fold)")
    max_queries: int | None = Field(
        20_000, ge=100, description="selection and each candidate's operating point run on at most this many "
        "training queries (a seeded sample; null: all): their cost grows with folds x candidates, the final "
        "fits use every training query")


class ShareConfig(_Strict):
    """Send a share of the calls to one model (RouteLLM's question: X% to the strong model), costs or not."""

    model: str = Field(description="a model of the logs")
    value: float = Field(ge=0, le=1, description="share of calls to route to it (calibrated on the training split)")


class TrackingConfig(_Strict):
    """Where MLflow runs and registered models go."""

    uri: str | None = Field(
        None, description="MLflow tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here")
    experiment: str = Field("learned-router", description="MLflow experiment name")
    artifact_root: str | None = Field(
        None, description="artifact folder of a new experiment; default ./mlruns on a local sqlite store, "
                          "the server's own default otherwise")

    def resolved_uri(self) -> str:
        return self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"

    def resolved_artifact_root(self) -> str | None:
        if self.artifact_root is None and self.resolved_uri().startswith("sqlite:"):
            return "mlruns"
        return self.artifact_root


class RegistryConfig(_Strict):
    enabled: bool = Field(True, description="register the router as a new version when it beats the champion "
                                            "(a loser is neither logged nor registered)")
    alias: str = Field("champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$",
                       description="alias services load; moved only when the new version wins (MLflow's alias "
                                   "rules: letters, digits, '_', '-'; not 'latest' nor v<number>)")
    min_improvement: float = Field(0.0, ge=0, description="required gain of held-out utility over the champion")
    min_gain: float = Field(0.0, description="baseline gate: the held-out gain over the best single model must have "
                                             "its lower confidence bound above this")
    confidence: float = Field(0.9, gt=0.5, lt=1, description="one-sided confidence of the baseline gate's bounds "
                                                           "(and of the savings calibration's)")
    min_savings: float = Field(0.05, ge=0, lt=1, description="savings gate: the lower bound of the saving (1 - router "
                                                             "cost / best single cost) must reach this")
    cross_fit_folds: int = Field(2, ge=0, description="the gate also counts the training queries, each routed by "
                                                      "the job's procedure run on the other of this many folds "
                                                      "(pipelines.evidence); 0: the held-out split alone")
    allow_model_change: bool = Field(False, description="let a router over other models than the champion's "
                                                        "replace it (else the job refuses: a service would route to "
                                                        "models it has no upstream for)")

    @field_validator("cross_fit_folds")
    @classmethod
    def _folds_or_off(cls, folds: int) -> int:
        if folds == 1:
            raise ValueError("cross_fit_folds must be 0 (off) or at least 2")
        return folds

    @field_validator("alias")
    @classmethod
    def _alias_not_reserved(cls, alias: str) -> str:
        if alias == "latest" or re.fullmatch(r"v\d+", alias):
            raise ValueError(f"alias {alias!r} is reserved by MLflow ('latest', v<number>)")
        return alias

    keep_versions: int | None = Field(
        10, ge=0, description="after each run, delete the artifacts, registry entries and local folders of all but "
                              "the newest N versions besides the champion (None: keep every version)")


class ClusterConfig(_Strict):
    """A running Dask cluster for the heavy steps (see ``pipelines.dask_cluster``); the exported router never
    needs it."""

    address: str = Field(description="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    partition_size: int = Field(1024, ge=1, description="at most this many prompts per embedding task")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the scheduler and a first worker")


class JobConfig(_Strict):
    """A scheduled training job."""

    name: str = Field(None, pattern=NAME_PATTERN, description=(
        "registered model name, also the export folder <export_dir>/<name>: letters, digits, '.', '_', '-', "
        "starting with a letter or digit, at most 100 characters (no path separators, never '.' or '..'). "
        "Default: from the logs' file or folder name, e.g. mylogs.csv -> mylogs-router"))
    logs: LogsConfig = LogsConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    split: SplitConfig = SplitConfig()
    routers: list[RouterSpec] = Field(default_factory=_default_routers, min_length=1,
                                      description="candidates; best_single is added first when absent")
    export_router: str = Field("auto", description="auto: the best candidate by cross-validation on the training "
                                                   "split; or a router label")
    selection: SelectionConfig = SelectionConfig()
    blas_threads: int | None = Field(
        1, ge=1, description="BLAS threads while fitting routers, for the fit only (None: the library's default). "
                             "Routers fit many small matrices, where more threads only contend: on 2 cores the "
                             "default candidates fit on the sample in 6 s with 1 thread, 43 s with 2")
    objective: Literal["auto", "savings", "quality", "budget", "share"] = Field(
        "auto", description="savings: the cheapest routing with quality >= best single x (1 - margin); quality: "
        "the best score - lam * cost; budget / share: meet that target. auto: budget or share when set, else "
        "savings when every model in the logs has a cost, else quality")
    margin: float = Field(0.01, ge=0, lt=1, description="savings: the quality the router may lose, as a fraction "
                                                        "of the best single model's (0: none; 0.05: RouteLLM's 95%)")
    lam: float = Field(0.0, ge=0, description="quality objective: route to argmax(score - lam * $cost)")
    budget: float | None = Field(None, gt=0, description="$ per query: each router's lam is calibrated to it on "
                                                        "a slice of the training queries")
    share: ShareConfig | None = Field(None, description="a share of calls to one model, calibrated on the training "
                                                        "split (instead of a budget)")
    min_answers: int = Field(100, ge=2, description="a model scored on under half of the training queries (a new "
                             "model's probe answers) is routed to only with at least this many of them; below, "
                             "the job holds it back (it takes no traffic) and says so")
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    task_at_serving: bool = Field(
        False, description="a service will send each prompt's task tag (the logs' task column): the task "
                           "family routes a tagged prompt by its task instead of inferring it, and is evaluated so")
    export_dir: str = Field("models", description="local copies of the exported routers: <dir>/<name>/v<N> per "
                                                "version, <dir>/<name>/champion a link that follows the alias")
    cluster: ClusterConfig | None = Field(
        None, description="Dask cluster: embed and fit LightGBM heads on its workers (None: all local)")

    @model_validator(mode="before")
    @classmethod
    def _name_from_logs(cls, raw):
        if isinstance(raw, dict) and raw.get("name") is None:
            logs = raw.get("logs")
            path = logs.get("path") if isinstance(logs, dict) else getattr(logs, "path", None)
            raw = {**raw, "name": default_name(path if isinstance(path, str) else str(SAMPLE_LOGS))}
        return raw

    @model_validator(mode="after")
    def _check_labels(self) -> JobConfig:
        labels = [r.label for r in self.routers]
        if len(set(labels)) != len(labels):
            raise ValueError(f"router labels must be unique, got {labels}")
        if self.budget is not None and self.share is not None:
            raise ValueError("give a budget or a share, not both")
        for kind, value in (("budget", self.budget), ("share", self.share)):
            if self.objective == kind and value is None:
                raise ValueError(f"objective {kind} needs a {kind}: section")
            if value is not None and self.objective not in ("auto", kind):
                raise ValueError(f"a {kind} is set but the objective is {self.objective}: use objective {kind} "
                                 f"(or auto), or drop the {kind}")
        if any(r.label == "best_single" and r.family != "best_single" for r in self.routers):
            raise ValueError("the label 'best_single' is reserved for the best-single baseline")
        if self.export_router != "auto" and self.export_router not in labels:
            raise ValueError(f"export_router {self.export_router!r} is not 'auto' nor one of the routers {labels}")
        return self

    def candidates(self) -> list[RouterSpec]:
        """The configured routers, with the best-single baseline first when it is not among them."""
        if any(r.family == "best_single" and r.label == "best_single" for r in self.routers):
            return list(self.routers)
        return [RouterSpec(family="best_single"), *self.routers]


def load_config(path: str | Path | None, logs: dict | None = None) -> JobConfig:
    """Read and validate a YAML job config (None: all defaults), its ``logs`` section updated with ``logs``
    (the command line's) before validation: a job's default name follows the logs it runs on."""
    raw: dict = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"config {path}: cannot be read: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"config {path}: expected a mapping of settings, got {type(raw).__name__}")
    if logs:
        section = raw.get("logs") or {}
        if not isinstance(section, dict):
            raise ValueError(f"config {path}: logs: expected a mapping such as {{path: logs/}}, got {section!r}")
        raw = {**raw, "logs": {**section, **logs}}
    return parse_config(raw, f"config {path}" if path is not None else "command line")


def parse_config(raw: dict, source: str) -> JobConfig:
    """A validated ``JobConfig`` from plain values; one line naming each bad key on failure."""
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"{source}: {problems}") from None
