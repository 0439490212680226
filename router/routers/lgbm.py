"""LightGBM per-model score regressors (the reward-model form), kept fast for small CPUs."""

from __future__ import annotations

import numpy as np

from router.routers._common import check_choice, row_centre
from router.routers.base import BaseRouter

TARGETS = ("raw", "centred")


class LGBMRouter(BaseRouter):
    """One gradient-boosted regressor per model on (optionally PCA-reduced) features.

    Each booster early-stops on a seeded internal validation split (``validation_fraction`` of the
    training queries) and keeps its best iteration. ``n_components`` reduces the features by PCA
    first (None keeps them all): trees split one feature at a time, and a few dozen principal
    directions carry most of a sentence embedding's signal at a fraction of the cost.
    ``target="centred"`` fits score minus the query's mean score. Speed settings follow the stack
    notes: ``max_bin=63``, col-wise histograms, and an explicit thread count (default 1: LightGBM
    threads fight badly with other work on a shared 2-core machine).
    """

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 40,
        colsample_bytree: float = 0.8,
        reg_lambda: float = 1.0,
        n_components: int | None = 64,
        target: str = "centred",
        max_bin: int = 63,
        early_stopping_rounds: int = 30,
        validation_fraction: float = 0.15,
        num_threads: int = 1,
        random_state: int = 0,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.n_components = n_components
        self.target = target
        self.max_bin = max_bin
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.num_threads = num_threads
        self.random_state = random_state

    def _fit(self, X, Y, C, mask) -> None:
        import lightgbm as lgb  # imported here: only this family needs it

        check_choice("target", self.target, TARGETS)
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if not 1 <= self.num_threads <= 2:
            raise ValueError(f"num_threads must be 1 or 2 on this project's machines, got {self.num_threads}")
        self.pca_ = None
        if self.n_components is not None and self.n_components < X.shape[1]:
            from sklearn.decomposition import PCA

            self.pca_ = PCA(self.n_components, svd_solver="randomized", random_state=self.random_state).fit(X)
        Z = self._features(X)
        T = row_centre(Y, mask) if self.target == "centred" else Y
        rng = np.random.default_rng(self.random_state)
        is_val = rng.random(len(X)) < self.validation_fraction
        params = {
            "objective": "regression",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.colsample_bytree,
            "lambda_l2": self.reg_lambda,
            "max_bin": self.max_bin,
            "force_col_wise": True,
            "num_threads": self.num_threads,
            "seed": self.random_state,
            "deterministic": True,
            "verbosity": -1,
        }
        self.boosters_ = []
        self.best_iterations_ = []
        for j in range(Y.shape[1]):
            tr, va = mask[:, j] & ~is_val, mask[:, j] & is_val
            if tr.sum() < 2 * self.min_child_samples or va.sum() == 0:
                # Too few observations for a tree: predict the observed mean (a constant booster
                # would need the same data); stored as a float.
                self.boosters_.append(float(np.mean(T[mask[:, j], j])))
                self.best_iterations_.append(0)
                continue
            dtrain = lgb.Dataset(Z[tr], T[tr, j], params={"max_bin": self.max_bin}, free_raw_data=True)
            dvalid = lgb.Dataset(Z[va], T[va, j], reference=dtrain)
            booster = lgb.train(
                params, dtrain, num_boost_round=self.n_estimators, valid_sets=[dvalid],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            best = int(booster.best_iteration or self.n_estimators)
            self.best_iterations_.append(best)
            # Keep only the trees up to the best iteration: smaller pickles, faster predict.
            self.boosters_.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=best)))

    def _features(self, X) -> np.ndarray:
        return X if self.pca_ is None else self.pca_.transform(X).astype(np.float32)

    def _predict_scores(self, X) -> np.ndarray:
        Z = self._features(X)
        out = np.empty((len(X), self.n_models_))
        for j, b in enumerate(self.boosters_):
            out[:, j] = b if isinstance(b, float) else b.predict(Z, num_threads=self.num_threads)
        return out
