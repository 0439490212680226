"""Curve metrics over a lambda sweep (pure functions).

- AIQ (RouterBench): mean height of the router's non-decreasing convex hull over its cost range
  (see ``aiq``).
- Two-model pools (RouteLLM): APGR and CPT(x%) over the curve of strong-call share (see
  ``strong_share_curve``, ``apgr``, ``cpt``).
- Matched spend: the quality a router's hull reaches at a given spend, the spend it needs for a
  given quality, and the same for a random mixture of single models (see ``quality_at_cost``,
  ``cost_at_quality``, ``single_model_hull_quality``).
"""

from __future__ import annotations

import math

import numpy as np

# --------------------------------------------------------------------------- AIQ


def nondecreasing_hull(costs, qualities) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (cost, quality) of the non-decreasing upper convex hull of the points.

    The upper hull is what mixing two operating points at random can reach; it is cut at its
    highest point, because spending more never has to buy less quality (one can always spend
    less). Points on or below the hull are dropped.
    """
    c = np.asarray(costs, dtype=np.float64)
    q = np.asarray(qualities, dtype=np.float64)
    if c.shape != q.shape or c.ndim != 1 or len(c) == 0:
        raise ValueError(f"costs and qualities must be equal-length 1-D arrays, got {c.shape} and {q.shape}")
    if not (np.isfinite(c).all() and np.isfinite(q).all()):
        raise ValueError("costs and qualities must be finite")
    order = np.lexsort((-q, c))  # by cost, best quality first at equal cost
    c, q = c[order], q[order]
    keep = np.r_[True, c[1:] != c[:-1]]
    c, q = c[keep], q[keep]
    hull: list[int] = []
    for k in range(len(c)):
        # pop the last vertex while it lies on or below the segment from the one before to k
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            if (c[b] - c[a]) * (q[k] - q[a]) - (q[b] - q[a]) * (c[k] - c[a]) >= 0:
                hull.pop()
            else:
                break
        hull.append(k)
    hc, hq = c[hull], q[hull]
    top = int(np.argmax(hq))
    return hc[: top + 1], hq[: top + 1]


def aiq(costs, qualities, cost_range: tuple[float, float] | None = None) -> float:
    """Average Improvement in Quality (RouterBench): mean height of the non-decreasing convex hull.

    AIQ = 1 / (c_max - c_min) * integral over [c_min, c_max] of hull(c) dc, where the hull is
    ``nondecreasing_hull`` of the router's own (cost, quality) points, flat after its highest
    point, and [c_min, c_max] is the range of those points' costs (RouterBench's paper; its code
    divides by c_max instead and extends all routers to a common c_max). ``cost_range`` gives a
    common range instead; the hull is flat to its right and cannot start left of the cheapest
    point. A single cost gives the best quality at that cost.
    """
    hc, hq = nondecreasing_hull(costs, qualities)
    lo, hi = (float(hc[0]), float(np.max(costs))) if cost_range is None else map(float, cost_range)
    if lo < hc[0] - 1e-12 * max(1.0, abs(hc[0])) or hi < lo:
        raise ValueError(f"cost_range {cost_range} must satisfy cheapest point {hc[0]:.6g} <= lo <= hi")
    if hi <= lo:
        return float(np.interp(lo, hc, hq))
    x = np.concatenate([[lo], hc[(hc > lo) & (hc < hi)], [hi]])
    y = np.interp(x, hc, hq)  # np.interp is flat past the last vertex
    return float(np.trapezoid(y, x) / (hi - lo))


# --------------------------------------------------------------------------- matched spend


def _below(x: float, ref: float) -> bool:
    """``x`` is below ``ref`` by more than rounding (the tolerance ``aiq`` uses)."""
    return x < ref - 1e-12 * max(1.0, abs(ref))


def quality_at_cost(costs, qualities, budget: float) -> float:
    """Best quality the router's curve reaches at a spend of at most ``budget`` ($/query).

    The curve's points are (mean cost, mean quality) of its lambda sweep; a random mix of two
    adjacent operating points reaches every point of the segment between them (RouterBench's
    argument), and spending less is always allowed, so the answer is the height of
    ``nondecreasing_hull`` at ``budget``: linear between hull vertices, flat past the best one.
    NaN when ``budget`` is below the cheapest point (nothing on the curve is affordable).
    """
    hc, hq = nondecreasing_hull(costs, qualities)
    budget = float(budget)
    if math.isnan(budget) or _below(budget, float(hc[0])):
        return math.nan
    return float(np.interp(max(budget, float(hc[0])), hc, hq))


def cost_at_quality(costs, qualities, target: float) -> float:
    """Least spend ($/query) at which the router's hull reaches quality >= ``target``.

    The inverse of ``quality_at_cost`` on the same hull (strictly increasing up to its best
    vertex): the cheapest point's cost when it already reaches ``target``, linear between hull
    vertices otherwise. NaN when no point of the curve reaches ``target``.
    """
    hc, hq = nondecreasing_hull(costs, qualities)
    target = float(target)
    if math.isnan(target) or _below(float(hq[-1]), target):
        return math.nan
    if target <= hq[0]:
        return float(hc[0])
    return float(np.interp(min(target, float(hq[-1])), hq, hc))


def single_model_hull_quality(single_costs, single_qualities, budget: float) -> float:
    """Quality of the best random mixture of single models that spends at most ``budget`` per query.

    Calling model i on a random share p_i of the queries costs sum p_i c_i and scores sum p_i q_i,
    so the reachable set is the convex hull of the models' (cost, quality) points and the best
    quality at a spend is ``quality_at_cost`` over those points: the no-router baseline a router
    must beat at matched spend. NaN when ``budget`` is below the cheapest model's cost.
    """
    return quality_at_cost(single_costs, single_qualities, budget)


# --------------------------------------------------------------------------- two-model pools


def strong_share_curve(advantage, strong_scores, weak_scores) -> tuple[np.ndarray, np.ndarray]:
    """Quality against the share of calls to the strong model (RouteLLM's threshold sweep).

    Queries are sent to the strong model in decreasing order of ``advantage`` (predicted strong
    minus weak score); at share k/n the k most favoured go strong. Queries with equal advantage
    cannot be ordered by the router, so inside a tie group the curve is the expected quality of
    a random order (linear between the group's ends). Returns shares (n+1,) from 0 to 1 and the
    mean quality at each.
    """
    d = np.asarray(advantage, dtype=np.float64)
    gain = np.asarray(strong_scores, dtype=np.float64) - np.asarray(weak_scores, dtype=np.float64)
    n = len(d)
    if n == 0 or gain.shape != d.shape:
        raise ValueError(f"advantage and scores must be equal-length and non-empty, got {d.shape} and {gain.shape}")
    order = np.argsort(-d, kind="stable")
    ds = d[order]
    cum = np.concatenate([[0.0], np.cumsum(gain[order])])
    ends = np.flatnonzero(np.r_[True, ds[1:] != ds[:-1], True])  # tie-group boundaries in 0..n
    k = np.arange(n + 1)
    cum = np.interp(k, ends, cum[ends])
    return k / n, float(np.mean(weak_scores)) + cum / n


def _pgr(qualities, weak: float, strong: float) -> np.ndarray | None:
    gap = strong - weak
    return None if gap <= 1e-12 else (np.asarray(qualities, dtype=np.float64) - weak) / gap


def apgr(shares, qualities, weak: float, strong: float) -> float:
    """Average Performance Gap Recovered (RouteLLM).

    PGR(s) = (quality(s) - weak) / (strong - weak) at strong-call share s; APGR is its integral
    over s in [0, 1] (trapezoid over the given points, which must span 0..1). RouteLLM's code
    integrates ~10 threshold points; ``strong_share_curve`` gives every share k/n. 0.5 is a
    random router; NaN when strong <= weak on these queries.
    """
    pgr = _pgr(qualities, weak, strong)
    if pgr is None:
        return math.nan
    s = np.asarray(shares, dtype=np.float64)
    return float(np.trapezoid(pgr, s) / (s[-1] - s[0]))


def cpt(shares, qualities, weak: float, strong: float, level: float) -> float:
    """Call-Performance Threshold CPT(level) (RouteLLM): the smallest share of strong-model calls
    at which PGR reaches ``level`` (0.5 for CPT(50%)), linear between curve points (a random mix
    of two neighbouring thresholds realises it). NaN when strong <= weak or never reached.
    """
    pgr = _pgr(qualities, weak, strong)
    if pgr is None:
        return math.nan
    s = np.asarray(shares, dtype=np.float64)
    hit = np.flatnonzero(pgr >= level - 1e-12)
    if hit.size == 0:
        return math.nan
    i = int(hit[0])
    if i == 0:
        return float(s[0])
    t = (level - pgr[i - 1]) / (pgr[i] - pgr[i - 1])
    return float(s[i - 1] + t * (s[i] - s[i - 1]))
