"""The evaluation report, run comparison, the extended evaluation metrics, and Fashion-MNIST end to end."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import CHROMIUM, MNIST, require
from digitrec.checkpoint import Checkpoint, load_model
from digitrec.cli import main
from digitrec.data import DATASETS, load_dataset
from digitrec.errors import DigitrecError
from digitrec.evaluation import Evaluation
from digitrec.models import build_model, count_parameters
from digitrec.report import feature_maps, first_layer_filters, model_summary, write_report
from digitrec.training import make_config, resume, train

SECTIONS = ("summary", "per-class", "confusion", "confused-pairs", "mistakes", "calibration", "training",
            "model", "filters", "feature-maps", "config", "data", "timings")


def quiet(line: str) -> None:
    pass


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- Metrics on a case small enough to work out by hand -------------------------------------------

def hand_evaluation() -> Evaluation:
    # Five images, two classes: (probability of class a, of class b) and the true class.
    probabilities = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.22, 0.78], [0.45, 0.55], [0.95, 0.05]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    return Evaluation(loss=0.0, accuracy=0.6, correct=3, total=5, per_class={"a": 0.5, "b": 2 / 3},
                      confusion=[[1, 1], [1, 2]], log_probabilities=probabilities.log(), labels=labels,
                      classes=("a", "b"))


def test_precision_recall_f1_from_the_confusion_matrix():
    metrics = hand_evaluation().class_metrics()
    assert metrics["a"] == pytest.approx({"precision": 1 / 2, "recall": 1 / 2, "f1": 1 / 2, "support": 2}, abs=1e-6)
    assert metrics["b"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}, abs=1e-6)
    assert hand_evaluation().macro_f1() == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-6)


def test_expected_calibration_error_and_reliability_bins():
    calibration = hand_evaluation().calibration(bins=15)
    # Every image falls in a bin of its own, so ECE is the mean of |confidence - correct|.
    expected = (abs(0.9 - 1) + abs(0.7 - 0) + abs(0.78 - 1) + abs(0.55 - 1) + abs(0.95 - 0)) / 5
    assert calibration["ece"] == pytest.approx(expected, abs=1e-6)
    filled = [b for b in calibration["bins"] if b["count"]]
    assert len(calibration["bins"]) == 15 and len(filled) == 5
    top = filled[-1]  # 0.95, wrong
    assert (top["lower"], top["upper"]) == pytest.approx((14 / 15, 1.0))
    assert (top["confidence"], top["accuracy"]) == pytest.approx((0.95, 0.0), abs=1e-6)


def test_worst_mistakes_are_the_most_confident_wrong_answers_and_pairs_are_off_diagonal():
    evaluation = hand_evaluation()
    mistakes = evaluation.worst_mistakes()
    assert [m["index"] for m in mistakes] == [4, 1]
    assert (mistakes[0]["true"], mistakes[0]["predicted"]) == ("b", "a")
    assert [name for name, _ in mistakes[0]["top3"]] == ["a", "b"]
    assert mistakes[0]["top3"][0][1] == pytest.approx(0.95, abs=1e-6)
    assert evaluation.confused_pairs() == [{"true": "a", "predicted": "b", "count": 1},
                                           {"true": "b", "predicted": "a", "count": 1}]


# --- Inside the network ----------------------------------------------------------------------------

def test_model_summary_counts_multiply_adds_of_the_lab_network():
    summary = model_summary(build_model("tutorial"))
    by_name = {layer["name"]: layer for layer in summary["layers"]}
    # Worked out by hand: output positions times the weights each one uses.
    assert by_name["conv1"]["multiply_adds"] == 10 * 24 * 24 * (1 * 5 * 5)
    assert by_name["conv2"]["multiply_adds"] == 20 * 8 * 8 * (10 * 5 * 5)
    assert by_name["fc1"]["multiply_adds"] == 320 * 50
    assert by_name["fc2"]["multiply_adds"] == 50 * 10
    assert summary["multiply_adds"] == 144_000 + 320_000 + 16_000 + 500
    assert summary["parameters"] == count_parameters(build_model("tutorial")) == 21_840
    assert by_name["conv2"]["output"] == [20, 8, 8]


def loaded_preset(name: str):
    from digitrec.checkpoint import LoadedModel

    torch.manual_seed(0)
    return LoadedModel(build_model(name).eval(), name, 0.1307, 0.3081, tuple("0123456789"), "test")


def test_feature_maps_follow_every_convolution_and_pooling_stage_including_functional_pooling():
    loaded = loaded_preset("tutorial")
    images = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    stages = feature_maps(loaded, images)
    assert [(name, tuple(maps.shape)) for name, maps in stages] == [
        ("conv1 (Conv2d)", (2, 10, 24, 24)), ("max_pool2d", (2, 10, 12, 12)),
        ("conv2 (Conv2d)", (2, 20, 8, 8)), ("max_pool2d_1", (2, 20, 4, 4))]
    assert torch.equal(stages[1][1], F.max_pool2d(stages[0][1], 2)), "the pooled maps are the network's own"

    best = [name for name, _ in feature_maps(loaded_preset("best"), images)]
    assert sum("Conv2d" in name for name in best) == 5 and sum("MaxPool2d" in name for name in best) == 2
    assert feature_maps(loaded_preset("mlp"), images) == []


def test_first_layer_filters_are_conv_kernels_or_image_shaped_weights():
    title, kernels = first_layer_filters(build_model("fast"), (28, 28))
    assert kernels.shape == (16, 5, 5) and "16 filters of 5×5" in title
    title, pictures = first_layer_filters(build_model("mlp"), (28, 28))
    assert pictures.shape == (32, 28, 28) and "256" in title


# --- The report of a real run, in a real browser ---------------------------------------------------

@pytest.fixture(scope="module")
def runs(mnist, tmp_path_factory) -> tuple[Path, Path]:
    """A short `fast` run resumed from 1 to 2 epochs, and a copy of it as it was after epoch 1."""
    root = tmp_path_factory.mktemp("report-runs")
    resumed, first_epoch = root / "resumed", root / "one-epoch"
    # The test passes during training see 2,000 test images to save time; the report sees all 10,000.
    quick = dataclasses.replace(mnist, test_images=mnist.test_images[:2000], test_labels=mnist.test_labels[:2000])
    train(make_config("fast", train_subset=3000, epochs=1, log_interval=3, data_dir=MNIST), resumed,
          data=quick, log=quiet, progress=False)
    shutil.copytree(resumed, first_epoch)
    resume(resumed, epochs=2, data=quick, log=quiet, progress=False)
    return resumed, first_epoch


def read_page(html: Path) -> dict:
    """Open the report offline in Debian's Chromium and read back what a person would see."""
    from playwright import sync_api

    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed: apt-get install chromium")
    requests = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(offline=True).new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(html.as_uri(), wait_until="load")
            return {"requests": requests, **page.evaluate("""() => ({
                sections: Object.fromEntries([...document.querySelectorAll("section")].map(section => [section.id, {
                    images: [...section.querySelectorAll("img")].map(img => [img.complete, img.naturalWidth]),
                    rows: section.querySelectorAll("tbody tr").length,
                    items: section.querySelectorAll("tbody tr, .card, .mistake").length, text: section.innerText}])),
                metrics: Object.fromEntries([...document.querySelectorAll("[data-metric]")]
                    .map(element => [element.dataset.metric, element.innerText])),
                classes: [...document.querySelectorAll("tr[data-class]")].map(row => [row.dataset.class,
                    ...["precision", "recall", "f1", "support"].map(name => row.querySelector("." + name).innerText)]),
                pairs: [...document.querySelectorAll("tr.pair")].map(row => [...row.cells].map(cell => cell.innerText)),
                mistakes: [...document.querySelectorAll(".mistake")].map(card => [Number(card.dataset.index),
                    card.querySelector(".true").innerText, card.querySelector(".predicted").innerText]),
                testRows: document.querySelectorAll("#training tr.test-row").length,
            })""")}
        finally:
            browser.close()


