"""Typed job configuration: the one home for defaults. Unknown keys are rejected.

A job config is YAML (see ``pipelines/*.yaml``); every field has a comment-like description and a
default here, nowhere else. ``load_config`` validates it and names the bad key on failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from router import embed as E
from router.ingest import WideSpec

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOGS = ROOT / "data" / "nq_sample.jsonl"
_WIDE = WideSpec()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LogsConfig(_Strict):
    """Where the logs are and how to read them."""

    path: str = Field(str(DEFAULT_LOGS), description="file, glob or directory of logs")
    format: Literal["auto", "long", "wide", "pairwise"] = Field("auto", description="auto: from the columns")
    id_column: str = Field(_WIDE.id_column, description="wide format: query id column")
    prompt_column: str = Field(_WIDE.prompt_column, description="wide format: prompt column")
    task_column: str | None = Field(_WIDE.task_column, description="wide format: task column (optional)")
    cost_suffix: str = Field(_WIDE.cost_suffix, description="wide format: suffix of <model> cost columns")
    prompts_file: str | None = Field(None, description="wide format: separate table of id -> prompt/task")
    prices: str | None = Field(None, description="YAML/JSON price table ($/M tokens) to cost token counts")

    def wide_spec(self) -> WideSpec:
        return WideSpec(id_column=self.id_column, prompt_column=self.prompt_column, task_column=self.task_column,
                        cost_suffix=self.cost_suffix, prompts_file=self.prompts_file)


class EmbedderConfig(_Strict):
    """The query embedder; the same settings are stored with the exported router."""

    model: str = Field("default", description="'default' (packaged all-MiniLM-L6-v2), a local path or a name")
    batch_size: int = Field(E.DEFAULT_BATCH_SIZE, ge=1)
    max_seq_length: int | None = Field(E.DEFAULT_MAX_SEQ_LENGTH, ge=8, description="truncate prompts (tokens)")
    normalize: bool = True
    cache_dir: str = Field(str(ROOT / ".cache" / "embeddings"), description="on-disk embedding cache")

    def build(self) -> E.Embedder:
        return E.Embedder(self.model, batch_size=self.batch_size, max_seq_length=self.max_seq_length,
                          normalize=self.normalize)


class JobConfig(_Strict):
    """A scheduled training job."""

    name: str = Field("nq-sample-router", description="registered model name")
    logs: LogsConfig = LogsConfig()
    embedder: EmbedderConfig = EmbedderConfig()


def load_config(path: str | Path | None) -> JobConfig:
    """Read and validate a YAML job config (None: all defaults)."""
    if path is None:
        return JobConfig()
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"config {path}: cannot be read: {exc}") from exc
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"config {path}: {problems}") from None
