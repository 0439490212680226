"""A safe on-disk format for fitted router heads: JSON + ``arrays.npz`` + LightGBM text models, never pickle.

A head is a folder: ``head.json`` (format, version, family, params, state, names of the other files),
``arrays.npz`` (every array; ``allow_pickle=False`` both ways), ``booster-<attr>-<i>.txt`` per LightGBM
booster (its own text format) and a ``member-<k>/`` head per nested fitted router (ensemble members).
A params/state value is JSON (scalar, string, null, list) or a one-key tag: ``{"array": key}``,
``{"tuple": [...]}``, ``{"dict": {...}}``, ``{"booster": file}``, ``{"router": folder}`` (fitted member)
or ``{"estimator": {"family", "params"}}`` (an unfitted router in a parameter: the ensemble's ``routers``).
Saved: ``get_params(deep=False)`` and every public fitted attribute (``name_``) but ``DIAGNOSTICS``.
Loading opens only files ``head.json`` names (checked against fixed patterns), builds classes only via
``ROUTERS``, and imports lightgbm only when the head has boosters.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np

from router.routers import ROUTERS, BaseRouter

FORMAT = "learned-router-head"
FORMAT_VERSION = 1
HEAD_JSON, ARRAYS_NPZ = "head.json", "arrays.npz"
DIAGNOSTICS = frozenset({"cv_results_", "best_params_"})  # fitted, but not needed to predict: not saved
_KEYS = ("format", "format_version", "family", "params", "state", "arrays", "boosters", "members")
_BOOSTER_FILE = re.compile(r"booster-[A-Za-z0-9_-]+\.txt")
_MEMBER_DIR = re.compile(r"member-[0-9]+")
_ATTR = re.compile(r"[A-Za-z][A-Za-z0-9_]*_")
_MAX_DEPTH = 4  # nested member folders (an ensemble of ensembles is depth 2)


class ArtifactError(ValueError):
    """A head folder that is tampered with, foreign, unreadable or malformed."""


class ArtifactVersionError(ArtifactError):
    """A head written by another format version: retrain the router with this release."""


def save_head(router: BaseRouter, folder: str | Path) -> Path:
    """Write the fitted ``router`` into ``folder`` (created if needed); returns the folder. A parameter or
    attribute of a type the format cannot store raises TypeError naming it: at training, not in a service."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _Writer(folder).write(router)
    return folder


def load_head(folder: str | Path) -> BaseRouter:
    """The fitted router saved by ``save_head`` in ``folder``; raises ``ArtifactError`` if it is not a valid head."""
    return _Reader(Path(folder), "", 0).read()


def _family(router) -> str:
    names = [name for name, cls in ROUTERS.items() if type(router) is cls]
    if not names:
        raise TypeError(f"{type(router).__qualname__} is not a registered router family ({sorted(ROUTERS)})")
    return names[0]


def _is_booster(value) -> bool:  # without importing lightgbm
    return type(value).__name__ == "Booster" and type(value).__module__.split(".")[0] == "lightgbm"


