"""The runtime router: embedder + fitted head + metadata, answering prompts -> model names.

Used by the MLflow pyfunc (``pyfunc_model.py``) and by ``router.load``. The head is read by
``router.serve.artifact`` (data only, never pickle); a call's setting (lam, budget, share) is resolved
on the exported ``Calibration`` by ``router.policy.operating_point.resolve``, as in the job, and choices
go through the one decision rule, ``router.policy.rule.choose``, as in evaluation. Thread-safe, and no request waits for
another: the ONNX embedders and the head's numpy prediction run concurrently, and a huge prompt
costs only its first tokens (``router.embed.truncate``). Only the torch backend, whose tokenizer
is reconfigured on every call, serialises embedding behind a lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router.embed import Embedder
from router.policy.exploration import policy_probabilities
from router.policy.curve import OperatingCurve
from router.policy.operating_point import Calibration, OperatingPoint, Setting, resolve
from router.policy.rule import choose, rank
from router.routers.base import predict_with_tasks
from router.serve.artifact import ArtifactError, ArtifactVersionError, load_head

META_FILE = "router_meta.json"
META_VERSION = 2  # bump when a field changes meaning or loses its default; ``_upgrade`` reads the ones before


@dataclass(frozen=True)
class RouterMeta:
    """What the exported router needs beside its head and weights."""

    models: list[str]
    model_costs: list[float]  # mean $ per call per model, from training logs (0 when unknown)
    embedder: dict  # Embedder.settings() at training time; serving reproduces them
    router: str  # family name
    # The default operating point, the operating curve and the share quantiles, measured on out-of-fold training
    # predictions (None: lam 0, nothing to resolve a budget or a share from).
    calibration: Calibration | None = None
    # Embedder.id at training time (empty: an older export). Equal ids give equal vectors, so a job with the
    # same embedder scores this router on vectors it already has instead of embedding every prompt again.
    embedder_id: str = ""
    format_version: int = META_VERSION

    @property
    def default_lam(self) -> float:
        return 0.0 if self.calibration is None else self.calibration.default.lam

    def to_json(self) -> str:
        raw = {**self.__dict__, "calibration": None if self.calibration is None else self.calibration.to_dict()}
        return json.dumps(raw, indent=2)

    @classmethod
    def read(cls, path: Path) -> RouterMeta:
        """The metadata at ``path``; a foreign or newer file raises ``ArtifactError`` / ``ArtifactVersionError``."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: cannot be read as router metadata ({exc})") from None
        if not isinstance(raw, dict):
            raise ArtifactError(f"{path}: expected a JSON object of router metadata")
        if raw.get("format_version") == 1:
            raw = _upgrade(raw)
        version = raw.get("format_version", 0)
        if version != META_VERSION:
            newer = isinstance(version, int) and version > META_VERSION
            raise ArtifactVersionError(
                f"{path}: written with metadata format {version}; this release reads format {META_VERSION}: "
                + ("upgrade learned-router to load it, or retrain" if newer
                   else "retrain the router with this release"))
        try:
            if raw.get("calibration") is not None:
                raw["calibration"] = Calibration.from_dict(raw.get("models", []), raw["calibration"])
            return cls(**raw)
        except (TypeError, KeyError, ValueError) as exc:
            raise ArtifactError(f"{path}: unexpected router metadata fields ({exc})") from None


def _upgrade(raw: dict) -> dict:
    """Format 1 -> 2: its held-out ``budget_curve`` ([lam, $/query, quality]) is the spend curve a budget is
    read from (the same reading as format 1's: the smallest lambda within the budget, else the largest)."""
    raw = dict(raw)
    lam = float(raw.pop("default_lam", 0.0))
    curve = sorted(raw.pop("budget_curve", []) or [])
    bias = raw.pop("default_bias", []) or []
    shortfalls = raw.pop("share_margins", []) or []
    target = "share (format 1 export)" if bias else f"lam {lam:g}"
    raw["calibration"] = Calibration(
        models=tuple(raw.get("models", [])), default=OperatingPoint(lam=lam, bias=tuple(bias) or None, target=target),
        curve=OperatingCurve(lam=tuple(p[0] for p in curve), cost=tuple(p[1] for p in curve)) if curve else None,
        shortfalls_lam=lam, shortfalls=np.asarray(shortfalls, dtype=np.float64) if shortfalls else None).to_dict()
    raw["format_version"] = META_VERSION
    return raw


