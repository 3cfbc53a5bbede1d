"""Shared by the benchmark scripts: a Markdown table, and its own section of docs/benchmarks.md."""

from __future__ import annotations

import datetime
import os
import platform
import re
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md, stamped with command, machine, date."""
    command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
    stamp = f"`{command}` on {machine()}, {datetime.date.today().isoformat()}"
    section = f"<!-- begin {name} -->\n## {title}\n\n{stamp}\n\n{body.strip()}\n<!-- end {name} -->"
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nEvery table here was written by the script named above it.\n"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)
    print(f"wrote section {name!r} of {DOC}")
