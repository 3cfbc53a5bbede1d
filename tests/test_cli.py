"""The `digitrec` command: each subcommand end to end, and bad input as one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import write_idx_dataset
from digitrec.cli import main


@pytest.fixture()
def tiny(tmp_path):
    return write_idx_dataset(tmp_path / "tiny", train=300, test=100)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_evaluate_plot_resume_on_any_idx_folder(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "train", "--model", "fast", "--data", tiny, "--out", out, "--epochs", "2",
                          "--batch-size", "32", "--log-interval", "5")
    assert code == 0
    assert "Train Epoch: 1 [0/300 (0%)]" in stdout and "Test set: Avg. loss:" in stdout
    assert "Final test accuracy after 2 epochs" in stdout
    for name in ("checkpoint.pt", "metrics.csv", "config.json", "samples.png", "loss.png", "predictions.png"):
        assert (out / name).stat().st_size > 0, name

    code, stdout, _ = run(capsys, "evaluate", out, "--data", tiny, "--json")
    result = json.loads(stdout)
    assert code == 0 and 0 <= result["accuracy"] <= 1 and result["total"] == 100
    assert set(result["per_class"]) == set("0123456789") and result["loss"] > 0
    assert result["accuracy"] > 0.5, "the bars are easy to learn"

    for name in ("samples.png", "loss.png", "predictions.png"):
        (out / name).unlink()
    code, stdout, _ = run(capsys, "plot", out)
    assert code == 0 and all((out / name).exists() for name in ("samples.png", "loss.png", "predictions.png"))

    code, stdout, _ = run(capsys, "resume", out, "--epochs", "3", "--no-plots")
    assert code == 0 and "Train Epoch: 3" in stdout and "Train Epoch: 2" not in stdout
    assert "after 3 epochs" in stdout


def test_training_into_an_existing_run_needs_force(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    assert run(capsys, "train", "--data", tiny, "--out", out, "--epochs", "1", "--no-plots")[0] == 0
    code, _, stderr = run(capsys, "train", "--data", tiny, "--out", out, "--epochs", "1", "--no-plots")
    assert code == 1 and "already holds a run" in stderr and "digitrec resume" in stderr
    assert run(capsys, "train", "--data", tiny, "--out", out, "--epochs", "1", "--no-plots", "--force")[0] == 0


@pytest.mark.parametrize("argv, message", [
    (["train", "--epochs", "0"], "--epochs must be at least 1"),
    (["train", "--model", "resnet"], "unknown model 'resnet'; choose one of: tutorial, mlp, fast, best"),
    (["train", "--data", "/nonexistent/folder"], "data folder /nonexistent/folder does not exist"),
    (["evaluate", "/nonexistent/run"], "cannot find model"),
    (["resume", "/nonexistent/run"], "no checkpoint at /nonexistent/run"),
])
def test_bad_input_is_one_line_and_exit_1(capsys, argv, message):
    code, _, stderr = run(capsys, *argv)
    assert code == 1
    assert stderr.startswith("digitrec: error: ") and message in stderr
    assert stderr.count("\n") == 1


def test_corrupt_checkpoint_is_named(tmp_path, capsys):
    run_dir = tmp_path / "broken"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    code, _, stderr = run(capsys, "evaluate", run_dir)
    assert code == 1 and "corrupt or truncated" in stderr and str(run_dir) in stderr


def test_resume_cannot_go_backwards(tmp_path, tiny, capsys):
    out = tmp_path / "run"
    run(capsys, "train", "--data", tiny, "--out", out, "--epochs", "2", "--no-plots")
    code, _, stderr = run(capsys, "resume", out, "--epochs", "1")
    assert code == 1 and "already has 2 epochs" in stderr


def test_console_script_rejects_unknown_flags_without_traceback():
    result = subprocess.run([sys.executable, "-m", "digitrec", "train", "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in result.stderr and "Traceback" not in result.stderr


def test_models_lists_every_preset(capsys):
    code, stdout, _ = run(capsys, "models")
    assert code == 0
    for name in ("tutorial", "mlp", "fast", "best"):
        assert f"\n{name} " in stdout
    assert f"{260 + 5020 + 16050 + 510:,}" in stdout  # the lab's conv1, conv2, fc1, fc2
