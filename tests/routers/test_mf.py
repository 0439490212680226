"""The matrix-factorisation family (router.routers.mf): it learns a side of the space, and its gradient is right."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import scipy.optimize

from router.routers.mf import MFRouter


def test_mf_learns_a_model_that_wins_on_one_side_of_the_space():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    # Model 1 wins when x0 > 0, model 0 otherwise; model 2 always loses.
    Y = np.stack([X[:, 0] <= 0, X[:, 0] > 0, np.zeros(300, bool)], axis=1).astype(float)
    router = MFRouter(dim=4, alpha=0.001, max_iter=200).fit(X, Y)
    assert (router.route(X) == Y.argmax(axis=1)).mean() > 0.9


def test_mf_gradient_matches_finite_differences(monkeypatch):
    """The hand-written pairwise gradient is what L-BFGS relies on: check it numerically."""
    import router.routers.mf as mf

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 5)), rng.random((30, 4))
    captured = {}

    def capture(fun, x0, **_):  # stands in for the optimiser: keep the objective, return x0
        captured["fun"], captured["x0"] = fun, x0
        return SimpleNamespace(x=x0, nit=0)

    monkeypatch.setattr(scipy.optimize, "minimize", capture)  # fit imports it when it runs
    MFRouter(dim=3, alpha=0.1).fit(X, Y)
    fun = captured["fun"]
    w = captured["x0"] + 0.1 * rng.normal(size=captured["x0"].shape)
    eps = 1e-3  # the loss is evaluated in float32: central differences with a moderate step
    numeric = np.array([(fun(w + eps * e)[0] - fun(w - eps * e)[0]) / (2 * eps) for e in np.eye(len(w))])
    np.testing.assert_allclose(fun(w)[1], numeric, atol=1e-3 * np.abs(numeric).max())
