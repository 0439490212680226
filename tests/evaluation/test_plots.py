"""Figures are written atomically as real PNGs of a sane size."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from router.evaluation import metrics as E
from router.evaluation.report import build_report
from router.data.labels import model_means
from router.evaluation.plots import plot_cost_quality, plot_routing_share
from router.evaluation.splits import split_queries


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header; fails if the file is not a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def nq_report(nq):
    split = split_queries(nq, seed=0, test_size=0.3)
    train, test = nq.subset(split.train), nq.subset(split.test)
    rng = np.random.default_rng(0)
    means = np.tile(model_means(train.scores, train.mask), (test.n_queries, 1))
    results = {
        "noisy oracle": E.evaluate_router(test.scores + rng.normal(0, 0.3, test.scores.shape), test, train,
                                          n_boot=100),
        "train means": E.evaluate_router(means + rng.normal(0, 0.05, means.shape), test, train, n_boot=100),
    }
    return build_report(results, train, test)


def test_cost_quality_png(nq_report, tmp_path):
    out = plot_cost_quality(nq_report, tmp_path / "figs" / "cost_quality.png")
    assert out == tmp_path / "figs" / "cost_quality.png" and out.stat().st_size > 20_000
    width, height = png_size(out)
    assert 700 <= width <= 2500 and 400 <= height <= 1500
    assert [p.name for p in out.parent.iterdir()] == ["cost_quality.png"]  # no temp file left
    # a dict of results works too, and overwriting replaces the file
    plot_cost_quality(nq_report.routers, out, title="again", budget=3e-5)
    assert png_size(out)[0] > 0


def test_single_model_labels_never_overlap():
    """Labels of points close together are stacked, not drawn over each other."""
    from router.evaluation.plots import label_offsets

    pts = np.array([[100.0, 100.0], [102.0, 101.0], [104.0, 99.0], [400.0, 100.0]])
    widths = np.full(4, 60.0)
    dy = label_offsets(pts, widths)
    boxes = [(x + 4, y + 4 + d, x + 64, y + 4 + d + 9) for (x, y), d in zip(pts, dy)]
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = boxes[i], boxes[j]
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (i, j, dy)
    assert dy[3] == 0  # a label with room stays where it is


def test_routing_share_png(nq_report, tmp_path):
    result = nq_report.routers["noisy oracle"]
    out = plot_routing_share(result, nq_report.baselines.models, tmp_path / "share.png")
    width, height = png_size(out)
    assert out.stat().st_size > 5_000 and 500 <= width <= 2000 and 200 <= height <= 1500
    with pytest.raises(ValueError, match="model names"):
        plot_routing_share(result, nq_report.baselines.models[:2], tmp_path / "bad.png")


def test_cost_quality_needs_costs(mmlu_small, tmp_path):
    data = mmlu_small.select_models(mmlu_small.complete_models()[:3])
    split = split_queries(data, seed=0, test_size=0.3)
    train, test = data.subset(split.train), data.subset(split.test)
    result = E.evaluate_router(test.scores, test, train, n_boot=50)
    with pytest.raises(ValueError, match="no cost information"):
        plot_cost_quality({"perfect": result}, tmp_path / "cq.png")
    assert not (tmp_path / "cq.png").exists()
