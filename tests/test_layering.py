"""The layering is checked, not hoped for: import-linter's contracts (pyproject.toml) hold on the tree, a planted
upward import breaks them, and no module reaches into another module's private names."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("router", "pipelines")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` (its pyproject.toml's contracts), in a fresh process."""
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache", "--no-logo"],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True,
                          timeout=300)


def test_the_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout


def test_a_planted_upward_import_breaks_the_flow_contract(tmp_path):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    rule = tmp_path / "router" / "policy" / "rule.py"
    rule.write_text(rule.read_text() + "\n\ndef _upward():\n    from router.serve.service import RouterMeta\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "router.policy.rule -> router.serve.service" in result.stdout


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for name in PACKAGES for p in (ROOT / name).rglob("*.py")}


def test_no_module_imports_another_modules_private_names():
    """``from x import _name`` across modules couples to an implementation detail (private modules aside)."""
    modules = _modules()
    offences = []
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in modules and node.module != module:
                offences += [f"{module}: from {node.module} import {a.name}" for a in node.names
                             if a.name.startswith("_") and not a.name.startswith("__")
                             and f"{node.module}.{a.name}" not in modules]
    assert not offences, offences
