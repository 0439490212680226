"""A virtual environment holding only what ``pip install learned-router[extras]`` would bring.

The dependency closure of pyproject.toml's ``[project] dependencies`` (and of the named extras), read
from the installed packages' metadata, is linked into one folder on a fresh venv's path, beside this
package: no network, no download, and nothing else of the test environment is importable there.
Used by tests/serve/test_slim_serving.py and benchmarks/bench_serve.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions ``requirements`` pull in, recursively (markers evaluated, extras skipped)."""
    from packaging.markers import Marker
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in found:
            continue
        dist = metadata.distribution(req.name)
        found[key] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or Marker(str(sub.marker)).evaluate({"extra": ""}):
                todo.append(sub)
    return found


def _top_level(dist: metadata.Distribution) -> set[str]:
    return {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")
            and not f.parts[0].endswith((".dist-info", ".data"))}


def slim_python(folder: Path, extras: tuple[str, ...] = ()) -> Path:
    """A venv in ``folder`` whose path holds this package and the closure of its base dependencies
    (and of ``extras``), nothing else; returns its python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]
    venv, packages = folder / "venv", folder / "packages"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    packages.mkdir()
    for dist in _closure(requirements).values():
        for name in _top_level(dist):
            source = Path(dist.locate_file(name))
            if source.exists() and not (packages / name).exists():
                (packages / name).symlink_to(source)
    for name in ("router", "pipelines"):  # the package itself, as installed
        (packages / name).symlink_to(ROOT / name)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "slim.pth").write_text(f"{packages}\n")
    return python
