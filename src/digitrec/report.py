"""A run's evaluation report (one self-contained HTML file and metrics.json), and run comparison.

Every number in report.html is rendered from the same dictionary that is written to metrics.json,
and that dictionary starts from `Evaluation.summary()`, which `digitrec evaluate --json` prints:
the three always agree. Figures are PNGs embedded as base64, so the page opens offline.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import matplotlib
import torch
import torch.fx
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from digitrec.checkpoint import Checkpoint, History, LoadedModel, TestPoint
from digitrec.data import Dataset, normalize
from digitrec.errors import DigitrecError, write_atomic
from digitrec.evaluation import Evaluation, evaluate
from digitrec.models import build_model, count_parameters
from digitrec.plots import save_figure
from digitrec.run import Run

FEATURE_MAP_DIGITS = 3  # test images shown flowing through the network
FEATURE_MAP_CHANNELS = 8  # channels shown per stage
FEATURE_MAP_COLOURS = matplotlib.colormaps["viridis"].with_extremes(bad="white")  # bad: the gaps between tiles
FILTER_COLOURS = matplotlib.colormaps["bwr"].with_extremes(bad="#bbbbbb")
POOLING_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)
POOLING_FUNCTIONS = (F.max_pool2d, F.avg_pool2d, F.adaptive_max_pool2d, F.adaptive_avg_pool2d)


# --- The model: its size, and what it computes inside -------------------------------------------

def model_summary(model: nn.Module, image_shape: tuple[int, int] = (28, 28)) -> dict:
    """Parameters and multiply-adds per layer for one image, measured with forward hooks.

    Multiply-adds count the convolutions and linear layers, which are nearly all of the work.
    """
    layers = []

    def record(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            if isinstance(module, nn.Conv2d):
                kernel = math.prod(module.kernel_size) * module.in_channels // module.groups
                multiply_adds = output.numel() * kernel
            elif isinstance(module, nn.Linear):
                multiply_adds = output.numel() * module.in_features
            else:
                multiply_adds = 0
            layers.append({"name": name, "type": type(module).__name__, "output": list(output.shape[1:]),
                           "parameters": count_parameters(module), "multiply_adds": multiply_adds})
        return hook

    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    handles = [module.register_forward_hook(record(name)) for name, module in leaves]
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 1, *image_shape, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return {"parameters": count_parameters(model), "multiply_adds": sum(layer["multiply_adds"] for layer in layers),
            "layers": layers}


class _StageRecorder(torch.fx.Interpreter):
    """Runs a traced model and keeps the output of every convolution and pooling step.

    Tracing sees functional pooling (F.max_pool2d in the lab's network) as well as pooling modules,
    which forward hooks alone would miss.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(torch.fx.symbolic_trace(model))
        self.stages: list[tuple[str, torch.Tensor]] = []

    def run_node(self, node: torch.fx.Node):
        result = super().run_node(node)
        if node.op == "call_module":
            module = self.module.get_submodule(node.target)
            if isinstance(module, (nn.Conv2d, *POOLING_MODULES)):
                self.stages.append((f"{node.target} ({type(module).__name__})", result))
        elif node.op == "call_function" and node.target in POOLING_FUNCTIONS:
            self.stages.append((node.name, result))
        return result


@torch.inference_mode()
def feature_maps(loaded: LoadedModel, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(stage name, activations (N, C, H, W)) after each convolution and pooling stage, in order."""
    recorder = _StageRecorder(loaded.model.eval())
    recorder.run(normalize(images, loaded.mean, loaded.std))
    return [(name, output.cpu()) for name, output in recorder.stages]


def first_layer_filters(model: nn.Module, image_shape: tuple[int, int]) -> tuple[str, torch.Tensor] | None:
    """The first layer's learned weights as small images: conv kernels, or a linear layer's rows as pictures."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return f"{name}: {module.out_channels} filters of {'×'.join(map(str, module.kernel_size))}", \
                module.weight.detach()[:, 0].cpu()
        if isinstance(module, nn.Linear) and module.in_features == math.prod(image_shape):
            return f"{name}: the weights of its first 32 of {module.out_features} units, as images", \
                module.weight.detach()[:32].reshape(-1, *image_shape).cpu()
    return None


# --- Figures -------------------------------------------------------------------------------------

def _data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _image_uri(image: torch.Tensor) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image.numpy()).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def confusion_figure(confusion: list[list[int]], classes: tuple[str, ...]) -> Figure:
    counts = torch.tensor(confusion, dtype=torch.float64)
    # Colour by the share of each true class, so rare and common classes read alike.
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = 1.6 + 0.55 * len(classes)
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    image = axis.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    for true in range(len(classes)):
        for predicted in range(len(classes)):
            count = int(counts[true, predicted])
            if count:
                axis.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                          color="white" if shares[true, predicted] > 0.5 else "black")
    axis.set_xticks(range(len(classes)), classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    return figure


def reliability_figure(calibration: dict) -> Figure:
    bins = calibration["bins"]
    width = bins[0]["upper"] - bins[0]["lower"]
    centers = [(b["lower"] + b["upper"]) / 2 for b in bins]
    figure = Figure(figsize=(5, 6))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centers, [b["accuracy"] for b in bins], width=width, edgecolor="black", label="accuracy")
    top.bar(centers, [b["confidence"] - b["accuracy"] if b["count"] else 0 for b in bins], width=width,
            bottom=[b["accuracy"] for b in bins], color="red", alpha=0.3, edgecolor="red", label="gap to confidence")
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_title(f"Reliability diagram (ECE {calibration['ece']:.4f})")
    top.legend(loc="upper left")
    bottom.bar(centers, [b["count"] for b in bins], width=width, color="gray", edgecolor="black")
    bottom.set_yscale("symlog")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def _epoch_boundaries(history: History) -> list[int]:
    return [point.examples for point in history.test if point.epoch > 0 and float(point.epoch).is_integer()]


