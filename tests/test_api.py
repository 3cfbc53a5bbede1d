"""The Python API as people use it: the README's examples and the lab notebook, executed."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def readme_api_examples() -> str:
    """The README's "Python API" section: an interactive session whose printed output is the real one."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"### Python API\n(.*?)\n### ", readme, re.S)
    assert section, "the README has a Python API section"
    sessions = re.findall(r"```pycon\n(.*?)```", section.group(1), re.S)
    assert sessions and all(">>> " in session for session in sessions)
    return "\n".join(sessions)


def test_the_readme_python_api_examples_print_what_the_readme_shows(mnist, tmp_path, monkeypatch):
    # As if in the project folder (the examples name docs/img/...), but writing their runs/ elsewhere.
    (tmp_path / "docs").symlink_to(ROOT / "docs")
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(readme_api_examples(), {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 5, f"{runner.failures} of {runner.tries} examples differ"


def test_the_lab_notebook_runs_top_to_bottom(mnist, tmp_path):
    notebook = nbformat.read(ROOT / "docs" / "lab.ipynb", as_version=4)
    parameters = notebook.cells[1]
    assert parameters.source.startswith("# Parameters")
    # 6,000 training images instead of 60,000 keep the eight epochs to seconds; the rest runs as written.
    parameters.source = f"TRAIN_SUBSET = 6000\nRUN = {str(tmp_path / 'lab')!r}"
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "docs")}}).execute()
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.output_type == "stream")
    pictures = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
                if {"image/png", "image/jpeg"} & set(output.get("data", {}))]
    accuracies = [float(value) for value in re.findall(r"after \d epochs: ([\d.]+)%", printed)]
    assert re.findall(r"after (\d) epochs", printed) == ["3", "8"]
    assert 80 < accuracies[0] <= accuracies[1], printed
    assert "Test set: Avg. loss" in printed and "train: (60000, 28, 28) test: (10000, 28, 28)" in printed
    assert len(pictures) >= 4 + 1, "samples, loss, predictions, the resumed loss and the picture read"
    assert "213723 (confidence" in printed
