"""Two processes on the CPU through torchrun: identical replicas, the same accuracy, resumable runs."""

from __future__ import annotations

import subprocess
import sys

from conftest import MNIST
from digitrec.checkpoint import Checkpoint
from digitrec.training import make_config, train

SETTINGS = ["--model", "fast", "--train-subset", "8000", "--epochs", "1", "--batch-size", "128", "--no-plots"]


def test_two_processes_train_identical_replicas_resumable_in_one(mnist, tmp_path):
    run_dir = tmp_path / "ddp"
    result = subprocess.run([sys.executable, "-m", "digitrec", "train", "--nproc", "2", "--data", MNIST,
                             "--out", str(run_dir), *SETTINGS], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Weights identical on all 2 processes" in result.stdout
    assert result.stdout.count("Test set:") == 2, "rank 0 alone logs"
    distributed = Checkpoint.load(run_dir)

    single = train(make_config("fast", train_subset=8000, epochs=1, batch_size=128, data_dir=MNIST),
                   tmp_path / "single", data=mnist, log=lambda line: None, progress=False)
    assert distributed.step == single.step, "the same number of global batches"
    assert abs(distributed.history.final_test.accuracy - single.history.final_test.accuracy) < 0.01

    resumed = subprocess.run([sys.executable, "-m", "digitrec", "resume", str(run_dir), "--epochs", "2",
                              "--no-plots"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = Checkpoint.load(run_dir)
    assert after.epoch == 2 and after.step == 2 * distributed.step
    assert after.history.final_test.accuracy >= distributed.history.final_test.accuracy - 0.005