def shown(text: str, value: float, decimals: int, scale: float = 1.0) -> bool:
    """Whether a number on the page is `value` rounded for display."""
    return math.isclose(float(text.rstrip("%").replace(",", "")), round(scale * value, decimals), abs_tol=1e-9)


def test_report_opens_offline_with_every_section_filled_and_matches_evaluate_json(runs, mnist, capsys, tmp_path):
    run_dir = runs[0]
    code, out, err = run_cli(capsys, "report", str(run_dir), "--out", str(tmp_path))
    assert code == 0, err
    assert f"Report: {tmp_path / 'report.html'}" in out
    code, out, err = run_cli(capsys, "evaluate", str(run_dir), "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key, value in evaluated.items():
        assert written[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value), key

    page = read_page(tmp_path / "report.html")
    assert all(url.startswith(("file:", "data:")) for url in page["requests"]), page["requests"]
    assert set(SECTIONS) <= page["sections"].keys()
    for name in SECTIONS:
        section = page["sections"][name]
        assert section["images"] or section["items"], f"section {name} is empty"
        assert all(complete and width > 0 for complete, width in section["images"]), f"an image of {name} is broken"
    assert len(page["sections"]["feature-maps"]["images"]) == 3
    assert "Conv2d" in page["sections"]["feature-maps"]["text"] and "MaxPool2d" in page["sections"]["feature-maps"]["text"]

    metrics = page["metrics"]
    assert shown(metrics["accuracy"], evaluated["accuracy"], 2, 100)
    assert int(metrics["correct"]) == evaluated["correct"] and int(metrics["total"]) == 10_000
    assert shown(metrics["loss"], evaluated["loss"], 4)
    assert shown(metrics["macro_f1"], evaluated["macro_f1"], 4)
    assert shown(metrics["ece"], evaluated["calibration"]["ece"], 4)
    assert int(metrics["parameters"].replace(",", "")) == count_parameters(build_model("fast"))

    assert [row[0] for row in page["classes"]] == evaluated["classes"] == list("0123456789")
    for name, precision, recall, f1, support in page["classes"]:
        expected = evaluated["class_metrics"][name]
        assert shown(precision, expected["precision"], 4) and shown(recall, expected["recall"], 4)
        assert shown(f1, expected["f1"], 4) and int(support) == expected["support"]
        assert shown(recall, evaluated["per_class"][name], 4), "recall is the per-class accuracy"

    confusion = evaluated["confusion"]
    counts = [int(count) for _, _, count in page["pairs"]]
    assert counts == sorted(counts, reverse=True) and len(counts) == 10
    assert counts[0] == max(confusion[t][p] for t in range(10) for p in range(10) if t != p)
    for true, predicted, count in page["pairs"]:
        assert true != predicted and int(count) == confusion[int(true)][int(predicted)]

    assert len(page["mistakes"]) == 16
    assert page["mistakes"] == [[m["index"], m["true"], m["predicted"]] for m in evaluated["worst_mistakes"]]
    for index, true, predicted in page["mistakes"]:
        assert int(true) == mnist.test_labels[index] and predicted != true

    assert page["testRows"] == 3, "before training, after epoch 1, and after the resumed epoch 2"
    train_seen = [row[0] for row in written["history"]["train"]]
    assert max(train_seen) >= 3000, "the curves continue past the resume"
    assert "match the files the run was trained on" in page["sections"]["data"]["text"]
    assert page["sections"]["data"]["rows"] == 4


def test_compare_prints_a_row_per_run_and_draws_one_figure(runs, capsys, tmp_path):
    figure = tmp_path / "compare.png"
    code, out, err = run_cli(capsys, "compare", *map(str, runs), "--out", str(figure))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "model", "dataset"]
    rows = {line.split()[0]: line.split() for line in lines[1:3]}
    for run in runs:
        final_accuracy = Checkpoint.load(run).history.final_test.accuracy
        assert rows[str(run)][7] == f"{100 * final_accuracy:.2f}%"
    assert rows[str(runs[0])][3] == "2" and rows[str(runs[1])][3] == "1"
    with Image.open(figure) as image:
        assert image.format == "PNG" and image.width > 600


