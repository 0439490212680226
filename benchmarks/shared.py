"""Where the benchmarks find ../shared/data: real logged multi-model data sets (MMLU-Pro, RouterBench,
RouteLLM, LLMRouter NQ) that live beside the checkout on our own machines and are not part of the
repository (the tests use the small committed subsets in tests/fixtures instead).

Every benchmark builds its paths with ``shared_data(...)``, so a missing folder is reported the same
way everywhere: the path and what the benchmarks need, then exit status 1, no traceback.
``ROUTER_SHARED_DATA`` points the benchmarks at another copy of the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("ROUTER_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def shared_data(*parts: str) -> Path:
    """``SHARED_DATA / parts``, or exit with a message naming it if it does not exist."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise SystemExit(
            f"{path} is missing: these benchmarks need the real data sets in ../shared/data beside the "
            f"checkout (looked in {SHARED_DATA}; set ROUTER_SHARED_DATA to use another copy). "
            "They are not in the repository; the tests use the subsets in tests/fixtures."
        )
    return path
