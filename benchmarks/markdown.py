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


# The instruction sets that change these numbers: int8 (VNNI), bfloat16 (AVX512-BF16, AMX) and the
# vector width of every kernel (AVX2, AVX-512), as /proc/cpuinfo names them.
INSTRUCTION_SETS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX512-VNNI", "avx_vnni": "AVX-VNNI",
                    "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX-BF16", "amx_int8": "AMX-INT8"}


def cpu_description() -> str:
    """The CPU's model name and which of INSTRUCTION_SETS it has, e.g. 'AMD EPYC (AVX2, AVX-512; no AMX-BF16)'."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        return model
    has = [name for flag, name in INSTRUCTION_SETS.items() if flag in flags]
    lacks = [name for flag, name in INSTRUCTION_SETS.items() if flag not in flags]
    return f"{model} ({', '.join(has) or 'none of ' + ', '.join(lacks)}{'; no ' + ', '.join(lacks) if has and lacks else ''})"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:  # the reading benchmarks run without PyTorch
        import torch

        versions = f", torch {torch.__version__}"
    except ImportError:
        versions = ""
    return f"{cpu_description()}, {cores} cores, Python {platform.python_version()}{versions}"


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
