"""Keep benchmarks/RESULTS.md as sections, one per benchmark script, each replaced on re-run."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is written by the script it names; re-run it to refresh.\n"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def peak_rss_gib() -> float:
    """This process's peak RSS in GiB: ``VmHWM``, the high-water mark of its own memory map. A child's
    ``ru_maxrss`` starts at its parent's peak (Linux keeps the pre-exec maximum), so it is not used."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body``."""
    text = RESULTS.read_text() if RESULTS.exists() else HEADER
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def publish(name: str, text: str, write: bool = True) -> None:
    """Print a benchmark's section and, unless ``write`` is off (``--no-write``), store it in RESULTS.md."""
    print(text)
    if write:
        write_section(name, text)
