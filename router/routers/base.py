"""The router estimator contract shared by every family.

A router maps query embeddings X (n, d) to predicted quality per model (n, m). It follows
scikit-learn's conventions: ``__init__`` only stores parameters, ``fit`` validates inputs, sets
trailing-underscore state and returns self, and predictions raise ``NotFittedError`` before fit.
Routers see arrays only; text never reaches them.

``BaseRouter`` implements scikit-learn's parameter protocol (``get_params`` / ``set_params``, so
``sklearn.base.clone`` works) instead of inheriting ``BaseEstimator``: a service loads and runs a
fitted router with numpy alone, and scikit-learn and scipy are imported only by ``fit``.
"""

from __future__ import annotations

import inspect

import numpy as np

from router.policy.rule import choose
from router.policy.propensity import partial_feedback
from router.routers._common import row_blocks


def not_fitted_error(router) -> Exception:
    """scikit-learn's ``NotFittedError`` when scikit-learn is installed (so its tools recognise it),
    else a ``ValueError`` + ``AttributeError`` of the same name and bases."""
    message = f"This {type(router).__name__} instance is not fitted yet. Call 'fit' before using it."
    try:
        from sklearn.exceptions import NotFittedError
    except ImportError:  # a slim serving install
        NotFittedError = type("NotFittedError", (ValueError, AttributeError), {})
    return NotFittedError(message)


class BaseRouter:
    """Base class: subclasses implement ``_fit`` and ``_predict_scores``.

    fit(X, Y, C=None, mask=None, **fit_params):
        X (n, d) float features; Y (n, m) scores with NaN where unknown; C (n, m) $ cost with NaN
        where unknown (optional); mask (n, m) bool, True where Y is observed (default: ~isnan(Y)).
        ``fit_params`` are family-specific run-time resources (e.g. ``client=`` for ``lgbm``), not
        hyper-parameters: they are used during the fit and never stored.
    predict_scores(X) -> (n, m) predicted score per model, in the column order of Y.

    ``fit(..., propensities=P)`` (n, m; NaN where none was logged): logs of the deployed router's own
    traffic, where a query has one scored model chosen with a known propensity. Families with
    ``supports_weights`` learn from them with clipped inverse-propensity weights
    (``router.policy.propensity.partial_feedback``; their ``_fit`` gets ``feedback=``); the others raise.
    """

    supports_weights = False  # can learn from partial (bandit) feedback: ``_fit(..., feedback=)``

    # scikit-learn's parameter protocol ------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        """The ``__init__`` parameter names, sorted (as scikit-learn's ``BaseEstimator``)."""
        init = cls.__init__
        if init is object.__init__:
            return []
        params = inspect.signature(init).parameters.values()
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            raise RuntimeError(f"{cls.__name__}.__init__ must not take *args (scikit-learn's convention)")
        return sorted(p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params):
        valid = self._get_param_names()
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {valid}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {n: p.default for n, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{k}={v!r}" for k, v in self.get_params(deep=False).items()
                   if not _same(v, defaults.get(k, inspect.Parameter.empty))]
        return f"{type(self).__name__}({', '.join(changed)})"

    def fit(self, X, Y, C=None, mask=None, **fit_params):
        X, Y, C, mask = check_fit_inputs(X, Y, C, mask)
        propensities = fit_params.pop("propensities", None)
        feedback = None if propensities is None else partial_feedback(Y, mask, propensities)
        if feedback is not None:
            if not self.supports_weights:
                raise ValueError(f"{type(self).__name__} cannot learn from partial feedback ({feedback.n_bandit} "
                                 "queries with one scored model and its propensity): use a family with "
                                 "supports_weights (best_single, knn, ridge)")
            fit_params["feedback"] = feedback
        self.n_features_in_ = X.shape[1]
        self.n_models_ = Y.shape[1]
        # Mean observed cost per model: the per-query cost is unknown at serving time.
        with np.errstate(invalid="ignore"):
            known = np.isfinite(C)
            self.model_costs_ = np.where(known.any(axis=0), np.nansum(np.where(known, C, 0), 0) /
                                         np.maximum(known.sum(0), 1), 0.0)
        self._fit(X, Y, C, mask, **fit_params)
        return self

    def predict_scores(self, X) -> np.ndarray:
        if not hasattr(self, "n_models_"):
            raise not_fitted_error(self)
        X = check_features(X, self.n_features_in_)
        blocks = row_blocks(len(X))
        if len(blocks) == 1:
            return np.asarray(self._predict_scores(X), dtype=np.float64)
        # A block at a time: heads make float64 copies and (n, references) distances of what they predict.
        return np.concatenate([np.asarray(self._predict_scores(X[b]), dtype=np.float64) for b in blocks])

    def route(self, X, lam: float = 0.0, costs=None) -> np.ndarray:
        """Index of the chosen model per query, by the one decision rule (``router.policy.rule.choose``)."""
        costs = self.model_costs_ if costs is None else costs
        return choose(self.predict_scores(X), costs, lam)

    # subclasses ---------------------------------------------------------------------------
    def _fit(self, X, Y, C, mask) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_scores(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def predict_with_tasks(router: BaseRouter, X, tasks=None) -> np.ndarray:
    """``router.predict_scores(X)``; a family with ``needs_tasks`` also gets the queries' task tags
    when they are known (None: inferred). The one place training and serving decide this."""
    if tasks is not None and getattr(router, "needs_tasks", False):
        return router.predict_scores(X, tasks=tasks)
    return router.predict_scores(X)


def check_features(X, n_features: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_queries, n_features), got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features but the router was fitted with {n_features}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    return X


def check_fit_inputs(X, Y, C=None, mask=None):
    """Validate and align fit inputs; returns (X float32, Y float64, C float64, mask bool)."""
    X = check_features(X)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"Y must be (n_queries, n_models) with n_queries={X.shape[0]}, got shape {Y.shape}")
    if Y.shape[1] < 2:
        raise ValueError(f"routing needs at least 2 models, Y has {Y.shape[1]}")
    mask = ~np.isnan(Y) if mask is None else np.asarray(mask, dtype=bool) & ~np.isnan(Y)
    if mask.shape != Y.shape:
        raise ValueError(f"mask shape {mask.shape} != Y shape {Y.shape}")
    if not mask.any(axis=0).all():
        empty = np.flatnonzero(~mask.any(axis=0)).tolist()
        raise ValueError(f"models at columns {empty} have no observed score")
    C = np.full(Y.shape, np.nan) if C is None else np.asarray(C, dtype=np.float64)
    if C.shape != Y.shape:
        raise ValueError(f"C shape {C.shape} != Y shape {Y.shape}")
    return X, Y, C, mask


def _same(a, b) -> bool:
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError):  # arrays and other values without a plain truth value
        return False
