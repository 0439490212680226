"""Figures of an evaluation: the cost-quality curve and the routing share.

Uses matplotlib's object API (``Figure`` rendered by the Agg canvas): no pyplot global state, no
window, safe in jobs and threads. PNGs are written to a temporary file and moved into place, so a
reader never sees a half-written image.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from router.evaluation.curves import nondecreasing_hull
from router.evaluation.metrics import Baselines, RouterResult
from router.evaluation.report import EvaluationReport

_LOG_X_SPAN = 20.0  # log-x once the dearest point costs this many times the cheapest


def _short(model: str, width: int = 28) -> str:
    """Model name without its provider prefix, clipped for labels."""
    name = model.rsplit("/", 1)[-1]
    return name if len(name) <= width else name[: width - 1] + "…"


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120, bbox_inches="tight")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a figure is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def label_offsets(points: np.ndarray, widths: np.ndarray, height: float = 11.0, gap: float = 2.0) -> np.ndarray:
    """Vertical offsets (display points) for labels placed to the right of ``points`` (n, 2 display
    coordinates) so that no two overlap: each label, taken left to right, moves up in steps of one
    line until its box is clear of the boxes already placed. ``widths``: each label's width."""
    placed: list[tuple[float, float, float, float]] = []
    offsets = np.zeros(len(points))
    for i in np.lexsort((points[:, 1], points[:, 0])):
        x0, y = points[i, 0] + 4.0, points[i, 1] + 4.0
        step = 0
        while any(x0 < bx1 and bx0 < x0 + widths[i] and y + step * height < by1 and by0 < y + step * height + height
                  for bx0, by0, bx1, by1 in placed):
            step += 1
        offsets[i] = step * height
        placed.append((x0, y + offsets[i], x0 + widths[i], y + offsets[i] + height - gap))
    return offsets


def plot_cost_quality(
    report: EvaluationReport | dict[str, RouterResult],
    path: str | os.PathLike,
    *,
    title: str | None = None,
    budget: float | None = None,
    shipped: str | None = None,
    margin: float | None = None,
) -> Path:
    """Each router's lambda sweep (points, with its non-decreasing hull dashed, operating point
    ringed), every single model as a labelled point (labels never overlap), the oracle as a star,
    the budget ($/query) as a vertical line when given, the ``shipped`` router's operating point as a
    large marker, and, with a savings ``margin``, the band of quality within it of the best single
    model. The cost axis turns logarithmic when costs span more than ``_LOG_X_SPAN`` times. Returns
    the path."""
    routers = report.routers if isinstance(report, EvaluationReport) else dict(report)
    if not routers:
        raise ValueError("no router results to plot")
    base: Baselines = report.baselines if isinstance(report, EvaluationReport) \
        else next(iter(routers.values())).baselines
    if not base.has_cost:
        raise ValueError("the logs have no cost information: a cost-quality plot needs costs")

    curves = {name: (np.asarray(r.curve["cost"], dtype=float), np.asarray(r.curve["quality"], dtype=float))
              for name, r in routers.items()}
    all_costs = np.concatenate([base.single_cost, [base.oracle_cost], *(c for c, _ in curves.values())])
    positive = all_costs[np.isfinite(all_costs) & (all_costs > 0)]
    log_x = positive.size > 0 and positive.max() / positive.min() >= _LOG_X_SPAN

    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    for i, (name, r) in enumerate(routers.items()):
        _draw_router(ax, name, r, *curves[name], color=f"C{i % 10}", log_x=log_x)
    ax.scatter(base.single_cost, base.single_quality, marker="s", s=36, color="0.35", zorder=3,
               label="single models")
    _draw_references(ax, base, budget=budget, margin=margin)
    if shipped is not None and shipped in routers:
        r = routers[shipped]
        ax.scatter([r.cost], [r.quality], marker="P", s=160, color="black", zorder=6, label=f"shipped: {shipped}")

    if log_x:
        ax.set_xscale("log")
    else:  # "2e-05" reads better than matplotlib's "0.00002" for per-query dollars
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:.3g}"))
    _label_models(fig, ax, base)
    ax.set_xlabel("mean cost per query ($)")
    ax.set_ylabel("mean quality")
    ax.set_title(title or f"Cost-quality on {base.n_eval} test queries (circle: operating point)")
    ax.grid(True, alpha=0.3, which="both")
    # outside the axes, so it never hides a model's point or label
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, path)


