"""The docs' examples run, page by page, in a reader's project folder (issue 24, D).

Sybil reads the fenced ``bash`` and ``python`` blocks of docs/formats.md, job.md, routers.md, serving.md and
feedback.md, as tests/test_readme.py does for the README. The reader's folder holds what the examples name:
``logs/`` (300 questions of the bundled MMLU-Pro sample: 3 models, 14 tasks, $ costs), ``mylogs.csv`` (the
same with the reader's own column names), a wide file with its questions table, pairwise preferences, a
price table, ``job.yaml`` (a small candidate list: the job's steps, not its full search), and links to the
checkout's ``tests/``, ``pipelines/`` and ``data/``. MLflow writes its default store there (``mlflow.db``).
Blocks that need a running server, an install or served traffic are passed over with a
``<!-- skip: next "reason" -->`` comment naming the test that runs their equivalent.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from unittest import SkipTest

import polars as pl
import pytest
from sybil import Sybil
from sybil.evaluators.skip import Skipper
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

from tests.conftest import FIXTURES, ROOT, TEST_CACHE
from tests.test_readme import Shell

PAGES = ("formats", "job", "routers", "serving", "feedback")
SHELL = Shell()
SYBIL = Sybil(parsers=[SkipParser(), PythonCodeBlockParser(), CodeBlockParser("bash", SHELL)])
EXAMPLES = {page: list(SYBIL.parse(ROOT / "docs" / f"{page}.md")) for page in PAGES}
_SKIPPED = {id(ex[i + 1]) for ex in EXAMPLES.values() for i, e in enumerate(ex[:-1])
            if isinstance(e.region.evaluator, Skipper)}
# The blocks that run, one test each (a skip comment and the block after it are passed over).
BLOCKS = [(page, e) for page in PAGES for e in EXAMPLES[page]
          if not isinstance(e.region.evaluator, Skipper) and id(e) not in _SKIPPED]
JOB_YAML = """name: my-router
logs: {path: logs/}
routers: [{family: best_single}, {family: ridge}, {family: knn}]
selection: {folds: 3}
"""


def _workspace(work: Path) -> None:
    sample = pl.read_ndjson(ROOT / "data" / "mmlu_pro_sample.jsonl.gz")
    ids = sample["query_id"].unique().sort().sample(300, seed=0)  # spread over the 14 tasks
    logs = sample.filter(pl.col("query_id").is_in(ids.implode()))
    (work / "logs").mkdir()
    logs.write_ndjson(work / "logs" / "sample.jsonl")
    logs.select(pl.col("query_id").alias("id"), pl.col("prompt").alias("question"), "model",
                pl.col("score").alias("correct"), "cost", "task").write_csv(work / "mylogs.csv")
    shutil.copy(FIXTURES / "mmlu_pro" / "correct_wide.csv", work / "scores_wide.csv")
    shutil.copy(FIXTURES / "mmlu_pro" / "questions.csv", work / "questions.csv")
    shutil.copy(FIXTURES / "pairwise_mmlu_anatomy.csv", work / "prefs.csv")
    shutil.copy(ROOT / "data" / "prices.example.yaml", work / "prices.yaml")
    (work / "job.yaml").write_text(JOB_YAML)
    for name in ("tests", "pipelines", "data"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    (work / ".cache").mkdir()
    (work / ".cache" / "embeddings").symlink_to(TEST_CACHE, target_is_directory=True)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """The reader's folder, entered for the module; MLflow's default store is the one there."""
    import mlflow

    work = tmp_path_factory.mktemp("docs")
    _workspace(work)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    SHELL.cwd, SHELL.env = work, {**env, "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
                                  "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)  # python blocks run here, in this process
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")  # what a fresh process here would use
        yield work
    mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def run(reader):
    """Evaluates each page's examples in order, each once, up to the one a test asks for."""
    done: dict[str, int] = dict.fromkeys(PAGES, 0)
    failed: set[str] = set()

    def through(page: str, block) -> None:
        if page in failed:
            pytest.skip(f"an earlier block of docs/{page}.md failed")
        examples = EXAMPLES[page]
        while done[page] <= examples.index(block):
            example = examples[done[page]]
            done[page] += 1
            try:
                example.evaluate()
            except SkipTest:  # a block after a skip comment
                continue
            except BaseException:
                failed.add(page)
                raise

    return through


@pytest.mark.parametrize("page, block", BLOCKS, ids=[f"{p}.md line {b.line}" for p, b in BLOCKS])
def test_docs_block(run, page, block):
    run(page, block)


def test_every_skipped_docs_block_says_why_and_names_a_test():
    for page, examples in EXAMPLES.items():
        for e in examples:
            if isinstance(e.region.evaluator, Skipper):
                reason = e.parsed[1] or ""
                assert "tests/" in reason, f"docs/{page}.md line {e.line}: a skip must name the test that covers it"
    assert {page for page, _ in BLOCKS} == {"formats", "job", "routers", "serving"}  # feedback.md: all skipped