def training_figure(history: History) -> Figure:
    """Loss, test accuracy and learning rate against examples seen, over the whole run and its resumes."""
    figure = Figure(figsize=(14, 3.8))
    loss_axis, accuracy_axis, rate_axis = figure.subplots(1, 3)
    train, test = history.train, history.test
    if train:
        seen = [point.examples for point in train]
        loss_axis.plot(seen, [point.loss for point in train], linewidth=0.8, label="train loss")
        rate_axis.plot(seen, [point.learning_rate for point in train], color="green")
    if test:
        seen = [point.examples for point in test]
        loss_axis.plot(seen, [point.loss for point in test], "o-", color="red", label="test loss")
        accuracy_axis.plot(seen, [100 * point.accuracy for point in test], "o-", color="red")
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "test accuracy (%)"), (rate_axis, "learning rate")):
        for boundary in _epoch_boundaries(history):
            axis.axvline(boundary, color="gray", linewidth=0.5, linestyle=":")
        axis.set_title(title)
        axis.set_xlabel("training examples seen")
    loss_axis.legend()
    figure.tight_layout()
    return figure


def _tile(images: torch.Tensor, columns: int) -> torch.Tensor:
    """Small images (N, H, W) in a grid `columns` wide, with a one-pixel NaN gap that draws as blank."""
    count, height, width = images.shape
    rows = math.ceil(count / columns)
    cells = torch.full((rows * columns, height + 1, width + 1), float("nan"))
    cells[:count, :height, :width] = images
    grid = cells.reshape(rows, columns, height + 1, width + 1).permute(0, 2, 1, 3)
    return grid.reshape(rows * (height + 1), columns * (width + 1))[:-1, :-1]


def filters_figure(title: str, filters: torch.Tensor) -> Figure:
    columns = min(8, len(filters))
    rows = math.ceil(len(filters) / columns)
    figure = Figure(figsize=(columns * 0.8, rows * 0.8 + 0.4))
    axis = figure.subplots()
    limit = filters.abs().max().item() or 1.0  # one scale for all, centred on zero: white is 0
    axis.imshow(_tile(filters, columns).numpy(), cmap=FILTER_COLOURS, vmin=-limit, vmax=limit, interpolation="none")
    axis.axis("off")
    axis.set_title(title + " (red positive, blue negative)", fontsize=9)
    return figure


