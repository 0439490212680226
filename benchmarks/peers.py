"""Faithful re-implementations of published LLM routers ("peers"), for ``bench_peers.py``.

Every peer is a small class with ``name``, ``note`` (what it keeps from the published code and what
it changes), ``fit(X, Y, C, mask, tasks=None)`` and ``predict_scores(X, tasks=None) -> (n, m)``:

- ``X`` (n, d) float32 unit-norm sentence embeddings (ours, all-MiniLM-L6-v2, for every peer);
- ``Y`` (n, m) scores (mostly 0/1), NaN where unobserved; ``mask`` (n, m) True where observed;
- ``C`` (n, m) $ per call, NaN where unknown, or None when the set has no costs;
- ``tasks`` (n,) task names or None.

Scores are "higher is better"; the benchmark picks ``router.policy.rule.choose(S, costs, lam)``
= argmax of ``S - lam * cost`` for every peer, sweeping ``lam`` for the cost-quality curve. Regressors
return a predicted score per model, classifiers the probability of each model's class. Unobserved
cells never enter training as zeros. Only numpy and scikit-learn: ``rorf`` (0.1.3) and
``llmrouter-lib`` (0.4.0) are on PyPI but pull torch/transformers/datasets and hub or API embedders.

Upstream code read (repository @ commit):
- withmartian/routerbench @ cc67d1008bd8: routers/knn_router.py, routers/mlp_router.py,
  routers/abstract_router.py, configs/evaluate_routers.yaml;
- ulab-uiuc/LLMRouter @ 4e7a796942ce (and the llmrouter-lib 0.4.0 wheel, same label rule):
  llmrouter/models/{knnrouter,svmrouter,mlprouter,mfrouter}/{router,trainer}.py,
  configs/model_config_train/{knnrouter,svmrouter,mlprouter,mfrouter}.yaml;
- lm-sys/RouteLLM @ 0b64fdafe049: routellm/routers/matrix_factorization/model.py (the MF LLMRouter ports);
- ZhangYiqun018/AvengersPro @ dfb60b156c4b: simple_cluster_router.py, balance_cluster_router.py,
  config.py, config/balance_config.json; ZhangYiqun018/Avengers @ 168bcb9fcd58: core/routing/rank_router.py,
  core/generate_rank_router.py;
- Not-Diamond/RoRF @ a374ce8e2de7: rorf/router/dataloader.py, rorf/router/rorf.py, rorf/controller.py,
  trainer.py, run_trainer.sh.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.svm import SVC

LOW = -1.0  # score of a model a peer cannot route to: below any probability, and finite for choose()


class Peer(Protocol):
    name: str
    note: str

    def fit(self, X, Y, C, mask, tasks=None) -> "Peer": ...

    def predict_scores(self, X, tasks=None) -> np.ndarray: ...


def _observed(Y, mask) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(mask, bool) & np.isfinite(Y)
    return np.where(mask, Y, 0.0), mask


def _col_means(Y, mask) -> np.ndarray:
    """Per-model mean over observed cells; a never-observed model gets the overall mean."""
    Y0, mask = _observed(Y, mask)
    n = mask.sum(0)
    overall = Y0.sum() / max(mask.sum(), 1)
    return np.where(n > 0, Y0.sum(0) / np.maximum(n, 1), overall)


def _mean_costs(C) -> np.ndarray | None:
    """Mean known $ per model, 0 where unknown (as ``mean_model_costs``); None without costs."""
    if C is None or not np.isfinite(C).any():
        return None
    known = np.isfinite(C)
    return np.where(known.any(0), np.where(known, C, 0.0).sum(0) / np.maximum(known.sum(0), 1), 0.0)


def _first_best(Y, mask, ties_to_best: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """LLMRouter's label: ``groupby("query")["performance"].idxmax()`` over the observed models, so
    ties (every 0/1 query two models both solve, or none does) go to the first model in column order.
    ``ties_to_best`` (not upstream) breaks ties to the model with the best training mean instead.
    Returns (rows with any observed model, their label)."""
    Y0, mask = _observed(Y, mask)
    rows = mask.any(1)
    order = np.argsort(-_col_means(Y, mask), kind="stable") if ties_to_best else np.arange(Y0.shape[1])
    return rows, order[np.where(mask, Y0, -np.inf)[rows][:, order].argmax(1)]


class RouterBenchKNN:
    name = "RouterBench kNN"
    note = ("Keeps routers/knn_router.py: the k nearest training queries by cosine, each model's score the "
            "mean of its observed scores over them (pandas skips NaN), cost traded as score * wtp - cost, "
            "i.e. lam = 1/wtp. k = 40, the largest of configs/evaluate_routers.yaml's grid [5, 10, 40] "
            "(class default 50), without their grid search. Changes: our embeddings (theirs "
            "all-MiniLM-L12-v2), brute-force numpy search, and a model no neighbour observed falls back "
            "to its train mean.")

    def __init__(self, k: int = 40):
        self.k = k

    def fit(self, X, Y, C, mask, tasks=None):
        self.X = np.asarray(X, np.float32)
        self.Y0, self.mask = _observed(Y, mask)
        self.means = _col_means(Y, mask)
        return self

    def predict_scores(self, X, tasks=None):
        k = min(self.k, len(self.X))
        out = np.empty((len(X), self.Y0.shape[1]))
        for s in range(0, len(X), 1024):  # chunks bound the (chunk x n_train) similarity matrix
            sim = np.asarray(X[s:s + 1024], np.float32) @ self.X.T
            idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            n = self.mask[idx].sum(1)
            out[s:s + 1024] = np.where(n > 0, self.Y0[idx].sum(1) / np.maximum(n, 1), self.means)
        return out


class RouterBenchMLP:
    name = "RouterBench MLP"
    note = ("Keeps routers/mlp_router.py: one sklearn MLPRegressor per model on the embedding, fitted on "
            "that model's non-NaN rows only, relu, adam, constant lr 0.001, max_iter 200, random_state 1234; "
            "hidden (100,), the first size of configs/evaluate_routers.yaml's grid [100, [100, 100]], no grid "
            "search; cost traded as score * wtp - cost (lam = 1/wtp). Changes: our embeddings; early_stopping "
            "on sklearn's 10% validation split (27 models x 12k queries x 200 epochs would take ~7 min on one "
            "core); a model with under 20 observed rows predicts its train mean.")

    def __init__(self, hidden=(100,)):
        self.hidden = hidden

    def fit(self, X, Y, C, mask, tasks=None):
        Y0, mask = _observed(Y, mask)
        self.means = _col_means(Y, mask)
        self.mlps = []
        for j in range(Y0.shape[1]):
            rows = mask[:, j]
            if rows.sum() < 20:
                self.mlps.append(None)
                continue
            mlp = MLPRegressor(hidden_layer_sizes=self.hidden, activation="relu", learning_rate="constant",
                               learning_rate_init=0.001, max_iter=200, random_state=1234, early_stopping=True)
            self.mlps.append(mlp.fit(X[rows], Y0[rows, j]))
        return self

    def predict_scores(self, X, tasks=None):
        return np.column_stack([np.full(len(X), mu) if mlp is None else mlp.predict(X)
                                for mlp, mu in zip(self.mlps, self.means)])


class _LLMRouterClassifier:
    """LLMRouter's knn/svm/mlp routers: a classifier from query embedding to the best model's name."""

    ties_to_best = False

    def _make(self, n: int):
        raise NotImplementedError

    def fit(self, X, Y, C, mask, tasks=None):
        self.m = np.shape(Y)[1]
        rows, label = _first_best(Y, mask, self.ties_to_best)
        X = np.asarray(X)[rows]
        X, label = self._subsample(X, label)
        self.clf = self._make(len(X)) if len(np.unique(label)) > 1 else None
        if self.clf is None:
            self.only = int(label[0])
        else:
            self.clf.fit(X, label)
        return self

    def _subsample(self, X, label):
        return X, label

    def predict_scores(self, X, tasks=None):
        S = np.zeros((len(X), self.m))
        if self.clf is None:
            S[:, self.only] = 1.0
        else:
            S[:, self.clf.classes_] = self.clf.predict_proba(X)
        return S


_LABEL_NOTE = ("Label as in the upstream router.py: the query's best model by performance (pandas idxmax over "
               "the observed models, so ties go to the first column; the configs' metric weights, performance "
               "1 / cost 0, are never read), scores = predict_proba per model, cost only via our lam sweep. ")


class LLMRouterKNN(_LLMRouterClassifier):
    name = "LLMRouter kNN"
    note = _LABEL_NOTE + ("Hyper-parameters from configs/model_config_train/knnrouter.yaml: "
                          "KNeighborsClassifier(n_neighbors=5, weights='uniform', minkowski p=2). "
                          "Changes: our embeddings instead of Longformer.")

    def _make(self, n):
        return KNeighborsClassifier(n_neighbors=min(5, n), weights="uniform", algorithm="auto", leaf_size=30,
                                    p=2, metric="minkowski")


class LLMRouterSVM(_LLMRouterClassifier):
    name = "LLMRouter SVM"
    note = _LABEL_NOTE + ("Hyper-parameters from configs/model_config_train/svmrouter.yaml: SVC(kernel='rbf', "
                          "C=1.0, gamma='scale', probability=True). Changes: our embeddings instead of "
                          "Longformer; fitted on a seeded random 5,000 of the labelled training queries when "
                          "there are more (kernel SVC with Platt scaling is quadratic in n).")
    MAX_N = 5000

    def _make(self, n):
        return SVC(kernel="rbf", C=1.0, gamma="scale", probability=True, random_state=0)

    def _subsample(self, X, label):
        if len(X) <= self.MAX_N:
            return X, label
        keep = np.random.default_rng(0).choice(len(X), self.MAX_N, replace=False)
        return X[keep], label[keep]


class LLMRouterMLP(_LLMRouterClassifier):
    name = "LLMRouter MLP"
    note = _LABEL_NOTE + ("Hyper-parameters from configs/model_config_train/mlprouter.yaml, passed to "
                          "sklearn's MLPClassifier as the repo's router.py does: hidden (128, 64), relu, adam, "
                          "alpha 1e-4, learning_rate 'adaptive', lr 0.001, max_iter 500, random_state 42 "
                          "(llmrouter-lib 0.4.0 moved to a torch MLP with the same sizes). Changes: our "
                          "embeddings instead of Longformer.")

    def _make(self, n):
        return MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam", alpha=0.0001,
                             learning_rate="adaptive", learning_rate_init=0.001, max_iter=500, random_state=42)


class LLMRouterMF:
    name = "LLMRouter MF"
    ties_to_best = False
    note = ("Keeps llmrouter/models/mfrouter (RouteLLM's bilinear MF): delta(M, q) = w . (normalize(v_M) * "
            "(W q)), model embeddings v (latent 128), bias-free projection W and classifier w, trained with "
            "BCE on delta(winner) - delta(loser) = 1 over pairs (query's idxmax winner vs every other observed "
            "model, ties included as upstream), Adam lr 0.001, 5 epochs, batch 64, no noise "
            "(configs/model_config_train/mfrouter.yaml), torch's default inits. Scores are the raw logits "
            "delta(M, q), so lam is in logit units. Changes: our embeddings (384-d, not Longformer's 768), "
            "numpy gradients instead of torch autograd.")

    def __init__(self, dim: int = 128, lr: float = 1e-3, epochs: int = 5, batch: int = 64, seed: int = 0):
        self.dim, self.lr, self.epochs, self.batch, self.seed = dim, lr, epochs, batch, seed

    def fit(self, X, Y, C, mask, tasks=None):
        X = np.asarray(X, np.float64)
        Y0, mask = _observed(Y, mask)
        rng = np.random.default_rng(self.seed)
        n, d = X.shape
        m = Y0.shape[1]
        rows, win = _first_best(Y, mask, self.ties_to_best)
        q_idx = np.flatnonzero(rows)
        lose_q, lose_m = np.nonzero(mask[q_idx] & (np.arange(m) != win[:, None]))
        pairs = np.column_stack([q_idx[lose_q], win[lose_q], lose_m])
        b_in, b_dim = 1 / np.sqrt(d), 1 / np.sqrt(self.dim)  # torch nn.Linear's default bound
        params = {"P": rng.normal(size=(m, self.dim)), "W": rng.uniform(-b_in, b_in, (d, self.dim)),
                  "w": rng.uniform(-b_dim, b_dim, self.dim)}
        adam = {k: [np.zeros_like(v), np.zeros_like(v)] for k, v in params.items()}
        t = 0
        for _ in range(self.epochs):
            order = pairs[rng.permutation(len(pairs))]  # DataLoader(shuffle=True)
            for s in range(0, len(order), self.batch):
                q, a, b = order[s:s + self.batch].T
                grads = self._grads(params, X[q], a, b)
                t += 1
                for k, g in grads.items():  # Adam, torch defaults (0.9, 0.999, eps 1e-8)
                    m1, m2 = adam[k]
                    m1 += 0.1 * (g - m1)
                    m2 += 0.001 * (g * g - m2)
                    params[k] -= self.lr * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
        self.params = params
        return self

    @staticmethod
    def _grads(p, Xq, a, b) -> dict:
        norm = np.linalg.norm(p["P"], axis=1, keepdims=True)
        Pn = p["P"] / norm
        z = Xq @ p["W"]
        h = Pn[a] - Pn[b]
        logit = (h * z) @ p["w"]
        g = (1 / (1 + np.exp(-logit)) - 1) / len(Xq)  # d mean BCE(logit, 1) / d logit
        dh = g[:, None] * z * p["w"]
        dPn = np.zeros_like(Pn)
        np.add.at(dPn, a, dh)
        np.add.at(dPn, b, -dh)
        return {"w": (g[:, None] * h * z).sum(0), "W": Xq.T @ (g[:, None] * h * p["w"]),
                "P": (dPn - Pn * (Pn * dPn).sum(1, keepdims=True)) / norm}

    def predict_scores(self, X, tasks=None):
        p = self.params
        Pn = p["P"] / np.linalg.norm(p["P"], axis=1, keepdims=True)
        return ((np.asarray(X, np.float64) @ p["W"]) * p["w"]) @ Pn.T


class AvengersPro:
    name = "Avengers-Pro cluster"
    note = ("Keeps AvengersPro simple_cluster_router.py / balance_cluster_router.py with "
            "config/balance_config.json: KMeans(n_clusters=25, random_state=42, n_init=10) on the "
            "L2-normalised embeddings, each model's mean score per cluster, and at routing the top_k=3 "
            "nearest centres by 1 - x.c weighted by softmax(-beta * distance), beta 9. Changes: the weighted "
            "sum is over the clusters' mean scores rather than 1/(rank+1), so scores are in quality units; "
            "their alpha-weighted, per-cluster min-max-normalised accuracy-vs-cost score is replaced by our "
            "lam sweep; a model unobserved in a cluster gets its train mean (upstream 0); our embeddings.")

    def __init__(self, n_clusters: int = 25, top_k: int = 3, beta: float = 9.0):
        self.n_clusters, self.top_k, self.beta = n_clusters, top_k, beta

    def fit(self, X, Y, C, mask, tasks=None):
        km = KMeans(n_clusters=min(self.n_clusters, len(X)), random_state=42, n_init=10).fit(X)
        self.centres = km.cluster_centers_
        Y0, mask = _observed(Y, mask)
        means = _col_means(Y, mask)
        onehot = np.eye(len(self.centres))[km.labels_]
        n = onehot.T @ mask
        self.table = np.where(n > 0, (onehot.T @ Y0) / np.maximum(n, 1), means)  # (clusters, models)
        return self

    def predict_scores(self, X, tasks=None):
        dist = 1 - np.asarray(X, np.float64) @ self.centres.T
        k = min(self.top_k, len(self.centres))
        near = np.argsort(dist, axis=1)[:, :k]
        logits = -self.beta * np.take_along_axis(dist, near, 1)
        w = np.exp(logits - logits.max(1, keepdims=True))
        w /= w.sum(1, keepdims=True)
        return np.einsum("nk,nkm->nm", w, self.table[near])


class RoRF:
    name = "RoRF (strong vs weak)"
    note = ("Keeps rorf/router/dataloader.py's four labels (a wins / both 0 / tie above 0 / b wins) on the "
            "queries both models answered, rorf.py's RandomForestClassifier(max_depth=20, n_estimators=100, "
            "random_state=420) and controller.py's P(a) = p(a wins) + p(both 0); scores P(a) for the strong "
            "model, 1 - P(a) for the weak one, so lam 0 is their threshold 0.5 and the lam sweep their "
            "threshold t = (1 + lam * (c_a - c_b)) / 2. RoRF routes between two models: strong = best train "
            "mean, weak = cheapest other model (second best without costs); all others score -1. Changes: "
            "max_features 'sqrt' (upstream 1.0, ~10x slower: 100 depth-20 trees on all 384 features take "
            "minutes on 12k queries); our embeddings (theirs jina/voyage/openai).")

    def fit(self, X, Y, C, mask, tasks=None):
        Y0, mask = _observed(Y, mask)
        means = _col_means(Y, mask)
        self.m = Y0.shape[1]
        self.a = int(np.argmax(means))
        costs = _mean_costs(C)
        others = [j for j in range(self.m) if j != self.a]
        if costs is None:
            self.b = max(others, key=lambda j: means[j])
        else:  # cheapest, ties to the better one
            self.b = min(others, key=lambda j: (costs[j], -means[j]))
        rows = mask[:, self.a] & mask[:, self.b]
        sa, sb = Y0[rows, self.a], Y0[rows, self.b]
        label = np.where(sa > sb, 0, np.where(sa == sb, np.where(sa == 0, 1, 2), 3))
        self.rf = RandomForestClassifier(max_depth=20, max_features="sqrt", n_estimators=100,
                                         random_state=420, n_jobs=1).fit(np.asarray(X)[rows], label)
        return self

    def predict_scores(self, X, tasks=None):
        proba = np.zeros((len(X), 4))
        proba[:, self.rf.classes_] = self.rf.predict_proba(X)
        p_a = proba[:, 0] + proba[:, 1]
        S = np.full((len(X), self.m), LOW)
        S[:, self.a], S[:, self.b] = p_a, 1 - p_a
        return S


class TaskOracle:
    name = "task oracle (train)"
    note = ("Not a published router: the best model per task on the training split, i.e. each model's "
            "train mean score within the query's task (the task label is known at routing time), falling "
            "back to the model's overall train mean for an unseen task or a model unobserved in the task. "
            "An upper reference for routers that only see the task.")

    def fit(self, X, Y, C, mask, tasks=None):
        if tasks is None:
            raise ValueError("task oracle needs tasks")
        Y0, mask = _observed(Y, mask)
        self.means = _col_means(Y, mask)
        tasks = np.asarray(tasks)
        self.table = {}
        for t in np.unique(tasks):
            r = tasks == t
            n = mask[r].sum(0)
            self.table[t] = np.where(n > 0, Y0[r].sum(0) / np.maximum(n, 1), self.means)
        return self

    def predict_scores(self, X, tasks=None):
        if tasks is None:
            raise ValueError("task oracle needs tasks")
        return np.array([self.table.get(t, self.means) for t in np.asarray(tasks)], dtype=np.float64)


def _ties_to_best(cls):
    """The same peer with its label's ties broken to the best-on-train model (a fix, not upstream): on
    0/1 data most queries are ties, and upstream's first-column rule then labels them with an
    arbitrary model, which makes these peers look weaker than the idea behind them."""
    return type(f"{cls.__name__}TiesToBest", (cls,), {
        "name": f"{cls.name} (ties to best)", "ties_to_best": True,
        "note": cls.note + " This variant breaks label ties to the model with the best training mean."})


PEERS: dict[str, Callable[[], Peer]] = {
    cls.name: cls for cls in (RouterBenchKNN, RouterBenchMLP, LLMRouterKNN, LLMRouterSVM, LLMRouterMLP,
                              LLMRouterMF, *map(_ties_to_best, (LLMRouterKNN, LLMRouterSVM, LLMRouterMLP,
                                                                LLMRouterMF)),
                              AvengersPro, RoRF, TaskOracle)
}


def peer_names(has_tasks: bool) -> list[str]:
    """The peers to run on a set; the task oracle needs task labels."""
    return [n for n in PEERS if has_tasks or n != TaskOracle.name]
