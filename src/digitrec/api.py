"""The Python API: a few typed functions for people who embed digitrec in a notebook, script or service.

Each is a thin shell over the stage that does the work, like the CLI. They are imported lazily, so
`import digitrec` costs nothing, and reading pictures never loads PyTorch or the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from PIL import Image

    from digitrec.classifier import Classifier
    from digitrec.data import Dataset
    from digitrec.evaluation import Evaluation
    from digitrec.predict import Reading
    from digitrec.run import Run

def load_data(name: str = "mnist", folder: str | Path | None = None) -> Dataset:
    """A data set as whole tensors (`train_images` uint8 (N, 28, 28), `train_labels`, `test_images`, ...),
    from `folder`, `DIGITREC_DATA`, the cache, or a download."""
    from digitrec.data import load_dataset

    return load_dataset(name, folder)


def train(model: str = "tutorial", out: str | Path | None = None, *, data: Dataset | None = None,
          force: bool = False, progress: bool = True, log: Callable[[str], None] | None = None,
          **settings) -> Run:
    """Train a preset (`tutorial`, `mlp`, `fast`, `best`) into the run folder `out` (default runs/MODEL,
    numbered if taken; one that holds a run is refused unless `force`). `settings` are the `digitrec
    train` flags as keywords (epochs=8, lr=0.05, train_subset=6000, ...). Returns the run: `.folder`,
    `.accuracy`, `.checkpoint` (with `.history`)."""
    from digitrec.run import Run, default_run_dir
    from digitrec.training import make_config, train as train_run

    config = make_config(model, **settings)
    run = Run(out if out is not None else default_run_dir(model))
    run.refuse_to_overwrite(force)
    train_run(config, run, data=data, log=log or _quiet, progress=progress)
    return run


def resume(run: str | Path | Run, epochs: int | None = None, *, data: Dataset | None = None,
           progress: bool = True, log: Callable[[str], None] | None = None) -> Run:
    """Continue a run exactly where it stopped, optionally to `epochs` epochs in all."""
    from digitrec.run import Run
    from digitrec.training import resume as resume_run

    opened = Run.open(run)
    resume_run(opened, epochs=epochs, data=data, log=log or _quiet, progress=progress)
    return opened


def plot(run: str | Path | Run, data: Dataset | None = None) -> list[Path]:
    """Draw the lab's three figures of a run into its folder: samples.png, loss.png, predictions.png
    (on the data set the run was trained on, unless `data` is given)."""
    from digitrec.plots import draw_run_plots
    from digitrec.run import Run

    opened = Run.open(run)
    return draw_run_plots(opened, data or opened.dataset())


def open_model(reference: str | Path | None = None, backend: str | None = None) -> Classifier:
    """A model to read with: a preset's shipped weights (default: `best`, on its checked ONNX export),
    a run folder, a checkpoint.pt, a .safetensors or an .onnx file, on `backend` ("onnx" or "torch";
    default: onnx for .onnx files and the shipped `best`, else torch)."""
    from digitrec.inference import open_reader

    return open_reader(reference, backend, log=_quiet)


def evaluate(model: str | Path | Classifier | None = None, data: Dataset | None = None) -> Evaluation:
    """Score a model (an opened one, or a reference for `open_model`; default the shipped `best`) on the
    test split of the data set it was trained on, unless `data` is given: `.accuracy`, `.loss`,
    `.per_class`, `.confusion` and more (`.summary()`: all of it as JSON)."""
    from digitrec.evaluation import evaluate as evaluate_classifier

    classifier = _opened(model)
    return evaluate_classifier(classifier, data or load_data(classifier.metadata.get("dataset") or "mnist"))


def read(picture: str | Path | bytes | Image.Image, model: str | Path | Classifier | None = None, *,
         single: bool = False) -> Reading:
    """The digits in a picture (a path, its bytes or a PIL image), read left to right: `.digits` (a str),
    `.confidence`, and `.items` with each digit's probabilities and box. `model`: an opened model or a
    reference for `open_model` (default: the shipped `best`)."""
    from digitrec.predict import read_image

    return read_image(picture, _opened(model), single=single)


def _opened(model: str | Path | Classifier | None) -> Classifier:
    return open_model(model) if model is None or isinstance(model, (str, Path)) else model


def _quiet(line: str) -> None:
    pass
