"""LightGBM per-model score regressors (the reward-model form), kept fast for small CPUs."""

from __future__ import annotations

import numpy as np

from router.routers._common import check_choice, row_centre
from router.routers.base import BaseRouter

TARGETS = ("raw", "centred")
_SKLEARN_ALIASES = {"min_data_in_leaf": "min_child_samples", "feature_fraction": "colsample_bytree",
                    "lambda_l2": "reg_lambda", "seed": "random_state"}  # engine name -> sklearn wrapper name


class LGBMRouter(BaseRouter):
    """One gradient-boosted regressor per model on (optionally PCA-reduced) features.

    Each booster early-stops on a seeded internal validation split (``validation_fraction`` of the
    training queries) and keeps its best iteration. ``n_components`` reduces the features by PCA
    first (None keeps them all): trees split one feature at a time, and a few dozen principal
    directions carry most of a sentence embedding's signal at a fraction of the cost.
    ``target="centred"`` fits score minus the query's mean score. Speed settings follow the stack
    notes: ``max_bin=63``, col-wise histograms, and an explicit thread count (default 1: LightGBM
    threads fight badly with other work on a shared 2-core machine). ``max_train_queries``: above that
    many training queries the projection and the boosters learn from a seeded sample of that size (in
    every CV fold too, so CV grades the router as it will run): ten boosters on 700,000 queries took
    222 s, and noisy 0/1 targets gain little from more rows than that.

    ``fit(..., client=...)``: a connected ``distributed.Client`` (the job opens and closes it; the
    router never does); each regressor then trains on the cluster's workers with ``lightgbm.dask``
    (data-parallel, one data part per worker, the worker's thread count) and comes back as a plain
    booster, so the fitted router predicts and exports without the cluster. Its best iteration is
    chosen by replaying early stopping on the full validation curve, computed here from the
    trained trees (lightgbm.dask has no early-stopping callback).
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
        max_train_queries: int | None = 100_000,
        num_threads: int = 1,
        random_state: int = 0,
    ):
        self.max_train_queries = max_train_queries
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

    def _fit(self, X, Y, C, mask, client=None) -> None:
        self._check_params()
        cap = self.max_train_queries
        if cap is not None and len(X) > cap:
            keep = np.sort(np.random.default_rng(self.random_state).choice(len(X), cap, replace=False))
            X, Y, mask = X[keep], Y[keep], mask[keep]
        # The projection is kept as two arrays (not a PCA object): predicting needs no scikit-learn.
        self.pca_mean_ = self.pca_components_ = None
        if self.n_components is not None and self.n_components < X.shape[1]:
            from sklearn.decomposition import PCA

            # PCA takes at most as many components as rows: a fit on a few dozen queries keeps fewer.
            k = min(self.n_components, len(X))
            pca = PCA(k, svd_solver="randomized", random_state=self.random_state).fit(X)
            self.pca_mean_ = pca.mean_.astype(np.float32)
            self.pca_components_ = pca.components_.astype(np.float32)
        Z = self._features(X)
        T = row_centre(Y, mask) if self.target == "centred" else Y
        rng = np.random.default_rng(self.random_state)
        is_val = rng.random(len(X)) < self.validation_fraction
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
            booster, best = self._train_one(Z[tr], T[tr, j], Z[va], T[va, j], client)
            self.best_iterations_.append(best)
            self.boosters_.append(booster)

    def _check_params(self) -> None:
        check_choice("target", self.target, TARGETS)
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
        cap = self.max_train_queries
        if cap is not None and (isinstance(cap, bool) or cap < 1):
            raise ValueError(f"max_train_queries must be an integer >= 1 or None, got {cap!r}")

    def _train_one(self, Z_tr, t_tr, Z_va, t_va, client):
        """One model's booster, early-stopped on its validation rows and cut to its best iteration."""
        import lightgbm as lgb  # imported here: only this family needs it

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
        if client is None:
            dtrain = lgb.Dataset(Z_tr, t_tr, params={"max_bin": self.max_bin}, free_raw_data=True)
            dvalid = lgb.Dataset(Z_va, t_va, reference=dtrain)
            booster = lgb.train(
                params, dtrain, num_boost_round=self.n_estimators, valid_sets=[dvalid],
                callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
            )
            best = int(booster.best_iteration or self.n_estimators)
        else:
            booster = _train_dask(client, params, self.n_estimators, Z_tr, t_tr)
            best = _early_stopped_iteration(booster, Z_va, t_va, self.early_stopping_rounds)
        # Keep only the trees up to the best iteration: smaller exports, faster predict.
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best

    def _features(self, X) -> np.ndarray:
        if self.pca_components_ is None:
            return X
        return ((X - self.pca_mean_) @ self.pca_components_.T).astype(np.float32)

    def _predict_scores(self, X) -> np.ndarray:
        Z = self._features(X)
        out = np.empty((len(X), self.n_models_))
        for j, b in enumerate(self.boosters_):
            out[:, j] = b if isinstance(b, float) else b.predict(Z, num_threads=self.num_threads)
        return out


