"""The runtime router: embedder + fitted head + metadata, answering prompts -> model names.

Used by the MLflow pyfunc (``pyfunc_model.py``) and by ``router.load``. The head is read by
``router.serve.artifact`` (data only, never pickle); choices go through the one decision rule,
``router.evaluation.decision.choose``, as in evaluation. Thread-safe, and no request waits for
another: the ONNX embedders and the head's numpy prediction run concurrently, and a huge prompt
costs only its first tokens (``router.embed.truncate``). Only the torch backend, whose tokenizer
is reconfigured on every call, serialises embedding behind a lock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from router.embed import Embedder
from router.evaluation.decision import choose, share_bias
from router.routers.base import predict_with_tasks
from router.serve.artifact import ArtifactError, ArtifactVersionError, load_head

META_FILE = "router_meta.json"
META_VERSION = 1  # bump when a field changes meaning or loses its default; older exports then ask for a retrain


@dataclass(frozen=True)
class RouterMeta:
    """What the exported router needs beside its head and weights."""

    models: list[str]
    model_costs: list[float]  # mean $ per call per model, from training logs (0 when unknown)
    default_lam: float
    embedder: dict  # Embedder.settings() at training time; serving reproduces them
    router: str  # family name
    budget_curve: list[list[float]] = field(default_factory=list)  # [lam, $/query, quality] on held-out
    default_bias: list[float] = field(default_factory=list)  # per model; non-zero for a trained share target
    share_margins: list[list[float]] = field(default_factory=list)  # decision.margin_quantiles at default_lam
    # Embedder.id at training time (empty: an older export). Equal ids give equal vectors, so a job with the
    # same embedder scores this router on vectors it already has instead of embedding every prompt again.
    embedder_id: str = ""
    format_version: int = META_VERSION

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)

    @classmethod
    def read(cls, path: Path) -> RouterMeta:
        """The metadata at ``path``; a foreign or older file raises ``ArtifactError`` / ``ArtifactVersionError``."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: cannot be read as router metadata ({exc})") from None
        if not isinstance(raw, dict):
            raise ArtifactError(f"{path}: expected a JSON object of router metadata")
        if raw.get("format_version") != META_VERSION:
            raise ArtifactVersionError(
                f"{path}: written with metadata format {raw.get('format_version', 0)}; this release reads "
                f"format {META_VERSION}: retrain the router with this release")
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ArtifactError(f"{path}: unexpected router metadata fields ({exc})") from None


class RouterService:
    """Routes prompts. ``route(prompts, lam=None, budget=None) -> list[str]``; ``scores(prompts)``."""

    def __init__(self, embedder: Embedder, head, meta: RouterMeta) -> None:
        self.embedder = embedder
        self.head = head
        self.meta = meta
        self._costs = np.asarray(meta.model_costs, dtype=np.float64)
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

    def lam_for(self, lam: float | None = None, budget: float | None = None) -> float:
        """The lambda to use: given, else the one meeting ``budget`` ($/query), else the default."""
        if lam is not None:
            if lam < 0:
                raise ValueError(f"lam must be >= 0, got {lam}")
            return float(lam)
        if budget is not None:
            return lam_for_budget(self.meta.budget_curve, budget)
        return float(self.meta.default_lam)

    def operating_point(self, lam: float | None = None, budget: float | None = None,
                        share: dict[str, float] | None = None) -> tuple[float, np.ndarray | None]:
        """(lambda, bias) for a call: a given lam or budget, or ``share={model: fraction}`` of the calls
        to one model (from the margins calibrated on training queries, at the default lambda), else
        the exported default (which includes the job's share target, if it had one)."""
        if share is not None:
            if lam is not None or budget is not None:
                raise ValueError("share is calibrated at the router's default lambda: pass share alone, "
                                 "without lam or budget")
            if len(share) != 1:
                raise ValueError(f"share takes one model, e.g. {{'{self.models[0]}': 0.3}}, got {share}")
            (model, value), = share.items()
            if model not in self.meta.models:
                raise ValueError(f"share: unknown model {model!r}; this router routes to {self.models}")
            if not self.meta.share_margins:
                raise ValueError("this router was exported without share margins: retrain it with this release")
            return float(self.meta.default_lam), share_bias(np.asarray(self.meta.share_margins),
                                                            self.meta.models.index(model), float(value))
        if lam is None and budget is None and self.meta.default_bias:
            return float(self.meta.default_lam), np.asarray(self.meta.default_bias, dtype=np.float64)
        return self.lam_for(lam, budget), None

    def choose(self, scores: np.ndarray, lam: float, bias: np.ndarray | None = None) -> np.ndarray:
        """The evaluated decision rule: argmax of score - lam * cost (+ bias), ties to the cheaper model."""
        return choose(scores, self._costs, lam, bias=bias)

    def ranked(self, scores: np.ndarray, lam: float, bias: np.ndarray | None = None) -> np.ndarray:
        """(n, n_models) model indices best first under the same rule; column 0 is ``choose``'s pick."""
        from router.evaluation.decision import rank

        return rank(scores, self._costs, lam, bias=bias)

    def probabilities(self, scores: np.ndarray, lam: float, bias: np.ndarray | None = None,
                      exploration=None) -> np.ndarray:
        """(n, n_models) chance of each model under ``exploration`` (an ``Exploration`` or its string form;
        None: off) at this operating point; its greedy pick is ``choose``'s."""
        from router.evaluation.decision import policy_probabilities

        return policy_probabilities(scores, self._costs, lam, bias=bias, exploration=exploration or "off")

    def route(self, prompts: Sequence[str], lam: float | None = None, budget: float | None = None,
              share: dict[str, float] | None = None, tasks: Sequence[str | None] | None = None) -> list[str]:
        """The chosen model name per prompt; ``share={"gpt-4": 0.3}`` sends about 30% of calls to gpt-4;
        ``tasks``: per prompt, its task tag if known (see ``scores``)."""
        idx = self.choose(self.scores(prompts, tasks), *self.operating_point(lam, budget, share))
        return [self.meta.models[i] for i in idx]


def lam_for_budget(curve: list[list[float]], budget: float) -> float:
    """Smallest lambda (best quality) whose held-out cost per query is within ``budget``.

    If no point of the curve is that cheap, the largest lambda (cheapest routing) is used.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0 $/query, got {budget}")
    if not curve:
        raise ValueError("this router was exported without a cost curve: pass lam instead of budget")
    points = sorted(curve, key=lambda p: p[0])
    for lam, cost, _quality in points:
        if cost <= budget:
            return float(lam)
    return float(points[-1][0])


def _as_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("pass a list of prompts, not a single string")
    prompts = list(prompts)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompts must be strings; item {bad[0]} is {type(prompts[bad[0]]).__name__}")
    return prompts