def feature_map_figure(image: torch.Tensor, label: str, stages: list[tuple[str, torch.Tensor]]) -> Figure:
    shown = [(name, maps) for name, maps in stages if maps.dim() == 3 and min(maps.shape[1:]) > 1]
    figure = Figure(figsize=(8, 1.15 * (len(shown) + 1)))
    axes = figure.subplots(len(shown) + 1, 1, squeeze=False)
    axes = axes[:, 0]
    axes[0].imshow(image.numpy(), cmap="gray", interpolation="none")
    axes[0].set_title(f"input: {label}", fontsize=9, loc="left")
    for axis, (name, maps) in zip(axes[1:], shown):
        shown_maps = maps[:FEATURE_MAP_CHANNELS]
        low, high = shown_maps.amin((1, 2), keepdim=True), shown_maps.amax((1, 2), keepdim=True)
        scaled = (shown_maps - low) / (high - low).clamp(min=1e-8)  # each channel on its own range
        axis.imshow(_tile(scaled, len(scaled)).numpy(), cmap=FEATURE_MAP_COLOURS, interpolation="none")
        channels = min(FEATURE_MAP_CHANNELS, len(maps))
        axis.set_title(f"{name}: {channels} of {len(maps)} channels, {maps.shape[1]}×{maps.shape[2]}",
                       fontsize=9, loc="left")
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    return figure


# --- The report -----------------------------------------------------------------------------------

@dataclass
class Report:
    html: Path
    metrics_path: Path
    metrics: dict


def _timings(checkpoint: Checkpoint, evaluation: Evaluation, evaluation_seconds: float) -> dict:
    final = checkpoint.history.final_test
    examples = final.examples if final else 0
    return {"training_seconds": round(checkpoint.seconds, 3), "examples_seen": examples,
            "training_examples_per_second": round(examples / checkpoint.seconds, 1) if checkpoint.seconds else None,
            "evaluation_seconds": round(evaluation_seconds, 3),
            "evaluation_images_per_second": round(evaluation.total / evaluation_seconds, 1) if evaluation_seconds else None}


