"""Training on the real MNIST: the lab's numbers, exact resume, checkpoints, run folders."""

from __future__ import annotations

import csv
import json
import signal

import pytest
import torch

from conftest import MNIST
from digitrec.checkpoint import Checkpoint
from digitrec.errors import DigitrecError, Interrupted
from digitrec.training import WeightAverage, make_config, resume, train


def quiet(line: str) -> None:
    pass


def same_state(first: Checkpoint, second: Checkpoint) -> None:
    assert first.model.keys() == second.model.keys()
    for key in first.model:
        assert torch.equal(first.model[key], second.model[key]), f"{key} differs"
    assert first.history == second.history
    assert (first.epoch, first.batch, first.step) == (second.epoch, second.batch, second.step)


@pytest.mark.slow
def test_tutorial_reproduces_the_lab_and_resumes_to_eight_epochs(mnist, tmp_path):
    lines = []
    final = train(make_config("tutorial", data_dir=MNIST), tmp_path, data=mnist, log=lines.append, progress=False)
    accuracies = [point.accuracy for point in final.history.test]
    assert len(accuracies) == 4  # before training and after each of the 3 epochs
    assert 0.05 < accuracies[0] < 0.2, "an untrained network guesses"
    assert 0.960 <= accuracies[3] <= 0.978, f"lab band after 3 epochs, got {accuracies}"
    assert lines[1] == "Train Epoch: 1 [0/60000 (0%)]\tLoss: " + lines[1].split("Loss: ")[1]
    assert "Train Epoch: 1 [640/60000 (1%)]" in lines[2]
    assert lines[-1].startswith("Test set: Avg. loss: ") and "/10000 (9" in lines[-1]

    final = resume(tmp_path, epochs=8, log=quiet, data=mnist, progress=False)
    assert final.epoch == 8
    assert final.history.final_test.accuracy >= 0.98
    assert [point.epoch for point in final.history.test] == list(range(9))


def test_three_then_resume_to_five_is_bit_identical_to_five_straight(mnist, tmp_path):
    settings = dict(train_subset=2000, data_dir=MNIST, log_interval=5)
    straight = train(make_config("tutorial", epochs=5, **settings), tmp_path / "straight", data=mnist,
                     log=quiet, progress=False)
    train(make_config("tutorial", epochs=3, **settings), tmp_path / "split", data=mnist, log=quiet, progress=False)
    resumed = resume(tmp_path / "split", epochs=5, data=mnist, log=quiet, progress=False)
    same_state(straight, resumed)
    assert straight.history.final_test.accuracy > 0.5, "it learned something"


def interrupt_after(lines_before_signal: int, number: int = signal.SIGINT):
    """A log function that delivers a real signal to this process after some log lines."""
    seen = []

    def log(line: str) -> None:
        seen.append(line)
        if len(seen) == lines_before_signal:
            signal.raise_signal(number)

    return log


@pytest.mark.parametrize("model, number, precision", [("tutorial", signal.SIGINT, "fp32"),
                                                       ("fast", signal.SIGTERM, "fp32"), ("fast", signal.SIGINT, "bf16")])
def test_interrupted_mid_epoch_resumes_bit_identically(mnist, tmp_path, model, number, precision):
    # The fast preset brings one-cycle, label smoothing and Adam; add augmentation and an EMA so
    # every random and running state goes through the checkpoint.
    settings = dict(train_subset=1500, epochs=2, data_dir=MNIST, log_interval=1, augment="affine", ema=0.9,
                    precision=precision)
    straight = train(make_config(model, **settings), tmp_path / "straight", data=mnist, log=quiet, progress=False)
    with pytest.raises(Interrupted, match="digitrec resume"):
        train(make_config(model, **settings), tmp_path / "stopped", data=mnist,
              log=interrupt_after(12, number), progress=False)
    stopped = Checkpoint.load(tmp_path / "stopped")
    assert stopped.batch > 0, "stopped inside an epoch"
    resumed = resume(tmp_path / "stopped", data=mnist, log=quiet, progress=False)
    same_state(straight, resumed)
    for key in straight.ema:
        assert torch.equal(straight.ema[key], resumed.ema[key])


