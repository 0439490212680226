"""Safe head artifacts (router.serve.artifact): every family round-trips exactly; tampered,
foreign or pickled folders fail with errors naming the file; nothing is ever unpickled."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from router.routers import ROUTERS, make_router
from router.serve.artifact import FORMAT_VERSION, ArtifactError, ArtifactVersionError, load_head, save_head

LGBM = {"n_estimators": 40, "n_components": 16, "min_child_samples": 10}
# Small settings per family (as FAST in tests/routers/conftest.py); a family missing here is fitted with its defaults.
SMALL = {
    "random": {"random_state": 3},
    "knn": {"cv": 3},
    "ridge": {"cv": 3},
    "logistic": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "lgbm": LGBM,
    "classifier": {"alpha": (1.0, 10.0), "cv": 3, "max_iter": 100},
    "mf": {"dim": 8, "alpha": 0.03, "max_iter": 60},
    "cluster": {"n_clusters": (4, 16), "shrink": (1.0, 5.0), "temperature": (0.0, 0.05), "cv": 3},
    "irt": {"rank": (1, 4), "l2": (0.01, 0.1), "cv": 3, "max_iter": 100},
    "task": {"C": (0.1, 1.0), "shrink": (1.0, 10.0), "cv": 3},
    "ensemble": {"routers": [("ridge", make_router("ridge", alpha=30.0)), ("lgbm", make_router("lgbm", **LGBM))],
                 "cv": 3, "shrink": (0.0, 0.5)},
}
# Ensembles with fixed weights: which members a fit keeps must not depend on the machine (weights searched by
# CV may drop a member on one CPU and not on another). "ensemble-dropped": its second member has weight 0 and
# is fitted as None in routers_; "ensemble-both": both members kept, the second with LightGBM boosters.
DROPPED = ("ensemble", {"routers": [("ridge", make_router("ridge", alpha=30.0)),
                                    ("knn", make_router("knn", n_neighbors=20, weighting="uniform"))],
                        "weights": (1.0, 0.0), "shrink": 0.25})
BOTH = ("ensemble", {"routers": [("ridge", make_router("ridge", alpha=30.0)), ("lgbm", make_router("lgbm", **LGBM))],
                     "weights": (0.5, 0.5), "shrink": 0.25})
FIXED = {"ensemble-dropped": DROPPED, "ensemble-both": BOTH}
CASES = sorted(ROUTERS) + sorted(FIXED)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data(mmlu_small, mmlu_small_X):
    perm = np.random.default_rng(0).permutation(mmlu_small.n_queries)
    cut = int(0.7 * len(perm))
    return mmlu_small, mmlu_small_X, np.sort(perm[:cut]), np.sort(perm[cut:])


@pytest.fixture(scope="module")
def fitted(data):
    """case -> router fitted on the training rows (each fitted once per module)."""
    d, X, tr, _ = data
    cache = {}

    def get(case):
        if case not in cache:
            family, params = FIXED.get(case, (case, SMALL.get(case, {})))
            cache[case] = make_router(family, **params).fit(X[tr], d.scores[tr], d.costs[tr], d.mask[tr])
        return cache[case]

    return get


class Trap:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("case", CASES)
def test_every_family_round_trips(case, fitted, data, tmp_path):
    _, X, _, te = data
    router = fitted(case)
    loaded = load_head(save_head(router, tmp_path / "head"))
    assert type(loaded) is type(router)
    assert repr(loaded) == repr(router)  # parameters, tuples of candidates and member specs included
    np.testing.assert_allclose(loaded.predict_scores(X[te]), router.predict_scores(X[te]), rtol=0, atol=1e-9)
    assert (loaded.route(X[te], lam=0.5) == router.route(X[te], lam=0.5)).all()
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "head").rglob("*"))
    assert not hasattr(loaded, "cv_results_")  # a training diagnostic: not stored


def test_lgbm_boosters_are_text_and_constant_heads_stay_floats(fitted, tmp_path):
    import lightgbm

    router = fitted("lgbm")
    router = copy.deepcopy(router)
    router.boosters_[0] = 0.25  # a model with too few observations is a plain float
    loaded = load_head(save_head(router, tmp_path / "head"))
    assert loaded.boosters_[0] == 0.25 and isinstance(loaded.boosters_[0], float)
    assert all(isinstance(b, lightgbm.Booster) for b in loaded.boosters_[1:])
    files = sorted(p.name for p in (tmp_path / "head").iterdir())
    assert "booster-boosters_-1.txt" in files and "booster-boosters_-0.txt" not in files
    assert loaded.best_iterations_ == router.best_iterations_


def test_ensemble_members_are_sub_folders(fitted, tmp_path):
    loaded = load_head(save_head(fitted("ensemble-dropped"), tmp_path / "head"))
    assert loaded.routers_[1] == ("knn", None)
    assert isinstance(loaded.routers, list) and isinstance(loaded.routers[0], tuple)
    assert (tmp_path / "head" / "member-0" / "head.json").is_file() and not (tmp_path / "head" / "member-1").exists()


def test_planted_pickles_are_never_opened(fitted, tmp_path):
    trap = tmp_path / "trap-works"
    pickle.loads(pickle.dumps(Trap(trap)))
    assert trap.exists()  # the plant is live: unpickling it would leave a marker
    head = save_head(fitted("ensemble-both"), tmp_path / "head")
    marker = tmp_path / "unpickled"
    for folder in (head, head / "member-0", head / "member-1"):
        for name in ("head.pkl", "arrays.pkl", "model.pkl"):
            (folder / name).write_bytes(pickle.dumps(Trap(marker)))
    load_head(head)
    assert not marker.exists()


@pytest.fixture
def ridge_head(fitted, tmp_path):
    return save_head(fitted("ridge"), tmp_path / "head")


def edit_json(head, **changes):
    doc = json.loads((head / "head.json").read_text())
    doc.update(changes)
    (head / "head.json").write_text(json.dumps(doc))


@pytest.mark.parametrize("changes, message", [
    ({"format": "mlflow-model"}, "head.json: not a learned-router head"),
    ({"family": "os.system"}, "head.json: family 'os.system' is not one of"),
    ({"format_version": "1"}, "head.json: format_version must be an integer"),
    ({"params": {"alpha": 1.0, "exec": "print"}}, "head.json: params: 'ridge' has no parameter"),
    ({"boosters": ["../../etc/passwd"]}, "head.json: '../../etc/passwd' is not a booster file name"),
    ({"members": ["/tmp"]}, "head.json: '/tmp' is not a member folder name"),
    ({"state": {"n_models_": 31, "coef_": {"array": "not-listed"}}}, "head.json: malformed value at state.coef_"),
    ({"state": {"__class__": 1}}, "head.json: '__class__' is not a fitted attribute name"),
])
def test_tampered_head_json(ridge_head, changes, message):
    edit_json(ridge_head, **changes)
    with pytest.raises(ArtifactError, match=message):
        load_head(ridge_head)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", "\xff\xfe"])
def test_garbage_head_json(ridge_head, text):
    (ridge_head / "head.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(ArtifactError, match="head.json: "):
        load_head(ridge_head)


def test_missing_head_json(tmp_path):
    with pytest.raises(ArtifactError, match="head.json: missing"):
        load_head(tmp_path)
    (tmp_path / "head.pkl").write_bytes(pickle.dumps(Trap(tmp_path / "unpickled")))  # an older release's export
    with pytest.raises(ArtifactVersionError, match="head.json: missing; .*head.pkl.*retrain"):
        load_head(tmp_path)
    assert not (tmp_path / "unpickled").exists()


@pytest.mark.parametrize("version", [0, 2])
def test_other_format_version_says_retrain(ridge_head, version):
    edit_json(ridge_head, format_version=version, state="a future layout")
    with pytest.raises(ArtifactVersionError, match=f"format version {version}; this release reads version "
                                                   f"{FORMAT_VERSION}: retrain the router"):
        load_head(ridge_head)


def test_object_array_is_refused_unpickled(ridge_head, tmp_path):
    marker = tmp_path / "unpickled"
    with np.load(ridge_head / "arrays.npz") as npz:
        arrays = dict(npz)
    arrays["coef_"] = np.array([Trap(marker)], dtype=object)
    np.savez(ridge_head / "arrays.npz", **arrays)  # numpy pickles object arrays
    with pytest.raises(ArtifactError, match="arrays.npz: holds pickled objects"):
        load_head(ridge_head)
    (ridge_head / "arrays.npz").write_bytes(pickle.dumps(Trap(marker)))  # a bare pickle under the name
    with pytest.raises(ArtifactError, match="arrays.npz: holds pickled objects"):
        load_head(ridge_head)
    assert not marker.exists()


def test_missing_or_broken_arrays(ridge_head):
    with np.load(ridge_head / "arrays.npz") as npz:
        arrays = {k: v for k, v in npz.items() if k != "coef_"}
    np.savez(ridge_head / "arrays.npz", **arrays)
    with pytest.raises(ArtifactError, match=r"arrays.npz: missing array\(s\) \['coef_'\]"):
        load_head(ridge_head)
    (ridge_head / "arrays.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ArtifactError, match="arrays.npz: "):
        load_head(ridge_head)
    (ridge_head / "arrays.npz").unlink()
    with pytest.raises(ArtifactError, match="arrays.npz: missing"):
        load_head(ridge_head)


def test_broken_booster_and_member(fitted, tmp_path):
    head = save_head(fitted("ensemble-both"), tmp_path / "head")
    booster = sorted((head / "member-1").glob("booster-*.txt"))[0]
    booster.write_text("tree\nnot a model\n")
    with pytest.raises(ArtifactError, match=f"member-1/{booster.name}: not a LightGBM text model"):
        load_head(head)
    booster.unlink()
    with pytest.raises(ArtifactError, match=f"member-1/{booster.name}: missing"):
        load_head(head)
    edit_json(head / "member-0", format_version=2)
    with pytest.raises(ArtifactVersionError, match="member-0/head.json: .*retrain"):
        load_head(head)


def test_unsupported_attribute_fails_at_save(fitted, tmp_path):
    router = copy.deepcopy(fitted("ridge"))
    router.extra_ = object()
    with pytest.raises(TypeError, match="attribute 'extra_' of RidgeRouter: type builtins.object"):
        save_head(router, tmp_path / "a")
    router.extra_ = [1, {"k": np.array([None], dtype=object)}]
    with pytest.raises(TypeError, match="attribute 'extra_.1.k' of RidgeRouter: .* object dtype"):
        save_head(router, tmp_path / "b")
    del router.extra_
    router.lookup = {}
    with pytest.raises(TypeError, match="'lookup' of RidgeRouter is neither a parameter nor a fitted attribute"):
        save_head(router, tmp_path / "c")
    with pytest.raises(ValueError, match="not fitted"):
        save_head(make_router("ridge"), tmp_path / "d")


def test_loading_a_head_without_boosters_does_not_import_lightgbm(ridge_head):
    code = ("import sys; from router.serve.artifact import load_head; load_head(sys.argv[1]); "
            "assert 'lightgbm' not in sys.modules, 'lightgbm imported'")
    env = os.environ | {"OPENBLAS_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", code, str(ridge_head)], check=True, env=env, timeout=120)