def _draw_references(ax, base: Baselines, *, budget: float | None, margin: float | None) -> None:
    """What routers are read against: the budget line, the best single model, the oracle, random, and the
    band of quality within ``margin`` of the reference model."""
    if budget is not None:
        ax.axvline(budget, color="crimson", lw=1.2, ls="-.", label=f"budget ${budget:.3g}/query")
    best = base.best_single
    ax.scatter([base.single_cost[best]], [base.single_quality[best]], marker="s", s=90, facecolors="none",
               edgecolors="black", zorder=4, label=f"best single (train): {_short(base.models[best])}")
    ax.scatter([base.oracle_cost], [base.oracle_quality], marker="*", s=220, color="gold", edgecolors="black",
               zorder=5, label="oracle")
    ax.axhline(base.random_quality, color="0.6", lw=1, ls=":", label="random (uniform)")
    if margin is not None:
        q = base.single_quality[base.reference]
        ax.axhspan(q - margin * abs(q), q, color="seagreen", alpha=0.12, lw=0,
                   label=f"within {margin:g} of {_short(base.models[base.reference])}'s quality")


def _draw_router(ax, name: str, r: RouterResult, c: np.ndarray, q: np.ndarray, *, color: str, log_x: bool) -> None:
    """One router: its sweep's points, its non-decreasing hull dashed, its operating point ringed."""
    hc, hq = nondecreasing_hull(c, q)
    hc, hq = np.r_[hc, c.max()], np.r_[hq, hq[-1]]  # flat after the best point, as AIQ counts it
    if log_x and hc[0] > 0:  # hull segments are straight in $, so draw them densely on log-x
        x = np.union1d(hc, np.geomspace(hc[0], hc[-1], 200))
        hc, hq = x, np.interp(x, hc, hq)
    label = name if r.aiq is None else f"{name} (AIQ {r.aiq:.3f})"
    ax.plot(c, q, "o", ms=3, color=color, alpha=0.5)
    ax.plot(hc, hq, "--", color=color, lw=1.5, label=label)
    ax.plot([r.cost], [r.quality], "o", ms=9, mfc="none", mec=color, mew=2)


def _label_models(fig, ax, base: Baselines) -> None:
    """Each single model's name beside its point, lifted where labels would overlap. Call it last, once the
    scale and limits are final: offsets are computed in display points."""
    ax.autoscale_view()
    names = [_short(m) for m in base.models]
    xy = np.column_stack([base.single_cost, base.single_quality])
    pts = ax.transData.transform(xy) * 72.0 / fig.dpi
    for j, dy in enumerate(label_offsets(pts, np.array([5.0 * len(n) for n in names]))):
        ax.annotate(names[j], tuple(xy[j]), xytext=(4, 4 + dy), textcoords="offset points", fontsize=8,
                    color="0.25", arrowprops={"arrowstyle": "-", "color": "0.7", "lw": 0.5} if dy else None)


def plot_routing_share(
    result: RouterResult, models: tuple[str, ...] | list[str], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """Horizontal bars: share of test queries routed to each model, largest on top."""
    share = np.asarray(result.routing_share, dtype=np.float64)
    if len(models) != len(share):
        raise ValueError(f"{len(models)} model names for {len(share)} shares")
    order = np.argsort(share, kind="stable")  # barh draws bottom-up: largest ends on top
    fig = Figure(figsize=(7, 0.45 * len(models) + 1.4))
    ax = fig.add_subplot()
    # numeric positions: two models with the same short name must not merge into one bar
    bars = ax.barh(np.arange(len(order)), 100 * share[order], color="C0")
    ax.set_yticks(np.arange(len(order)), [_short(models[j], 40) for j in order])
    ax.bar_label(bars, labels=[f"{100 * s:.1f}%" for s in share[order]], padding=3, fontsize=8)
    ax.set_xlabel("share of test queries routed (%)")
    ax.set_xlim(0, min(100.0, 100 * share.max() * 1.2 + 5))
    ax.margins(y=0.01)
    ax.set_title(title or f"Routing share at lambda={result.lam:g}")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, path)
