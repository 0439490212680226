"""The README's examples run, in order, as a newcomer would run them; its links and the docs' links resolve.

Sybil (a library for testing documentation examples) reads README.md's fenced ``bash`` and ``python``
blocks and its ``<!-- skip: next "reason" -->`` comments. Each block is one test, run in document
order in a temporary working directory that stands in for the reader's project: the bundled sample
as ``logs/`` (the quickstart's "your logs"), an MLflow store of its own (``MLFLOW_TRACKING_URI``),
the test embedding cache as ``.cache/embeddings`` (the job's default cache folder, so the sample's
prompts are not embedded again), and offline (``HF_HUB_OFFLINE``). Bash blocks run under
``bash -euo pipefail`` with this environment's ``bin/`` first on ``PATH`` (the ``router`` command);
python blocks run in this process and share one namespace, as in a REPL. A block after a
``<!-- skip: next "reason" -->`` comment (``make test``, which runs this file; ``router serve``, which
blocks, and which tests/serve/test_gateway.py runs) is not a test; its reason is required.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

import pytest
from sybil import Sybil
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.conftest import NQ_SAMPLE, ROOT, TEST_CACHE

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SHELL_TIMEOUT_S = 300


class Shell:
    """Sybil evaluator of a ``bash`` block: run it in the reader's working directory; the output on failure."""

    cwd: Path | None = None
    env: dict[str, str] | None = None

    def __call__(self, example) -> str | None:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", str(example.parsed)], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
        if proc.returncode:
            return f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        return None


SHELL = Shell()
SYBIL = Sybil(parsers=[SkipParser(), PythonCodeBlockParser(), CodeBlockParser("bash", SHELL)])
EXAMPLES = list(SYBIL.parse(README))
_SKIPPED = {id(EXAMPLES[i + 1]) for i, e in enumerate(EXAMPLES[:-1]) if isinstance(e.region.evaluator, Skipper)}
# The blocks that run, one test each; a block after a skip comment is passed over (its reason is checked below).
BLOCKS = [e for e in EXAMPLES if not isinstance(e.region.evaluator, Skipper) and id(e) not in _SKIPPED]


class Run:
    """Evaluates the README's examples in order, each once, up to the one a test asks for."""

    def __init__(self) -> None:
        self.next = 0
        self.failed: int | None = None  # README line of the first block that failed

    def through(self, block=None) -> None:
        """Evaluate every example up to ``block`` (None: all); blocks after a skip comment are passed over."""
        if self.failed is not None:
            pytest.skip(f"an earlier README block failed (line {self.failed})")
        target = len(EXAMPLES) - 1 if block is None else EXAMPLES.index(block)
        while self.next <= target:
            example = EXAMPLES[self.next]
            self.next += 1
            try:
                example.evaluate()
            except SkipTest:  # a block after a skip comment (not one of BLOCKS)
                continue
            except BaseException:
                self.failed = example.line
                raise


@pytest.fixture(scope="module")
def readme(tmp_path_factory):
    """The reader's project folder, entered for the module: logs, an MLflow store and the embedding cache."""
    work = tmp_path_factory.mktemp("readme")
    (work / "logs").mkdir()
    shutil.copy(NQ_SAMPLE, work / "logs" / NQ_SAMPLE.name)
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    (work / ".cache").mkdir()
    (work / ".cache" / "embeddings").symlink_to(TEST_CACHE, target_is_directory=True)
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlruns.db'}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    SHELL.cwd = work
    SHELL.env = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # python blocks run here, in this process
        for key, value in env.items():
            mp.setenv(key, value)
        yield Run()


@pytest.mark.parametrize("block", BLOCKS, ids=[f"line {b.line}: {b.region.lexemes.get('arguments')}" for b in BLOCKS])
def test_readme_block(readme, block):
    readme.through(block)


def test_quickstart_trained_and_routed(readme):
    """The quickstart's results, beyond running: a champion folder and model names from the router."""
    readme.through()
    namespace = EXAMPLES[0].namespace
    r = namespace.get("r")
    assert r is not None, "the quickstart's python block names the loaded router `r`"
    assert len(r.models) == 6  # the bundled sample's models
    picks = r.route(["who wrote war and peace?", "integrate x^2 sin x"])
    assert len(picks) == 2 and set(picks) <= set(r.models)
    assert (Path.cwd() / "models" / "my-router" / "champion").is_symlink()


def test_readme_runs_its_quickstart_and_says_why_it_skips():
    """The quickstart is not skipped wholesale; every skip gives its reason."""
    skips = [i for i, e in enumerate(EXAMPLES) if isinstance(e.region.evaluator, Skipper)]
    assert all(EXAMPLES[i].parsed[1] for i in skips), "every <!-- skip: next --> in README.md needs a reason"
    ran = "\n".join(str(b.parsed) for b in BLOCKS)
    assert "router train --config job.yaml" in ran and "router.load(" in ran and ".route(" in ran


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _anchors(page: Path) -> set[str]:
    """The heading anchors GitHub gives a Markdown page: lower case, punctuation dropped, spaces as
    hyphens, a repeated one numbered -1, -2, ...; headings inside fenced code blocks do not count."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*$", line)
        if fenced or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).replace("`", "").lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


@pytest.mark.parametrize("page", [README, *DOCS, RESULTS], ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page):
    """Every relative link of the README, the docs pages and benchmarks/RESULTS.md (its headline table)
    names a file of the checkout, and a link's anchor names a heading of the page it points to (the
    anchors GitHub renders)."""
    broken = []
    for target in _LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_job_doc_lists_every_config_key_with_its_default():
    """docs/job.md's full config block is the default JobConfig, key for key (the bundled sample's path aside)."""
    import yaml

    from pipelines.config import JobConfig

    text = (ROOT / "docs" / "job.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    marked = [b for b in blocks if "every key with its default" in b]
    assert len(marked) == 1, "docs/job.md: one yaml block says 'every key with its default'"
    raw = yaml.safe_load(marked[0])

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k not in ("share", "cluster"):
                out |= keys(v, f"{prefix}{k}.")
        return out

    default = JobConfig().model_dump(mode="json")
    assert keys(raw) == keys(default) - {"logs.path"}
    assert JobConfig.model_validate(raw) == JobConfig()
