"""ONNX export, its check against PyTorch on the test set, int8 quantization, and the cached export
that the onnx backend reads a run or weights file with.

The exported graph is the PyTorch network itself (classifier.py describes its input, output and
metadata); classifier.OnnxClassifier runs it, without PyTorch, behind the same Classifier interface
as a PyTorch model, so `evaluation.evaluate` scores both alike.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from digitrec import __version__
from digitrec.checkpoint import CHECKPOINT_NAME, LoadedModel, load_model
from digitrec.classifier import INPUT_NAME, OUTPUT_NAME, OnnxClassifier, load_onnx, pretrained_path
from digitrec.data import Dataset, cache_folder, load_dataset, normalize, sha256_file
from digitrec.errors import DigitrecError, write_atomic
from digitrec.evaluation import evaluate

if TYPE_CHECKING:  # onnx is imported where a graph is made, not at start-up
    import onnx

    from digitrec.classifier import Classifier

# onnx and onnxruntime are imported where they are used: importing this module for export or its
# cache should not pay for loading them before they are needed.

OPSET = 17
QUANTIZATIONS = ("static", "dynamic")

FP32_MAX_DIFFERENCE = 1e-4
INT8_MIN_AGREEMENT = 0.998
INT8_MAX_ACCURACY_DROP = 0.001  # 0.1 percentage point
CALIBRATION_IMAGES = 1000  # from the training split; more changed nothing measurable here
CALIBRATION_SEED = 0


def to_onnx(loaded: LoadedModel, metadata: dict | None = None) -> onnx.ModelProto:
    """The fp32 graph of a PyTorch model, with a dynamic batch axis and self-describing metadata."""
    import onnx

    buffer = io.BytesIO()
    example = torch.zeros(1, 1, 28, 28)
    # The TorchScript exporter: it needs no package beyond torch, runs offline in under a second and
    # gives the same plain Conv/Gemm graph as the dynamo exporter, which needs onnxscript and ~5 s.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(loaded.model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    graph = onnx.load_from_string(buffer.getvalue())
    graph.doc_string = (f"digitrec {loaded.name}: input '{INPUT_NAME}' float32 (batch, 1, 28, 28), pixels/255 "
                        f"normalised with mean {loaded.mean} and std {loaded.std}; output '{OUTPUT_NAME}' "
                        f"float32 (batch, {len(loaded.classes)}): natural-log probabilities of the classes")
    return _with_metadata(graph, {
        "model": loaded.name, "mean": repr(loaded.mean), "std": repr(loaded.std),
        "classes": json.dumps(list(loaded.classes)), "dataset": str(loaded.metadata.get("dataset") or "mnist"),
        "source": loaded.source, "precision": "fp32", "input": INPUT_NAME, "output": OUTPUT_NAME,
        "digitrec_version": __version__, "torch_version": torch.__version__, **(metadata or {})})


def _with_metadata(graph, metadata: dict):
    import onnx

    kept = {entry.key: entry.value for entry in graph.metadata_props}
    kept.update({key: str(value) for key, value in metadata.items()})
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, kept)
    return graph


def calibration_images(data: Dataset, count: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """A fixed random sample of the training split (never the test split the check scores on)."""
    generator = torch.Generator().manual_seed(CALIBRATION_SEED)
    indices = torch.randperm(len(data.train_images), generator=generator)[:count]
    return data.train_images[indices]


def quantize(graph, calibration: torch.Tensor, mean: float, std: float, method: str = "static"):
    """An int8 copy of an fp32 graph: weights int8 per channel in [-64, 64]; activations uint8 for `static`.

    Weights keep 7 bits (reduce_range) so that no CPU can saturate: x86 CPUs without VNNI multiply uint8
    activations by int8 weights with VPMADDUBSW, which adds pairs of products in int16, and 2 * 255 * 127
    overflows it while 2 * 255 * 64 = 32,640 does not (onnxruntime's quantization guide names this
    remedy). With full int8 weights, a `fast` run emulated on an AVX2-only CPU agreed with PyTorch on
    only 98.69% of the test set; with 7 bits, 99.90%, as on CPUs with VNNI (docs/export.md). uint8
    weights avoid it too but ran the shipped `best` at half the speed here.

    The last layer (the one feeding LogSoftmax) stays in float: it is tiny, and quantizing the logits
    took a 1-epoch tutorial run's top-1 agreement from 99.92% to 99.78%, under the 99.8% bar.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in QUANTIZATIONS:
        raise DigitrecError(f"unknown quantization {method!r}; choose {' or '.join(QUANTIZATIONS)}")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(normalize(calibration[start:start + 250], mean, std).numpy()
                                for start in range(0, len(calibration), 250))

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="digitrec-quantize-") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        quant_pre_process(graph, prepared)
        classifier = _classifier_node(onnx.load(prepared))
        if method == "static":
            quantize_static(prepared, quantized, Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=[classifier])
        else:
            quantize_dynamic(prepared, quantized, per_channel=True, weight_type=QuantType.QInt8,
                             reduce_range=True, nodes_to_exclude=[classifier])
        result = onnx.load(quantized)
    kept = {entry.key: entry.value for entry in graph.metadata_props}
    result.doc_string = graph.doc_string
    return _with_metadata(result, {**kept, "precision": "int8", "quantization": method})


