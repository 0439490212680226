"""Router families and a small registry: name -> estimator class.

Every family is a ``BaseRouter`` (see ``base``): ``fit(X, Y, C=None, mask=None)`` then
``predict_scores(X)`` / ``route(X, lam)``. ``make_router("ridge", alpha=1.0)`` builds one by name.
Hyper-parameters given as a tuple are candidates, chosen by CV on the training data (scored by
routing quality); a fitted router exposes the choice as ``best_params_`` (params to pass to
``set_params`` to refit without the search) and the scores as ``cv_results_``.
"""

from __future__ import annotations

from router.routers.base import BaseRouter
from router.routers.baselines import BestSingleRouter, RandomRouter
from router.routers.classifier import ClassifierRouter
from router.routers.cluster import ClusterRouter
from router.routers.ensemble import EnsembleRouter
from router.routers.irt import IRTRouter
from router.routers.knn import KNNRouter
from router.routers.lgbm import LGBMRouter
from router.routers.linear import LogisticRouter, RidgeRouter
from router.routers.mf import MFRouter
from router.routers.task import TaskRouter

ROUTERS: dict[str, type[BaseRouter]] = {
    "best_single": BestSingleRouter,
    "random": RandomRouter,
    "knn": KNNRouter,
    "ridge": RidgeRouter,
    "logistic": LogisticRouter,
    "lgbm": LGBMRouter,
    "classifier": ClassifierRouter,
    "mf": MFRouter,
    "cluster": ClusterRouter,
    "irt": IRTRouter,
    "task": TaskRouter,
    "ensemble": EnsembleRouter,
}


def make_router(name: str, **params) -> BaseRouter:
    """An unfitted router of family ``name`` with ``params``; unknown names or params are named."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}; valid names: {sorted(ROUTERS)}")
    cls = ROUTERS[name]
    valid = cls._get_param_names()
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"router {name!r} has no parameter(s) {unknown}; valid: {valid}")
    return cls(**params)


__all__ = [
    "ROUTERS", "BaseRouter", "BestSingleRouter", "ClassifierRouter", "ClusterRouter", "EnsembleRouter",
    "IRTRouter", "KNNRouter", "LGBMRouter", "LogisticRouter", "MFRouter", "RandomRouter", "RidgeRouter", "TaskRouter",
    "make_router",
]