def write_report(run_dir: str | Path | Run, data: Dataset, out_dir: str | Path | None = None) -> Report:
    """Evaluate the run on `data`'s test split and write report.html and metrics.json into `out_dir`."""
    started = time.perf_counter()
    run = Run.open(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run.folder
    checkpoint = run.checkpoint
    loaded = run.inference_model()
    image_shape = tuple(data.test_images.shape[1:])
    evaluation_started = time.perf_counter()
    evaluation = evaluate(loaded, data)
    evaluation_seconds = time.perf_counter() - evaluation_started
    stored_checksums = checkpoint.data.get("checksums", {})
    metrics = {
        "run": run.source, "model": loaded.name, "source": loaded.source, "backend": "torch", "dataset": data.name,
        **evaluation.summary(),
        "epochs": checkpoint.epoch,
        "model_summary": model_summary(loaded.model, image_shape),
        "config": checkpoint.config,
        "data": {"name": data.name, "folder": str(data.folder), "mean": loaded.mean, "std": loaded.std,
                 "checksums": data.checksums, "trained_on": stored_checksums,
                 "checksums_match": not stored_checksums or stored_checksums == data.checksums},
        "timings": _timings(checkpoint, evaluation, evaluation_seconds),
        "history": checkpoint.history.to_stored(),
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
    }

    filters = first_layer_filters(loaded.model, image_shape)
    samples = data.test_images[:FEATURE_MAP_DIGITS]
    stages = feature_maps(loaded, samples)
    figures = {
        "confusion": _data_uri(confusion_figure(evaluation.confusion, data.classes)),
        "reliability": _data_uri(reliability_figure(metrics["calibration"])),
        "training": _data_uri(training_figure(checkpoint.history)),
        "filters": _data_uri(filters_figure(*filters)) if filters else None,
        "feature_maps": [_data_uri(feature_map_figure(image, data.classes[int(label)],
                                                      [(name, output[i]) for name, output in stages]))
                         for i, (image, label) in enumerate(zip(samples, data.test_labels))] if stages else [],
    }
    mistake_images = {m["index"]: _image_uri(data.test_images[m["index"]]) for m in metrics["worst_mistakes"]}
    metrics["timings"]["report_seconds"] = round(time.perf_counter() - started, 3)

    html = _TEMPLATE.render(m=metrics, tests=checkpoint.history.test, figures=figures, mistake_images=mistake_images,
                            filters_title=filters[0] if filters else None,
                            feature_stages=[name for name, _ in stages])
    html_path = write_atomic(out_dir / "report.html", html)
    metrics_path = write_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return Report(html_path, metrics_path, metrics)


# --- Comparing runs -------------------------------------------------------------------------------

COMPARE_COLUMNS = {  # column -> how to show its values
    "run": "{}", "model": "{}", "dataset": "{}", "epochs": "{:,}", "parameters": "{:,}", "train s": "{:.1f}",
    "test loss": "{:.4f}", "accuracy": "{:.2%}", "best": "{:.2%}"}


NO_TEST = TestPoint(0, 0, float("nan"), float("nan"))  # a run stopped before its first test pass


def compare_runs(run_dirs: list[str | Path], figure_path: str | Path) -> list[dict]:
    """One row per run from its checkpoint, and one figure with every run's curves overlaid."""
    if len(run_dirs) < 2:
        raise DigitrecError("compare needs at least two run folders, e.g. digitrec compare runs/fast runs/best")
    runs = [(str(run_dir), Run.open(run_dir).checkpoint) for run_dir in run_dirs]
    rows = [comparison_row(name, checkpoint) for name, checkpoint in runs]
    save_figure(comparison_figure(runs), Path(figure_path))
    return rows


def comparison_row(name: str, checkpoint: Checkpoint) -> dict:
    tests = checkpoint.history.test or [NO_TEST]
    return {"run": name, "model": checkpoint.config["model"], "dataset": checkpoint.data.get("name", "?"),
            "epochs": checkpoint.epoch, "parameters": count_parameters(build_model(checkpoint.config["model"])),
            "train s": checkpoint.seconds, "test loss": tests[-1].loss, "accuracy": tests[-1].accuracy,
            "best": max(point.accuracy for point in tests)}


def comparison_figure(runs: list[tuple[str, Checkpoint]]) -> Figure:
    figure = Figure(figsize=(15, 4))
    train_axis, test_axis, accuracy_axis = figure.subplots(1, 3)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"] * len(runs)
    for (name, checkpoint), color in zip(runs, colors):
        train, test = checkpoint.history.train, checkpoint.history.test
        train_axis.plot([p.examples for p in train], [p.loss for p in train], color=color, linewidth=0.8, label=name)
        test_axis.plot([p.examples for p in test], [p.loss for p in test], "o-", color=color, label=name)
        accuracy_axis.plot([p.examples for p in test], [100 * p.accuracy for p in test], "o-", color=color, label=name)
    for axis, title in ((train_axis, "train loss"), (test_axis, "test loss"), (accuracy_axis, "test accuracy (%)")):
        axis.set_title(title)
        axis.set_xlabel("training examples seen")
        axis.legend(fontsize=8)
    test_axis.set_yscale("log")
    figure.tight_layout()
    return figure


def format_table(rows: list[dict], columns: dict[str, str] = COMPARE_COLUMNS) -> str:
    """A plain-text table for the terminal: text left-aligned, numbers right-aligned."""
    cells = [[spec.format(row[column]) for column, spec in columns.items()] for row in rows]
    widths = [max([len(column)] + [len(values[i]) for values in cells]) for i, column in enumerate(columns)]
    numeric = [spec != "{}" for spec in columns.values()]

    def line(values) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    return "\n".join([line(columns), *map(line, cells)])


_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""\
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>digitrec report: {{ m.model }} on {{ m.dataset }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
nav a { margin-right: 0.8em; } .muted { color: #666; }
.warning { background: #fee; border: 1px solid #c00; padding: 0.6em; }
.cards { display: flex; flex-wrap: wrap; gap: 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1em; min-width: 9em; }
.card .value { font-size: 1.6em; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border-bottom: 1px solid #eee; padding: 0.25em 0.7em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.8em; }
.mistake { border: 1px solid #ddd; border-radius: 6px; padding: 0.4em; width: 10.5em; font-size: 0.85em; }
.mistake img { width: 84px; height: 84px; image-rendering: pixelated; display: block; margin: 0 auto 0.3em; }
img.figure { max-width: 100%; }
code { word-break: break-all; }
</style>
</head>
<body>
<h1>{{ m.model }} on {{ m.dataset }}</h1>
<p class="muted">Run <code>{{ m.run }}</code> after {{ m.epochs }} epoch{{ "" if m.epochs == 1 else "s" }},
evaluated on {{ "{:,}".format(m.total) }} test images; written {{ m.written }} by <code>digitrec report</code>.</p>
{% if not m.data.checksums_match %}
<p class="warning">These test files differ from the ones the run was trained with (see <a href="#data">Data</a>).</p>
{% endif %}
<nav><a href="#summary">Summary</a><a href="#per-class">Per class</a><a href="#confusion">Confusion</a>
<a href="#confused-pairs">Confused pairs</a><a href="#mistakes">Worst mistakes</a><a href="#calibration">Calibration</a>
<a href="#training">Training</a><a href="#model">Model</a><a href="#filters">Filters</a>
<a href="#feature-maps">Feature maps</a><a href="#config">Config</a><a href="#data">Data</a><a href="#timings">Timings</a></nav>

<section id="summary"><h2>Summary</h2>
<div class="cards">
<div class="card"><div class="value" data-metric="accuracy">{{ "%.2f%%" % (100 * m.accuracy) }}</div>
  <div>accuracy (<span data-metric="correct">{{ m.correct }}</span>/<span data-metric="total">{{ m.total }}</span>)</div></div>
<div class="card"><div class="value" data-metric="loss">{{ "%.4f" % m.loss }}</div><div>average loss (NLL)</div></div>
<div class="card"><div class="value" data-metric="macro_f1">{{ "%.4f" % m.macro_f1 }}</div><div>macro F1</div></div>
<div class="card"><div class="value" data-metric="ece">{{ "%.4f" % m.calibration.ece }}</div><div>expected calibration error</div></div>
<div class="card"><div class="value" data-metric="parameters">{{ "{:,}".format(m.model_summary.parameters) }}</div><div>parameters</div></div>
<div class="card"><div class="value" data-metric="multiply_adds">{{ "{:,}".format(m.model_summary.multiply_adds) }}</div><div>multiply-adds per image</div></div>
</div></section>

<section id="per-class"><h2>Per class</h2>
<table><thead><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>test images</th></tr></thead><tbody>
{% for name, c in m.class_metrics.items() %}
<tr data-class="{{ name }}"><td>{{ name }}</td><td class="number precision">{{ "%.4f" % c.precision }}</td>
<td class="number recall">{{ "%.4f" % c.recall }}</td><td class="number f1">{{ "%.4f" % c.f1 }}</td>
<td class="number support">{{ c.support }}</td></tr>
{% endfor %}
</tbody></table></section>

<section id="confusion"><h2>Confusion matrix</h2>
<p>Rows are the true classes, columns the predictions; each cell holds a count, coloured by its share of the row.</p>
<img class="figure" alt="confusion matrix heat map" src="{{ figures.confusion }}"></section>

<section id="confused-pairs"><h2>Most confused pairs</h2>
<table><thead><tr><th>true class</th><th>predicted as</th><th>images</th></tr></thead><tbody>
{% for pair in m.confused_pairs %}
<tr class="pair"><td class="true">{{ pair.true }}</td><td class="predicted">{{ pair.predicted }}</td><td class="number count">{{ pair.count }}</td></tr>
{% else %}
<tr><td colspan="3">no mistakes at all</td></tr>
{% endfor %}
</tbody></table></section>

<section id="mistakes"><h2>Worst mistakes</h2>
<p>The test images the model got most confidently wrong, with its three most likely classes.</p>
<div class="gallery">
{% for mistake in m.worst_mistakes %}
<div class="mistake" data-index="{{ mistake.index }}"><img alt="test image {{ mistake.index }}" src="{{ mistake_images[mistake.index] }}">
<div>test image #{{ mistake.index }}</div>
<div>true: <b class="true">{{ mistake.true }}</b></div><div>predicted: <b class="predicted">{{ mistake.predicted }}</b></div>
<ol class="top3">{% for name, probability in mistake.top3 %}<li>{{ name }}: {{ "%.1f%%" % (100 * probability) }}</li>{% endfor %}</ol>
</div>
{% else %}
<p>The model got every test image right.</p>
{% endfor %}
</div></section>

<section id="calibration"><h2>Calibration</h2>
<p>Expected calibration error: <b>{{ "%.4f" % m.calibration.ece }}</b> over {{ m.calibration.bins | length }} equal-width
confidence bins: how far, on average, the model's top probability is from how often it is right.
Bars below the diagonal mean overconfidence, above it underconfidence (label smoothing makes models underconfident).</p>
<img class="figure" alt="reliability diagram" src="{{ figures.reliability }}"></section>

<section id="training"><h2>Training curves</h2>
<p>The whole run, resumes included; dotted lines mark epoch ends.</p>
<img class="figure" alt="training curves" src="{{ figures.training }}">
<table><thead><tr><th>epoch</th><th>examples seen</th><th>test loss</th><th>test accuracy</th></tr></thead><tbody>
{% for point in tests %}
<tr class="test-row"><td class="number">{{ "%g" % point.epoch }}</td><td class="number">{{ "{:,}".format(point.examples) }}</td>
<td class="number">{{ "%.4f" % point.loss }}</td><td class="number">{{ "%.2f%%" % (100 * point.accuracy) }}</td></tr>
{% endfor %}
</tbody></table></section>

<section id="model"><h2>Model</h2>
<p><b>{{ m.model }}</b>: {{ "{:,}".format(m.model_summary.parameters) }} parameters,
{{ "{:,}".format(m.model_summary.multiply_adds) }} multiply-adds per image (convolutions and linear layers).</p>
<table><thead><tr><th>layer</th><th>type</th><th>output</th><th>parameters</th><th>multiply-adds</th></tr></thead><tbody>
{% for layer in m.model_summary.layers %}
<tr class="layer"><td>{{ layer.name }}</td><td>{{ layer.type }}</td><td>{{ layer.output | join("×") }}</td>
<td class="number">{{ "{:,}".format(layer.parameters) }}</td><td class="number">{{ "{:,}".format(layer.multiply_adds) }}</td></tr>
{% endfor %}
</tbody></table></section>

<section id="filters"><h2>Learned first-layer filters</h2>
{% if figures.filters %}
<p>{{ filters_title }}. Each is a small template the layer slides over the image: edges and strokes at different angles.</p>
<img class="figure" alt="first-layer filters" src="{{ figures.filters }}">
{% else %}<p>This model has no convolution or image-sized first layer to show.</p>{% endif %}
</section>

<section id="feature-maps"><h2>Feature maps</h2>
{% if figures.feature_maps %}
<p>What the network computes for the first {{ figures.feature_maps | length }} test images: the output of each
convolution and pooling stage ({{ feature_stages | join(", ") }}), each channel scaled to its own range.
Convolutions detect local patterns; pooling halves the resolution and keeps the strongest responses.</p>
{% for uri in figures.feature_maps %}<img class="figure" alt="feature maps of test image {{ loop.index0 }}" src="{{ uri }}">{% endfor %}
{% else %}<p>This model has no convolution or pooling stages: it sees the image as one flat vector.</p>{% endif %}
</section>

<section id="config"><h2>Config</h2>
<table><tbody>{% for key, value in m.config.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</tbody></table>
</section>

<section id="data"><h2>Data</h2>
<p>{{ m.data.name }} from <code>{{ m.data.folder }}</code>; classes: {{ m.classes | join(", ") }};
normalisation mean {{ m.data.mean }}, std {{ m.data.std }} (from the training split).
Checksums {{ "match" if m.data.checksums_match else "DO NOT match" }} the files the run was trained on.</p>
<table><thead><tr><th>file</th><th>SHA-256</th></tr></thead><tbody>
{% for file, digest in m.data.checksums.items() %}<tr class="checksum"><td>{{ file }}</td><td><code>{{ digest }}</code></td></tr>{% endfor %}
</tbody></table></section>

<section id="timings"><h2>Timings</h2>
<table><tbody>
<tr><th>training</th><td class="number">{{ "%.1f" % m.timings.training_seconds }} s for {{ "{:,}".format(m.timings.examples_seen) }} examples
{% if m.timings.training_examples_per_second %}({{ "{:,.0f}".format(m.timings.training_examples_per_second) }} examples/s){% endif %}</td></tr>
<tr><th>evaluation</th><td class="number">{{ "%.2f" % m.timings.evaluation_seconds }} s for {{ "{:,}".format(m.total) }} test images
{% if m.timings.evaluation_images_per_second %}({{ "{:,.0f}".format(m.timings.evaluation_images_per_second) }} images/s){% endif %}</td></tr>
<tr><th>this report</th><td class="number">{{ "%.1f" % m.timings.report_seconds }} s</td></tr>
</tbody></table></section>
</body>
</html>
""")