def _classifier_node(graph) -> str:
    producers = {output: node.name for node in graph.graph.node for output in node.output}
    softmax = next(node for node in graph.graph.node if node.op_type == "LogSoftmax")
    return producers[softmax.input[0]]


def check_export(loaded: LoadedModel, exported: Classifier, data: Dataset) -> dict:
    """Score both on the whole test split and compare; the limits depend on the precision."""
    reference, candidate = evaluate(loaded, data), evaluate(exported, data)
    agreement = (reference.log_probabilities.argmax(1) == candidate.log_probabilities.argmax(1)).double().mean().item()
    difference = (reference.log_probabilities - candidate.log_probabilities).abs().max().item() if reference.total else 0.0
    drop = reference.accuracy - candidate.accuracy
    precision = exported.metadata.get("precision", "fp32")
    failures = []
    if precision == "fp32":
        limits = {"max_abs_difference": FP32_MAX_DIFFERENCE, "top1_agreement": 1.0}
        if difference > FP32_MAX_DIFFERENCE:
            failures.append(f"max |difference| {difference:.2e} > {FP32_MAX_DIFFERENCE:.0e}")
        if agreement < 1.0:
            failures.append(f"top-1 agreement {agreement:.4%} < 100%")
    else:
        limits = {"top1_agreement": INT8_MIN_AGREEMENT, "accuracy_drop": INT8_MAX_ACCURACY_DROP}
        if agreement < INT8_MIN_AGREEMENT:
            failures.append(f"top-1 agreement {agreement:.2%} < {INT8_MIN_AGREEMENT:.1%}")
        if drop > INT8_MAX_ACCURACY_DROP + 1e-9:  # accuracies are multiples of 1/N: no float noise at the limit
            failures.append(f"accuracy drop {100 * drop:.2f} > {100 * INT8_MAX_ACCURACY_DROP:.1f} point")
    return {"model": loaded.name, "source": loaded.source, "precision": precision,
            "quantization": exported.metadata.get("quantization"), "dataset": data.name, "images": reference.total,
            "max_abs_difference": float(f"{difference:.3g}"), "top1_agreement": round(agreement, 6),
            "torch_accuracy": round(reference.accuracy, 6), "onnx_accuracy": round(candidate.accuracy, 6),
            "accuracy_drop": round(drop, 6), "limits": limits,
            "passed": not failures, "failures": failures}


def report_path(path: str | Path) -> Path:
    """Where an export's check numbers live: beside it, model.onnx -> model.check.json."""
    return Path(path).with_suffix(".check.json")


def export_onnx(loaded: LoadedModel, out: str | Path, data: Dataset, int8: bool = False,
                quantization: str = "static", metadata: dict | None = None, threads: int = 0) -> dict:
    """Export, check against PyTorch on `data`'s test split, and only then write the file and its report.

    A failed check raises DigitrecError with the numbers and writes nothing.
    """
    started = time.perf_counter()
    graph = to_onnx(loaded, metadata)
    if int8:
        graph = quantize(graph, calibration_images(data), loaded.mean, loaded.std, quantization)
    content = graph.SerializeToString()
    exported = OnnxClassifier(content, threads, source=str(out))
    report = {"file": str(out), "bytes": len(content), **check_export(loaded, exported, data),
              "onnxruntime_version": _onnxruntime_version(), "seconds": round(time.perf_counter() - started, 2)}
    if not report["passed"]:
        raise DigitrecError(f"the {report['precision']} export of {loaded.source} failed its check on "
                            f"{data.name} test: {'; '.join(report['failures'])}; nothing was written"
                            + ("; export without --int8 for an exact copy" if int8 else ""))
    write_atomic(out, content)
    write_atomic(report_path(out), json.dumps(report, indent=2) + "\n")
    return report


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _weights_file(reference: str | Path) -> Path | None:
    path = Path(reference)
    if path.is_dir():
        return path / CHECKPOINT_NAME
    if path.suffix in (".pt", ".safetensors"):
        return path
    return pretrained_path(str(reference))


def cached_export_path(weights: Path, model_name: str, digest: str) -> Path:
    """A run's export lives in its run folder; shipped or loose weights' in the user cache, by content."""
    if weights.suffix == ".pt":
        return weights.with_suffix(".onnx")
    return cache_folder("onnx") / f"{model_name}-{digest[:16]}.onnx"


def open_export(reference: str | Path, data_dir: str | Path | None = None, threads: int = 0,
                log: Callable[[str], None] = print) -> OnnxClassifier:
    """A run, checkpoint, weights file or preset on onnxruntime: exported on first use, checked on the
    test split found by `data_dir` (or the usual places), and cached; later calls load the cached file
    as long as the weights it came from are unchanged. (inference.open_model opens a preset's
    shipped export itself.)"""
    loaded = load_model(reference)
    weights = _weights_file(reference)
    digest = sha256_file(weights)
    cached = cached_export_path(weights, loaded.name, digest)
    if cached.is_file():
        candidate = load_onnx(cached, threads)
        if candidate.metadata.get("source_sha256") == digest:
            return candidate
    dataset = str(loaded.metadata.get("dataset") or "mnist")
    log(f"exporting {loaded.source} to {cached} (first use of the onnx backend; checked on the {dataset} test set)")
    export_onnx(loaded, cached, load_dataset(dataset, data_dir), metadata={"source_sha256": digest}, threads=threads)
    return load_onnx(cached, threads)