def test_compare_and_report_errors_are_one_line(capsys, tmp_path):
    code, out, err = run_cli(capsys, "compare", str(tmp_path))
    assert code == 1 and err.startswith("digitrec: error: compare needs at least two run folders")
    code, out, err = run_cli(capsys, "report", str(tmp_path / "nothing"))
    assert code == 1 and err.count("\n") == 1 and "no checkpoint at" in err and "Traceback" not in err


# --- Fashion-MNIST, with its class names all the way through ---------------------------------------

@pytest.fixture(scope="module")
def fashion():
    try:
        return load_dataset("fashion-mnist", allow_download=False)
    except DigitrecError as error:
        require(False, f"Fashion-MNIST is not installed here: apt-get install dataset-fashion-mnist ({error})")


@pytest.fixture(scope="module")
def fashion_run(fashion, tmp_path_factory) -> tuple[Path, str]:
    """A `fast` model trained on 3,000 Fashion-MNIST images from the command line, and what it printed."""
    run_dir = tmp_path_factory.mktemp("fashion") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "--model", "fast", "--dataset", "fashion-mnist", "--train-subset", "3000",
                     "--out", str(run_dir)])
    assert code == 0
    return run_dir, printed.getvalue()


def test_fashion_mnist_trains_evaluates_and_reports_with_its_class_names(fashion, fashion_run, capsys):
    names = DATASETS["fashion-mnist"].classes
    assert fashion.classes == names and fashion.mean == pytest.approx(0.2860, abs=1e-4)
    assert fashion.std == pytest.approx(0.3530, abs=1e-4)
    run_dir, printed = fashion_run
    assert "classes: T-shirt/top, Trouser, Pullover" in printed and "Ankle boot" in printed
    assert (run_dir / "predictions.png").is_file()

    loaded = load_model(run_dir)
    assert loaded.classes == names and (loaded.mean, loaded.std) == (fashion.mean, fashion.std)
    code, out, err = run_cli(capsys, "evaluate", str(run_dir))
    assert code == 0 and "on fashion-mnist test" in out and "Ankle boot: " in out and "T-shirt/top: " in out
    accuracy = float(re.search(r"Accuracy: \d+/\d+ \(([\d.]+)%\)", out).group(1)) / 100
    assert accuracy > 0.6, "a model that learned something about clothes"

    written = write_report(run_dir, fashion).metrics  # the CLI path is tested on MNIST; this saves a reload
    assert written == json.loads((run_dir / "metrics.json").read_text())
    assert written["classes"] == list(names) and list(written["class_metrics"]) == list(names)
    assert written["accuracy"] == pytest.approx(accuracy, abs=5e-5)
    assert {pair["true"] for pair in written["confused_pairs"]} <= set(names)
    html = (run_dir / "report.html").read_text()
    assert all(f'data-class="{name}"' in html for name in names)
    assert 'alt="confusion matrix heat map"' in html