def test_run_folder_holds_checkpoint_metrics_and_config(mnist, tmp_path):
    final = train(make_config("tutorial", epochs=1, train_subset=1000, checkpoint_every=4, data_dir=MNIST),
                  tmp_path, data=mnist, log=quiet, progress=False)
    checkpoint = Checkpoint.load(tmp_path)
    assert checkpoint.epoch == 1 and checkpoint.step == final.step == 16
    assert checkpoint.data["checksums"] == mnist.checksums
    assert set(checkpoint.optimizer) == {"state", "param_groups"}
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.01
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    tests = [row for row in rows if row["split"] == "test"]
    trains = [row for row in rows if row["split"] == "train"]
    assert [row["examples_seen"] for row in tests] == ["0", "1000"]
    assert float(tests[-1]["accuracy"]) == pytest.approx(final.history.final_test.accuracy)
    assert [int(row["examples_seen"]) for row in trains] == [0, 640]


def test_resume_refuses_other_data(mnist, tmp_path):
    from conftest import write_idx_dataset

    train(make_config("tutorial", epochs=1, train_subset=500, data_dir=MNIST), tmp_path / "run", data=mnist,
          log=quiet, progress=False)
    other = write_idx_dataset(tmp_path / "other")
    with pytest.raises(DigitrecError, match="differs from the data this run was trained on"):
        resume(tmp_path / "run", epochs=2, data_dir=str(other), log=quiet, progress=False)


def test_target_accuracy_stops_early(mnist, tmp_path):
    final = train(make_config("fast", epochs=3, train_subset=6000, eval_every=4, target_accuracy=0.9,
                              data_dir=MNIST), tmp_path, data=mnist, log=quiet, progress=False)
    accuracies = [point.accuracy for point in final.history.test]
    assert accuracies[-1] >= 0.9 and all(accuracy < 0.9 for accuracy in accuracies[:-1])
    assert final.step < 3 * 24, "stopped before the planned 3 epochs of 24 batches"