class RouterService:
    """Routes prompts: ``route(prompts, lam=, budget=, share=, margin=, tasks=) -> list[str]``, ``scores(prompts)``;
    a call's setting is resolved on the exported calibration (``operating_point``)."""

    def __init__(self, embedder: Embedder, head, meta: RouterMeta) -> None:
        self.embedder = embedder
        self.head = head
        self.meta = meta
        self._costs = np.asarray(meta.model_costs, dtype=np.float64)
        self.calibration = meta.calibration or Calibration(models=tuple(meta.models))
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, head_dir: str | Path, embedder_dir: str | Path | None = None,
                 threads: int | None = None) -> RouterService:
        """Load from an artifact folder holding the saved head and ``router_meta.json``.

        ``embedder_dir`` replaces the recorded model name with local weights (the exported copy);
        ``threads`` caps the CPU threads of one embedding (default: every core).
        """
        head_dir = Path(head_dir)
        meta = RouterMeta.read(head_dir / META_FILE)
        head = load_head(head_dir)
        overrides = {"show_progress": False}
        if embedder_dir is not None:
            overrides["model"] = str(embedder_dir)
        if threads is not None:
            overrides["threads"] = threads
        embedder = Embedder.from_settings(meta.embedder, **overrides)
        embedder.encode(["warm-up"])  # load weights and warm kernels now, not on the first request
        return cls(embedder, head, meta)

    @property
    def models(self) -> list[str]:
        return list(self.meta.models)

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = _as_prompts(prompts)
        if self.embedder.thread_safe:
            return self.embedder.encode(prompts)
        with self._lock:
            return self.embedder.encode(prompts)

    def scores(self, prompts: Sequence[str], tasks: Sequence[str | None] | None = None) -> np.ndarray:
        """(n_prompts, n_models) predicted quality, columns in ``self.models`` order. ``tasks``: each
        prompt's task tag, if known (a task router routes by it; other heads ignore it)."""
        return self.head_scores(self.embed(prompts), tasks)

    def head_scores(self, X: np.ndarray, tasks: Sequence[str | None] | None = None) -> np.ndarray:
        """``scores`` from query vectors already embedded by this router's embedder (``meta.embedder_id``)."""
        return predict_with_tasks(self.head, X, None if tasks is None else list(tasks))

    def operating_point(self, lam: float | None = None, budget: float | None = None,
                        share: dict[str, float] | None = None, margin: float | None = None) -> OperatingPoint:
        """Where a call runs: a given ``lam``; the lambda meeting ``budget`` ($/query) on the calibration's
        curve; ``share={model: fraction}`` of the calls to one model (at the calibrated lambda); the cheapest
        point within ``margin`` of the best single model's quality (``margin=0.01``: within 1%); else the
        exported default (the job's own objective)."""
        return resolve(Setting(lam=lam, budget=budget, share=share, margin=margin), self.calibration)

    def choose(self, scores: np.ndarray, point: OperatingPoint) -> np.ndarray:
        """The evaluated decision rule: argmax of score - lam * cost (+ bias), ties to the cheaper model."""
        return choose(scores, self._costs, point.lam, bias=point.bias)

    def ranked(self, scores: np.ndarray, point: OperatingPoint) -> np.ndarray:
        """(n, n_models) model indices best first under the same rule; column 0 is ``choose``'s pick."""
        return rank(scores, self._costs, point.lam, bias=point.bias)

    def probabilities(self, scores: np.ndarray, point: OperatingPoint, exploration=None) -> np.ndarray:
        """(n, n_models) chance of each model under ``exploration`` (an ``Exploration`` or its string form;
        None: off) at ``point``; its greedy pick is ``choose``'s."""
        return policy_probabilities(scores, self._costs, point.lam, bias=point.bias, exploration=exploration or "off")

    def route(self, prompts: Sequence[str], lam: float | None = None, budget: float | None = None,
              share: dict[str, float] | None = None, tasks: Sequence[str | None] | None = None,
              margin: float | None = None) -> list[str]:
        """The chosen model name per prompt; ``share={"gpt-4": 0.3}`` sends about 30% of calls to gpt-4,
        ``margin=0.05`` the cheapest routing within 5% of the best single model's quality; ``tasks``: per
        prompt, its task tag if known (see ``scores``)."""
        idx = self.choose(self.scores(prompts, tasks), self.operating_point(lam, budget, share, margin))
        return [self.meta.models[i] for i in idx]


def _as_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("pass a list of prompts, not a single string")
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    return prompts