def test_predict_reads_fashion_mnist_images_with_their_class_names(fashion, fashion_run):
    """Its own test images read as the model reads them from the IDX file, named by class."""
    from digitrec.models import classify
    from digitrec.predict import read_image

    loaded = load_model(fashion_run[0])
    images = fashion.test_images[:20]
    expected = [fashion.classes[i] for i in classify(loaded.model, images, loaded.mean, loaded.std).argmax(1)]
    answers = []
    for image in images:
        png = io.BytesIO()
        Image.fromarray(image.numpy()).save(png, "PNG")
        answers.append(read_image(png.getvalue(), loaded).to_json())
    assert [answer["label"] for answer in answers] == expected
    assert all(answer["items"][0]["label"] == answer["label"] and len(answer["items"]) == 1 for answer in answers)


def test_predict_reads_a_product_photo_the_way_fashion_mnist_was_made(fashion, fashion_run, tmp_path, capsys):
    """A dark thing on a big white page, off-centre, is cropped, scaled and negated to the data set's form."""
    from digitrec.models import classify
    from digitrec.preprocess import preprocess_object

    loaded = load_model(fashion_run[0])
    originals, seen = fashion.test_images[:20], []
    for image in originals.numpy():
        photo = Image.new("L", (400, 300), 255)
        photo.paste(Image.fromarray(255 - image).resize((224, 224), Image.Resampling.BICUBIC), (150, 40))
        segment, = preprocess_object(photo)
        x0, y0, x1, y1 = segment.box
        assert 150 <= x0 < x1 <= 150 + 224 and 40 <= y0 < y1 <= 40 + 224  # found where it was put
        assert np.corrcoef(segment.image.ravel(), image.ravel())[0, 1] > 0.75  # and made as the data set was
        seen.append(torch.from_numpy(segment.image))
    agree = (classify(loaded.model, torch.stack(seen), loaded.mean, loaded.std).argmax(1)
             == classify(loaded.model, originals, loaded.mean, loaded.std).argmax(1)).sum()
    assert agree >= 17, f"{agree} of 20 photos read as their data-set images"
    path = tmp_path / "photo.jpg"
    photo.convert("RGB").save(path, quality=90)
    Image.new("L", (60, 40), 200).save(tmp_path / "blank.png")  # nothing but background: one clear line
    assert main(["predict", "--model", str(fashion_run[0]), str(tmp_path / "blank.png")]) == 1
    assert "nothing to read in" in capsys.readouterr().err
    assert main(["predict", "--model", str(fashion_run[0]), str(path)]) == 0
    last = fashion.classes[int(classify(loaded.model, torch.stack(seen[-1:]), loaded.mean, loaded.std).argmax())]
    assert capsys.readouterr().out.startswith(f"{path}: {last}  (confidence")