class _Writer:
    def __init__(self, folder: Path):
        self.folder, self.arrays, self.boosters, self.members = folder, {}, [], []

    def write(self, router: BaseRouter) -> None:
        family = _family(router)
        self.owner = type(router).__name__
        if not hasattr(router, "n_models_"):
            raise ValueError(f"this {self.owner} is not fitted: fit it before saving")
        raw = router.get_params(deep=False)
        params = {k: self.encode(v, f"params.{k}", fitted=False) for k, v in raw.items()}
        state = {}
        for name, value in sorted(vars(router).items()):
            if name.startswith("_") or name in DIAGNOSTICS or name in raw:
                continue
            if not _ATTR.fullmatch(name):
                raise TypeError(f"attribute {name!r} of {self.owner} is neither a parameter nor a fitted "
                                f"attribute (name ending in '_'): a saved head would lose it")
            state[name] = self.encode(value, name, fitted=True)
        if self.arrays:
            np.savez(self.folder / ARRAYS_NPZ, allow_pickle=False, **self.arrays)
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "family": family, "params": params,
               "state": state, "arrays": sorted(self.arrays), "boosters": self.boosters, "members": self.members}
        (self.folder / HEAD_JSON).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")  # last

    def encode(self, value, path: str, fitted: bool):
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        key = re.sub(r"[^A-Za-z0-9_]+", "-", path)
        if isinstance(value, np.ndarray) and not value.dtype.hasobject:
            if key in self.arrays:
                raise TypeError(f"{self.owner}: two values map to array name {key!r}")
            self.arrays[key] = value
            return {"array": key}
        if isinstance(value, (list, tuple)):
            items = [self.encode(v, f"{path}.{i}", fitted) for i, v in enumerate(value)]
            return {"tuple": items} if isinstance(value, tuple) else items
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return {"dict": {k: self.encode(v, f"{path}.{k}", fitted) for k, v in value.items()}}
        if isinstance(value, BaseRouter) and not fitted:
            params = {k: self.encode(v, f"{path}.{k}", False) for k, v in value.get_params(deep=False).items()}
            return {"estimator": {"family": _family(value), "params": params}}
        if isinstance(value, BaseRouter):
            name = f"member-{len(self.members)}"
            self.members.append(name)
            save_head(value, self.folder / name)
            return {"router": name}
        if _is_booster(value) and fitted:
            name = f"booster-{key}.txt"
            if name in self.boosters:
                raise TypeError(f"{self.owner}: two boosters map to file name {name!r}")
            (self.folder / name).write_text(value.model_to_string(), encoding="utf-8")
            self.boosters.append(name)
            return {"booster": name}
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        kind += " with object dtype" * isinstance(value, np.ndarray)
        raise TypeError(f"cannot save {'parameter' if path.startswith('params.') else 'attribute'} "
                        f"{path.removeprefix('params.')!r} of {self.owner}: type {kind} is not supported (numpy "
                        f"arrays, JSON scalars, strings, None, lists, tuples, str-keyed dicts, LightGBM "
                        f"boosters and routers are)")