def _train_dask(client, params: dict, n_rounds: int, Z: np.ndarray, y: np.ndarray):
    """One regressor trained on the cluster's workers (``lightgbm.dask``); returns the local booster.

    The rows are split into one part per worker. ``params`` are the local path's; lightgbm.dask
    sets ``num_threads`` to each worker's thread count itself.
    """
    import warnings

    import dask.array as da
    from lightgbm.dask import DaskLGBMRegressor

    # One part per worker, part i scattered to the i-th worker by address (straight to the workers, not
    # through the task graph). Two fits can still differ slightly: lightgbm.dask ranks the workers in
    # the scheduler's who_has order, and each rank finds the histogram bins of its share of the
    # features from its own rows.
    workers = sorted(client.nthreads())
    bounds = np.linspace(0, len(Z), len(workers) + 1).astype(int)
    X_parts, y_parts = [], []
    for worker, lo, hi in zip(workers, bounds[:-1], bounds[1:]):
        if hi > lo:
            x_f, y_f = client.scatter([Z[lo:hi], y[lo:hi]], workers=[worker], hash=False)
            X_parts.append(da.from_delayed(x_f, shape=(hi - lo, Z.shape[1]), dtype=Z.dtype))
            y_parts.append(da.from_delayed(y_f, shape=(hi - lo,), dtype=y.dtype))
    X_parts, y_parts = da.concatenate(X_parts), da.concatenate(y_parts)
    # The sklearn wrapper has its own defaults under the alias names: pass the values under those.
    kwargs = {_SKLEARN_ALIASES.get(k, k): v for k, v in params.items() if k != "num_threads"}
    model = DaskLGBMRegressor(client=client, n_estimators=n_rounds, **kwargs)
    # lightgbm.dask calls distributed.wait() without its client: make ours the current one meanwhile.
    with client.as_current(), warnings.catch_warnings():
        # The sklearn wrapper always carries n_jobs, which lightgbm.dask replaces by the worker's threads.
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        model.fit(X_parts, y_parts)
    return model.to_local().booster_


def _early_stopped_iteration(booster, Z_val: np.ndarray, y_val: np.ndarray, rounds: int) -> int:
    """The iteration ``lgb.early_stopping(rounds)`` on (Z_val, y_val) would keep, from a fully trained booster.

    Validation l2 after each iteration comes from the per-tree outputs (one predict per tree, summed
    cumulatively); the scan stops where the callback would: ``rounds`` iterations without a new minimum.
    """
    n = booster.current_iteration()
    per_tree = np.stack([booster.predict(Z_val, start_iteration=i, num_iteration=1) for i in range(n)], axis=1)
    l2 = np.mean((np.cumsum(per_tree, axis=1) - y_val[:, None]) ** 2, axis=0)
    best = 0
    for i in range(1, n):
        if l2[i] < l2[best]:
            best = i
        elif i - best >= rounds:
            break
    return best + 1