# --- Ensembles and test-time augmentation ----------------------------------------------------------

def shifted(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """uint8 images moved dx pixels right and dy down, the background (0) coming in at the edges."""
    moved = torch.zeros_like(images)
    height, width = images.shape[-2:]
    moved[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return moved


def test_an_ensemble_with_tta_averages_its_members_over_the_shifted_images(runs, mnist, capsys):
    from digitrec.checkpoint import load_ensemble
    from digitrec.models import TTA_VIEWS, classify

    members = [load_model(run) for run in runs]
    images, labels = mnist.test_images, mnist.test_labels
    expected = torch.stack([classify(member.model, shifted(images, dx, dy), member.mean, member.std).exp()
                            for member in members for dx, dy, _ in TTA_VIEWS]).mean(0)
    ensemble = load_ensemble([str(run) for run in runs], tta=True)
    got = classify(ensemble.model, images, ensemble.mean, ensemble.std).exp()
    assert torch.allclose(got, expected, atol=1e-5)
    assert main(["evaluate", *map(str, runs), "--tta", "--json", "--data", MNIST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["accuracy"] == (expected.argmax(1) == labels).double().mean().item()
    assert summary["model"] == "fast x2 with TTA"


def test_tta_also_reads_pictures_of_things_mirrored_when_trained_on_them(fashion, fashion_run, tmp_path):
    from digitrec.checkpoint import load_ensemble
    from digitrec.models import TTA_VIEWS, classify

    member = load_model(fashion_run[0])
    images = fashion.test_images[:500]
    # The same weights, as if trained with --augment flip: only such a model is shown mirrored pictures.
    checkpoint = Checkpoint.load(fashion_run[0])
    assert checkpoint.config["augment"] == "none"
    checkpoint.config["augment"] = "flip"
    checkpoint.save(tmp_path / "checkpoint.pt")
    for run, pictures in ((fashion_run[0], (images,)), (tmp_path, (images, images.flip(-1)))):
        views = [shifted(picture, dx, dy) for picture in pictures for dx, dy, _ in TTA_VIEWS]
        expected = torch.stack([classify(member.model, view, member.mean, member.std).exp() for view in views]).mean(0)
        ensemble = load_ensemble([run], tta=True)
        got = classify(ensemble.model, images, ensemble.mean, ensemble.std).exp()
        assert torch.allclose(got, expected, atol=1e-5), run


def test_an_ensemble_of_models_of_different_data_sets_is_refused(runs, fashion_run, capsys):
    assert main(["evaluate", str(runs[0]), str(fashion_run[0]), "--data", MNIST]) == 1
    assert "an ensemble needs models of one data set" in capsys.readouterr().err
