"""scripts/photo_tune.py: the digits it tunes the shipped model on, and its refusal to ship a worse one."""

from __future__ import annotations

import copy
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import photo_tune  # noqa: E402

from digitrec.checkpoint import load_model  # noqa: E402


def test_photo_digits_are_the_readers_cut_outs_in_the_photos_order(mnist, monkeypatch):
    """Each photo's digits, as the reader cuts them out, paired with the photo's truth digit by digit:
    the shipped model reads nearly all of them as labelled (pairs shifted by one would read as
    labelled about a tenth of the time), and a photo cut into another number of digits gives none."""
    monkeypatch.setattr(photo_tune, "TRAIN_IMAGES", mnist.train_images.numpy(), raising=False)
    monkeypatch.setattr(photo_tune, "TRAIN_LABELS", mnist.train_labels.numpy(), raising=False)
    pairs = [pair for k in range(6) for pair in photo_tune.photo_digits(("page", 100, k))]
    assert len(pairs) >= 30  # six pages of 2-4 numbers of 2-6 digits, most cut out right
    images = np.stack([image for image, _ in pairs])
    labels = np.array([label for _, label in pairs])
    assert images.shape[1:] == (28, 28) and images.dtype == np.uint8
    read = np.exp(load_model("best").log_probabilities(images)).argmax(1)
    assert (read == labels).mean() >= 0.95

    monkeypatch.setattr(photo_tune, "preprocess_page", lambda image: ([], []))
    assert photo_tune.photo_digits(("page", 100, 0)) == []


@pytest.fixture
def quick_tuning(mnist, monkeypatch, tmp_path):
    """photo_tune.main on the shipped model, with the photos and the tuning replaced by `tuned`."""
    monkeypatch.setenv("DIGITREC_DATA", str(mnist.folder))
    monkeypatch.setattr(photo_tune, "collect_photo_digits",
                        lambda data_dir, workers: (mnist.train_images[:10], mnist.train_labels[:10]))
    out = tmp_path / "tuned.safetensors"

    def run(tuned) -> Path:
        monkeypatch.setattr(photo_tune, "fine_tune", lambda loaded, *rest: tuned(loaded))
        monkeypatch.setattr(sys, "argv", ["photo_tune.py", "best", "--out", str(out)])
        photo_tune.main()
        return out
    return run


def test_tuning_that_lowers_mnist_accuracy_writes_nothing(quick_tuning, tmp_path):
    def damaged(loaded):
        model = copy.deepcopy(loaded.model)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(0.5 + torch.rand_like(parameter))
        return replace(loaded, model=model)

    with pytest.raises(SystemExit) as stop:
        quick_tuning(damaged)
    assert "lowered MNIST test accuracy" in str(stop.value.code) and "not written" in str(stop.value.code)
    assert not (tmp_path / "tuned.safetensors").exists()


def test_tuned_weights_are_written_for_the_package(quick_tuning, mnist):
    out = quick_tuning(lambda loaded: loaded)  # as accurate as before: written
    written = load_model(out)
    assert written.name == "best" and float(written.metadata["accuracy"]) >= 0.995
    assert torch.equal(next(written.model.parameters()), next(load_model("best").model.parameters()))


def test_the_shipped_weights_lie_between_the_model_and_its_tuned_copy():
    """What ships is TUNED_SHARE of the way from the model to the tuned average: halfway keeps the
    MNIST digits the model reads at about 50:50 where they were (tuning all the way tipped 2-3 of them)."""
    start = {"weight": torch.zeros(3), "bias": torch.ones(2), "num_batches_tracked": torch.tensor(5)}
    tuned = {"weight": torch.full((3,), 2.0), "bias": torch.full((2,), 3.0), "num_batches_tracked": torch.tensor(9)}
    halfway = photo_tune.blend(start, tuned, 0.5)
    assert torch.equal(halfway["weight"], torch.ones(3)) and torch.equal(halfway["bias"], torch.full((2,), 2.0))
    assert int(halfway["num_batches_tracked"]) == 9
    assert torch.equal(photo_tune.blend(start, tuned, 1.0)["weight"], tuned["weight"])
    assert torch.equal(start["weight"], torch.zeros(3))  # the model's own weights are left alone


def test_fine_tuning_moves_only_a_copy_and_ships_tuned_share_of_the_way(mnist, monkeypatch):
    """A few steps on a slice of MNIST: TUNED_SHARE 0 gives back the model's own weights, 1 the tuned
    average's, 0.5 the point halfway between; the model handed in is never changed."""
    loaded = load_model("best")
    start = {key: value.clone() for key, value in loaded.model.state_dict().items()}
    small = replace(mnist, train_images=mnist.train_images[:384], train_labels=mnist.train_labels[:384])
    monkeypatch.setattr(photo_tune, "EPOCHS", 1)
    recipe = photo_tune.make_config("best", precision="fp32")

    def weights(share: float) -> dict[str, torch.Tensor]:
        monkeypatch.setattr(photo_tune, "TUNED_SHARE", share)
        tuned = photo_tune.fine_tune(loaded, small, mnist.test_images[:64], mnist.test_labels[:64], recipe)
        return tuned.model.state_dict()

    kept, moved, halfway = weights(0.0), weights(1.0), weights(0.5)
    floats = [key for key, value in start.items() if value.is_floating_point()]
    assert all(torch.equal(kept[key], start[key]) for key in floats)
    assert any(not torch.equal(moved[key], start[key]) for key in floats)
    assert all(torch.allclose(halfway[key], (start[key] + moved[key]) / 2, atol=1e-6) for key in floats)
    assert all(torch.equal(value, start[key]) for key, value in loaded.model.state_dict().items())