@pytest.mark.parametrize("overrides, message", [
    (dict(epochs=0), "--epochs must be at least 1"),
    (dict(lr=-1.0), "--lr must be positive"),
    (dict(optimizer="rmsprop"), "--optimizer must be one of"),
    (dict(target_accuracy=99.0), "fraction"),
    (dict(precision="fp16"), "--precision must be one of fp32, bf16 or auto"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(DigitrecError, match=message):
        make_config("tutorial", **overrides)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fast_preset_clears_98_5_percent(mnist, tmp_path, precision):
    """A correctness guard on the real MNIST: the fast recipe learns well with a small budget, also with
    its forward pass in bfloat16, and the weights it keeps and saves stay fp32."""
    final = train(make_config("fast", data_dir=MNIST, precision=precision), tmp_path, data=mnist,
                  log=quiet, progress=False)
    assert final.history.final_test.accuracy >= 0.985
    assert all(value.dtype in (torch.float32, torch.int64) for value in final.model.values())


def test_precision_auto_takes_bfloat16_only_where_the_hardware_has_it(monkeypatch):
    from digitrec import training

    assert make_config("tutorial").precision == "fp32"  # the lab's math stays fp32
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(training, "bfloat16_is_fast", lambda device: native)
        assert make_config("best").precision == expected
        assert make_config("best", precision="fp32").precision == "fp32"  # a flag wins


@pytest.mark.parametrize("damage", ["rng", "optimizer", "config"])
def test_resume_of_a_damaged_training_state_is_one_clear_error(mnist, tmp_path, damage):
    train(make_config("tutorial", epochs=1, train_subset=300, data_dir=MNIST), tmp_path, data=mnist,
          log=quiet, progress=False)
    checkpoint = Checkpoint.load(tmp_path)
    if damage == "rng":
        checkpoint.rng.pop("augment")
    elif damage == "optimizer":
        checkpoint.optimizer["param_groups"] = [{"lr": 0.01}]
    else:
        checkpoint.config["no_such_setting"] = 1
        checkpoint.config["lr"] = "fast"
    checkpoint.save(tmp_path / "checkpoint.pt")
    (tmp_path / ".checkpoint.pt.leftover.tmp").write_bytes(b"half a checkpoint")
    with pytest.raises(DigitrecError, match="damaged|lr must be"):
        resume(tmp_path, epochs=2, data=mnist, log=quiet, progress=False)
    assert not (tmp_path / ".checkpoint.pt.leftover.tmp").exists() or damage == "config"


def test_flip_augmentation_mirrors_half_and_moves_whole_pixels():
    from digitrec.augmentation import flip_shift_batch

    images = torch.rand(400, 1, 28, 28)
    moved = flip_shift_batch(images, torch.Generator().manual_seed(0))
    mirrored = 0
    for image, out in zip(images[:, 0], moved[:, 0]):
        matches = []
        for mirror in (False, True):
            source = image.flip(-1) if mirror else image
            for dy in range(-2, 3):
                for dx in range(-2, 3):
                    expected = torch.zeros_like(source)  # background comes in at the edges
                    expected[max(dy, 0):28 + min(dy, 0), max(dx, 0):28 + min(dx, 0)] = \
                        source[max(-dy, 0):28 + min(-dy, 0), max(-dx, 0):28 + min(-dx, 0)]
                    if torch.equal(out, expected):
                        matches.append(mirror)
        assert len(matches) == 1  # exactly one mirror-and-shift, no interpolation
        mirrored += matches[0]
    assert 160 < mirrored < 240


def test_elastic_augmentation_is_a_smooth_bounded_warp_of_each_image():
    from digitrec.augmentation import ELASTIC_PIXELS, augment_batch

    images = torch.zeros(300, 1, 28, 28)
    images[:, :, 12:15, 12:15] = 1.0  # a 3x3 dot in the middle
    still = dict(rotation=0.0, scale=0.0, shift=0.0, shear=0.0)
    warped = augment_batch(images, torch.Generator().manual_seed(0), elastic=ELASTIC_PIXELS, **still)
    assert torch.equal(warped, augment_batch(images, torch.Generator().manual_seed(0), elastic=ELASTIC_PIXELS, **still))
    unwarped = augment_batch(images, torch.Generator().manual_seed(0), **still)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")

    def centre(batch):
        mass = batch[:, 0].sum((1, 2))
        return torch.stack([(batch[:, 0] * xs).sum((1, 2)) / mass, (batch[:, 0] * ys).sum((1, 2)) / mass], 1)

    moved = (centre(warped) - centre(unwarped)).norm(dim=1)
    # Bicubic interpolation of the lattice may overshoot a little; a thinner pen moves the dot half a pixel.
    assert moved.max() <= 1.3 * ELASTIC_PIXELS * 2 ** 0.5 + 0.5
    assert (moved > 0.2).float().mean() > 0.8, "most dots move"
    assert len({round(value, 3) for value in moved.tolist()}) > 250, "each image its own warp"


def test_the_best_recipe_augments_each_data_set_in_its_own_way():
    assert make_config("best").augment == "affine"  # handwriting: tilt, scale, shear, pen width
    assert make_config("best", dataset="fashion-mnist").augment == "flip"  # things: mirror and shift
    assert make_config("best", dataset="fashion-mnist", augment="affine").augment == "affine"  # a flag wins
    with pytest.raises(DigitrecError, match="--augment must be one of none, affine, elastic, flip or auto"):
        make_config("best", augment="cutout")


def test_a_typo_in_a_setting_or_a_recipe_names_it_and_every_setting(monkeypatch):
    from digitrec import models

    with pytest.raises(DigitrecError, match=r"unknown setting 'optimiser' in the settings given; "
                                            r"the settings are: model, .*, optimizer, .*, precision$"):
        make_config("tutorial", optimiser="adam")
    monkeypatch.setitem(models.PRESETS, "typo", models.Preset(models.FastNet, "a recipe with typos",
                                                              {"shedule": "onecycle"}))
    with pytest.raises(DigitrecError, match=r"unknown setting 'shedule' in the typo preset's recipe; "
                                            r"the settings are: .*, schedule, "):
        make_config("typo")
    monkeypatch.setitem(models.PRESETS, "typo", models.Preset(models.FastNet, "a recipe with typos",
                                                              {"lr": "0.1", "schedule": "one-cycle"}))
    with pytest.raises(DigitrecError, match="setting lr must be float or int, not '0.1'"):
        make_config("typo")
    with pytest.raises(DigitrecError, match="--schedule must be one of none, onecycle, step, not 'one-cycle'"):
        make_config("typo", lr=0.1)


def test_settings_are_stored_as_plain_strings_and_load_back_as_choices(tmp_path):
    from digitrec.config import Optimizer, Precision, TrainConfig

    config = make_config("best", precision="bf16")
    stored = config.to_dict()
    assert {type(value) for value in stored.values()} <= {str, int, float, bool, type(None)}
    assert stored["optimizer"] == "nesterov" and stored["precision"] == "bf16"
    torch.save(stored, tmp_path / "config.pt")
    again = TrainConfig(**torch.load(tmp_path / "config.pt", weights_only=True))
    assert again == TrainConfig(**json.loads(json.dumps(stored))) == config
    assert again.optimizer is Optimizer.NESTEROV and again.precision is Precision.BF16


def test_training_flags_come_from_the_settings(capsys):
    from dataclasses import fields

    from digitrec.cli import build_parser
    from digitrec.config import TrainConfig, flag_name

    unset = vars(build_parser().parse_args(["train"]))
    flagged = [setting.name for setting in fields(TrainConfig) if setting.metadata["flag"]]
    assert len(flagged) == 22 and all(unset[name] is None for name in flagged), "unset: the preset's recipe"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optimizer", "rmsprop"])
    assert "--optimizer: invalid choice: 'rmsprop'" in capsys.readouterr().err
    assert build_parser().parse_args(["train", "--augment", "auto", "--no-channels-last"]).channels_last is False
    assert flag_name("label_smoothing") == "--label-smoothing"


def test_a_run_knows_its_files_and_its_accuracy_without_loading_its_checkpoint(mnist, tmp_path):
    from digitrec.run import Run

    before = torch.get_num_threads()
    threads = 1 if before != 1 else 2
    final = train(make_config("tutorial", epochs=1, train_subset=200, threads=threads, data_dir=MNIST), tmp_path,
                  data=mnist, log=quiet, progress=False)
    assert torch.get_num_threads() == before, "train() gives back the thread count it found"
    run = Run.open(tmp_path)
    assert run.accuracy == final.history.final_test.accuracy and run.config["threads"] == threads
    assert "checkpoint" not in vars(run), "accuracy and settings come from the small files"
    assert Run.open(tmp_path / "checkpoint.pt").checkpoint.history == final.history
    leftover, unrelated = tmp_path / ".checkpoint.pt.x1y2.tmp", tmp_path / ".notes.tmp"
    leftover.write_bytes(b"half")
    unrelated.write_bytes(b"mine")
    run.clean_leftovers()
    assert not leftover.exists() and unrelated.exists()
    resumed = resume(run, epochs=2, data=mnist, log=quiet, progress=False)
    assert run.checkpoint is resumed and run.checkpoint.epoch == 2, "the run shows what it saved last, not what it read"


def test_the_weight_average_warms_up_only_from_random_weights():
    """From random weights the first updates take most of the model (the average must not keep the
    initial weights for thousands of steps); from trained weights (warm_up=False) every update moves
    it by 1 - decay, so tuning a trained model keeps it near where it started."""
    model = torch.nn.Linear(3, 1)
    start = model.weight.detach().clone()
    warming, steady = WeightAverage(model, 0.998), WeightAverage(model, 0.998, warm_up=False)
    with torch.no_grad():
        model.weight.add_(1.0)
    warming.update(model, step=0)
    steady.update(model, step=0)
    assert torch.allclose(warming.state["weight"] - start, torch.full_like(start, 0.9))  # 1 - 1/10
    assert torch.allclose(steady.state["weight"] - start, torch.full_like(start, 0.002))