class _Reader:
    def __init__(self, folder: Path, label: str, depth: int):
        self.folder, self.label, self.depth = folder, label, depth  # label: "member-0/" etc. in messages

    def fail(self, file: str, message: str, cls=ArtifactError):
        return cls(f"{self.label}{file}: {message}")

    def read(self) -> BaseRouter:
        doc = self.read_json()
        listed = {k: doc[k] for k in ("arrays", "boosters", "members")}
        if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in listed.values()):
            raise self.fail(HEAD_JSON, "'arrays', 'boosters' and 'members' must be lists of names")
        bad = [n for n in listed["members"] if not _MEMBER_DIR.fullmatch(n)]
        if bad:
            raise self.fail(HEAD_JSON, f"{bad[0]!r} is not a member folder name (member-<k>)")
        self.arrays = self.read_arrays(listed["arrays"]) if listed["arrays"] else {}
        self.boosters = {name: self.read_booster(name) for name in listed["boosters"]}
        self.members = set(listed["members"])
        if not isinstance(doc["params"], dict) or not isinstance(doc["state"], dict):
            raise self.fail(HEAD_JSON, "'params' and 'state' must be objects")
        router = self.build(doc["family"], doc["params"], "params")
        for name, value in doc["state"].items():
            if not _ATTR.fullmatch(name):
                raise self.fail(HEAD_JSON, f"{name!r} is not a fitted attribute name")
            setattr(router, name, self.decode(value, f"state.{name}"))
        if not hasattr(router, "n_models_"):
            raise self.fail(HEAD_JSON, "the state has no 'n_models_': not a fitted router")
        return router

    def read_json(self) -> dict:
        path = self.folder / HEAD_JSON
        if not path.is_file():
            if (self.folder / "head.pkl").exists():  # an older release's pickled head: never opened
                raise self.fail(HEAD_JSON, "missing; this head was written as a pickle (head.pkl) by an older "
                                "release: retrain the router with this release", ArtifactVersionError)
            raise self.fail(HEAD_JSON, f"missing: {self.folder} is not a saved router head")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise self.fail(HEAD_JSON, f"unreadable or not JSON ({e})") from None
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        if fmt != FORMAT:
            raise self.fail(HEAD_JSON, f"not a learned-router head (format {fmt!r}, expected {FORMAT!r})")
        version = doc.get("format_version")
        if type(version) is not int:
            raise self.fail(HEAD_JSON, f"format_version must be an integer, got {version!r}")
        if version != FORMAT_VERSION:
            raise self.fail(HEAD_JSON, f"this head was written by format version {version}; this release reads "
                            f"version {FORMAT_VERSION}: retrain the router with this release", ArtifactVersionError)
        missing = [k for k in _KEYS if k not in doc]
        if missing:
            raise self.fail(HEAD_JSON, f"missing key(s) {missing}")
        return doc

    def read_arrays(self, names: list[str]) -> dict[str, np.ndarray]:
        path = self.folder / ARRAYS_NPZ
        if not path.is_file():
            raise self.fail(ARRAYS_NPZ, f"missing (head.json lists {len(names)} arrays)")
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # what np.load takes for an .npz (zip) archive
            raise self.fail(ARRAYS_NPZ, "holds pickled objects, which a head never contains" if magic[:1] == b"\x80"
                            else "not an .npz archive")
        try:
            with np.load(path, allow_pickle=False) as npz:
                absent = sorted(set(names) - set(npz.files))
                if absent:
                    raise self.fail(ARRAYS_NPZ, f"missing array(s) {absent} listed in head.json")
                return {name: npz[name] for name in names}
        except ArtifactError:
            raise
        except ValueError as e:  # numpy refuses object arrays with allow_pickle=False
            if "pickle" in str(e).lower():
                raise self.fail(ARRAYS_NPZ, "holds pickled objects, which a head never contains") from None
            raise self.fail(ARRAYS_NPZ, f"malformed ({e})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as e:
            raise self.fail(ARRAYS_NPZ, f"unreadable ({type(e).__name__}: {e})") from None

    def read_booster(self, name: str):
        if not _BOOSTER_FILE.fullmatch(name):
            raise self.fail(HEAD_JSON, f"{name!r} is not a booster file name (booster-<attr>-<i>.txt)")
        path = self.folder / name
        if not path.is_file():
            raise self.fail(name, "missing (listed in head.json)")
        import lightgbm  # only heads with boosters need it

        try:
            return lightgbm.Booster(model_str=path.read_text(encoding="utf-8"))
        except Exception as e:  # noqa: BLE001 - LightGBMError, UnicodeDecodeError, OSError: all unreadable
            raise self.fail(name, f"not a LightGBM text model ({type(e).__name__}: {e})") from None

    def build(self, family, params, where: str) -> BaseRouter:
        if not isinstance(family, str) or family not in ROUTERS:
            raise self.fail(HEAD_JSON, f"family {family!r} is not one of {sorted(ROUTERS)}")
        if not isinstance(params, dict):
            raise self.fail(HEAD_JSON, f"{where} must be an object")
        cls = ROUTERS[family]
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise self.fail(HEAD_JSON, f"{where}: {family!r} has no parameter(s) {unknown}")
        return cls(**{k: self.decode(v, f"{where}.{k}") for k, v in params.items()})

    def decode(self, value, where: str):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(v, f"{where}.{i}") for i, v in enumerate(value)]
        tag, x = next(iter(value.items())) if isinstance(value, dict) and len(value) == 1 else (None, None)
        if tag == "tuple" and isinstance(x, list):
            return tuple(self.decode(v, f"{where}.{i}") for i, v in enumerate(x))
        if tag == "dict" and isinstance(x, dict):
            return {k: self.decode(v, f"{where}.{k}") for k, v in x.items()}
        if tag == "array" and isinstance(x, str) and x in self.arrays:
            return self.arrays[x]
        if tag == "booster" and isinstance(x, str) and x in self.boosters:
            return self.boosters[x]
        if tag == "estimator" and isinstance(x, dict) and set(x) == {"family", "params"}:
            return self.build(x["family"], x["params"], where)
        if tag == "router" and isinstance(x, str) and x in self.members:
            if self.depth >= _MAX_DEPTH or not (self.folder / x).is_dir():
                raise self.fail(x, "missing or nested too deep (listed in head.json)")
            return _Reader(self.folder / x, f"{self.label}{x}/", self.depth + 1).read()
        raise self.fail(HEAD_JSON, f"malformed value at {where}: {json.dumps(value)[:100]}")
