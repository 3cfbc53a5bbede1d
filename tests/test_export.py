"""ONNX export, its check, int8 quantization and the onnxruntime backend."""

from __future__ import annotations

import contextlib
import io
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import require, write_idx_dataset
from digitrec import export
from digitrec.checkpoint import CHECKPOINT_NAME, Checkpoint, load_model, save_weights
from digitrec.cli import main
from digitrec.data import load_dataset
from digitrec.errors import DigitrecError
from digitrec.classifier import OnnxClassifier, load_onnx
from digitrec.export import report_path
from digitrec.inference import open_model
from digitrec.models import build_model


@pytest.fixture(scope="module")
def exported_run(fast_run: Path, tmp_path_factory) -> Path:
    """A copy of the quick `fast` run whose fp32 export the onnx backend made and cached on first use."""
    run = tmp_path_factory.mktemp("exported-run")
    shutil.copy(fast_run / CHECKPOINT_NAME, run / CHECKPOINT_NAME)
    open_model(run, "onnx", log=lambda line: None)
    return run


def test_fp32_export_matches_pytorch_on_the_test_set(exported_run: Path, mnist) -> None:
    onnx_file = exported_run / "checkpoint.onnx"
    report = json.loads(report_path(onnx_file).read_text())
    assert report["passed"] and report["precision"] == "fp32" and report["images"] == len(mnist.test_labels)
    assert report["max_abs_difference"] <= 1e-4 and report["top1_agreement"] == 1.0
    # The stored numbers are the real ones: recompute them independently.
    torch_model, onnx_model = load_model(exported_run), load_onnx(onnx_file)
    expected = torch.from_numpy(torch_model.log_probabilities(mnist.test_images.numpy()))
    found = torch.from_numpy(onnx_model.log_probabilities(mnist.test_images.numpy()))
    assert (expected - found).abs().max().item() <= 1e-4
    assert torch.equal(expected.argmax(1), found.argmax(1))
    assert report["torch_accuracy"] == report["onnx_accuracy"] == pytest.approx(
        (expected.argmax(1) == mnist.test_labels).double().mean().item())


def test_onnx_file_describes_itself_and_has_a_dynamic_batch_axis(exported_run: Path, mnist) -> None:
    graph = onnx.load(exported_run / "checkpoint.onnx")
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    loaded = load_model(exported_run)
    assert metadata["model"] == "fast" and json.loads(metadata["classes"]) == list(loaded.classes)
    assert float(metadata["mean"]) == loaded.mean and float(metadata["std"]) == loaded.std
    (images,), (output,) = graph.graph.input, graph.graph.output
    assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == ["batch", 1, 28, 28]
    assert output.name == "log_probabilities"
    # Batches of odd sizes, through the same Classifier interface that evaluation and prediction use.
    onnx_model = load_onnx(exported_run / "checkpoint.onnx")
    expected = torch.from_numpy(loaded.log_probabilities(mnist.test_images[:21].numpy()))
    for batch_size in (1, 7, 21):
        found = torch.from_numpy(onnx_model.log_probabilities(mnist.test_images[:21].numpy(), batch_size))
        assert found.shape == (21, 10) and torch.allclose(found, expected, atol=1e-4)
    assert torch.allclose(found.exp().sum(1), torch.ones(21), atol=1e-4)  # log-probabilities


def test_server_reads_the_same_digits_on_both_backends(exported_run: Path, mnist) -> None:
    import httpx

    from conftest import picture_of_digits, serving
    from digitrec import server

    picture = picture_of_digits([mnist.test_images[index] for index in range(6)])
    answers = {}
    for backend in ("torch", "onnx"):
        loaded = open_model(str(exported_run), backend, threads=1)
        assert loaded.metadata.get("backend", "torch") == backend
        with serving(server.create_app(loaded)) as url:
            response = httpx.post(f"{url}/api/predict", files={"file": ("digits.png", picture, "image/png")}, timeout=30)
        assert response.status_code == 200, response.text
        answers[backend] = response.json()
    assert answers["onnx"]["digits"] == answers["torch"]["digits"]
    for torch_item, onnx_item in zip(answers["torch"]["items"], answers["onnx"]["items"]):
        assert onnx_item["probabilities"] == pytest.approx(torch_item["probabilities"], abs=1e-4)


def test_predict_reads_the_same_digits_on_both_backends(exported_run: Path, mnist, tmp_path: Path, capsys) -> None:
    from conftest import picture_of_digits

    picture = tmp_path / "digits.png"
    picture.write_bytes(picture_of_digits([mnist.test_images[index] for index in range(10, 15)]))
    answers = {}
    for backend in ("torch", "onnx"):
        assert main(["predict", str(picture), "--model", str(exported_run), "--backend", backend, "--json"]) == 0
        answers[backend] = json.loads(capsys.readouterr().out)
    assert answers["onnx"]["digits"] == answers["torch"]["digits"]
    assert answers["onnx"]["confidence"] == pytest.approx(answers["torch"]["confidence"], abs=1e-4)


@pytest.fixture(scope="module")
def int8_export(exported_run: Path, tmp_path_factory) -> tuple[Path, str]:
    """The quick run exported to int8 from the command line, and what the command printed."""
    out = tmp_path_factory.mktemp("int8") / "fast-int8.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(exported_run), "--format", "onnx", "--int8", "--out", str(out)]) == 0
    return out, printed.getvalue()


def test_int8_export_from_the_command_line(exported_run: Path, int8_export: tuple[Path, str]) -> None:
    out, printed = int8_export
    report = json.loads(report_path(out).read_text())
    assert report["precision"] == "int8" and report["quantization"] == "static" and report["passed"]
    assert report["top1_agreement"] >= 0.998 and report["accuracy_drop"] <= 0.001
    assert f"top-1 agreement {100 * report['top1_agreement']:.2f}%" in printed
    assert out.stat().st_size < 0.5 * (exported_run / "checkpoint.onnx").stat().st_size
    graph = onnx.load(out)
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node)
    assert {entry.key: entry.value for entry in graph.metadata_props}["precision"] == "int8"


def test_int8_weights_leave_no_room_to_saturate(int8_export: tuple[Path, str]) -> None:
    """x86 CPUs without VNNI add pairs of uint8 x int8 products in int16 (VPMADDUBSW): weights within
    [-64, 64] keep every pair within int16, so the int8 graph computes the same on every CPU."""
    graph = onnx.load(int8_export[0])
    initializers = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in graph.graph.initializer}
    weights = [initializers[node.input[0]] for node in graph.graph.node if node.op_type == "DequantizeLinear"
               and node.input[0] in initializers and initializers[node.input[0]].ndim >= 2]
    assert weights and all(weight.dtype == np.int8 for weight in weights)
    assert max(int(np.abs(weight.astype(np.int32)).max()) for weight in weights) <= 64
    assert 2 * 255 * 64 <= np.iinfo(np.int16).max


# Runs under qemu's emulation of an AVX2-only CPU (Haswell): numpy and onnxruntime read the CPU's
# features with CPUID, which qemu answers as that CPU, so onnxruntime takes its AVX2 kernels.
CHECK_ON_ANOTHER_CPU = """
import json, sys
import numpy as np, onnxruntime
from numpy._core._multiarray_umath import __cpu_features__ as cpu
images, labels = np.load(sys.argv[1]), np.load(sys.argv[2])
def predicted(path):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    x = ((images.astype(np.float32) / 255 - float(meta["mean"])) / float(meta["std"]))[:, None]
    return np.concatenate([session.run(None, {"images": x[i:i + 1000]})[0] for i in range(0, len(x), 1000)]).argmax(1)
fp32, int8 = predicted(sys.argv[3]), predicted(sys.argv[4])
print(json.dumps({"avx2": cpu["AVX2"], "avx512": cpu["AVX512F"], "vnni": cpu["AVX512VNNI"],
                  "agreement": float((fp32 == int8).mean()),
                  "drop": float((fp32 == labels).mean() - (int8 == labels).mean())}))
"""


def test_int8_export_passes_its_check_on_a_cpu_without_avx512(exported_run: Path, int8_export: tuple[Path, str],
                                                               mnist, tmp_path: Path) -> None:
    if platform.machine() != "x86_64":
        pytest.skip("VPMADDUBSW saturation is an x86 matter; qemu-x86_64 cannot run this machine's Python")
    require(shutil.which("qemu-x86_64") is not None, "qemu-x86_64 is missing: apt-get install qemu-user")
    images, labels = tmp_path / "images.npy", tmp_path / "labels.npy"
    np.save(images, mnist.test_images.numpy())
    np.save(labels, mnist.test_labels.numpy())
    emulated = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", sys.executable, "-c", CHECK_ON_ANOTHER_CPU,
                               str(images), str(labels), str(exported_run / "checkpoint.onnx"), str(int8_export[0])],
                              capture_output=True, text=True, timeout=600)
    assert emulated.returncode == 0, emulated.stderr[-2000:]
    found = json.loads(emulated.stdout)
    assert found["avx2"] and not found["avx512"] and not found["vnni"], "qemu did not hide AVX-512"
    assert found["agreement"] >= export.INT8_MIN_AGREEMENT, found
    assert found["drop"] <= export.INT8_MAX_ACCURACY_DROP + 1e-9, found


def tiny_run(folder: Path, data_dir: Path, seed: int = 0) -> Path:
    """A run folder holding an untrained tutorial network, described as trained on the tiny data set."""
    torch.manual_seed(seed)
    model = build_model("tutorial")
    data = {"name": "mnist", "classes": [str(d) for d in range(10)], "mean": 0.2, "std": 0.3, "folder": str(data_dir)}
    Checkpoint(config={"model": "tutorial"}, model=model.state_dict(), optimizer={}, data=data,
               history={"train": [], "test": []}).save(folder / CHECKPOINT_NAME)
    return folder


def test_evaluate_gives_the_same_score_on_both_backends(tmp_path: Path, capsys) -> None:
    data_dir = write_idx_dataset(tmp_path / "data")
    run = tiny_run(tmp_path / "run", data_dir)
    scores = {}
    for backend in ("torch", "onnx"):
        assert main(["evaluate", str(run), "--backend", backend, "--data", str(data_dir), "--json"]) == 0
        captured = capsys.readouterr()
        scores[backend] = json.loads(captured.out)  # the first-use export note went to stderr
    assert "exporting" in captured.err and scores["onnx"]["source"] == str(run / "checkpoint.onnx")
    assert scores["onnx"]["confusion"] == scores["torch"]["confusion"]
    assert scores["onnx"]["loss"] == pytest.approx(scores["torch"]["loss"], abs=1e-5)


def test_a_failed_check_raises_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    data_dir = write_idx_dataset(tmp_path / "data")
    run = tiny_run(tmp_path / "run", data_dir)
    monkeypatch.setattr(export, "FP32_MAX_DIFFERENCE", -1.0)  # a limit no export can meet
    out = tmp_path / "strict.onnx"
    with pytest.raises(DigitrecError, match=r"failed its check.*max \|difference\|.*nothing was written"):
        export.export_onnx(load_model(run), out, load_dataset("mnist", data_dir))
    assert not out.exists() and not report_path(out).exists()
    assert main(["export", str(run), "--out", str(out), "--data", str(data_dir)]) == 1
    assert not out.exists()


def test_check_catches_a_different_model(tmp_path: Path) -> None:
    data_dir = write_idx_dataset(tmp_path / "data")
    data = load_dataset("mnist", data_dir)
    loaded = load_model(tiny_run(tmp_path / "run", data_dir))
    other = build_model("tutorial").eval()
    other.load_state_dict(loaded.model.state_dict())
    with torch.no_grad():
        other.fc2.bias[3] += 50.0  # favour one class: most answers change
    wrong = export.to_onnx(export.LoadedModel(other, "tutorial", loaded.mean, loaded.std, loaded.classes, "other"))
    candidate = OnnxClassifier(wrong.SerializeToString(), source="other")
    assert candidate.metadata["precision"] == "fp32" and candidate.classes == loaded.classes
    result = export.check_export(loaded, candidate, data)
    assert not result["passed"] and result["top1_agreement"] < 0.5 and result["max_abs_difference"] > 1.0
    assert len(result["failures"]) == 2


def test_onnx_backend_reuses_its_export_until_the_weights_change(tmp_path: Path) -> None:
    data_dir = write_idx_dataset(tmp_path / "data")
    run = tiny_run(tmp_path / "run", data_dir)
    notes = []
    first = open_model(run, "onnx", data_dir=data_dir, log=notes.append)
    assert len(notes) == 1 and first.source == str(run / "checkpoint.onnx")
    written = (run / "checkpoint.onnx").stat().st_mtime_ns
    second = open_model(run, "onnx", data_dir=data_dir, log=notes.append)
    assert len(notes) == 1 and (run / "checkpoint.onnx").stat().st_mtime_ns == written
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8).numpy()
    assert np.array_equal(first.log_probabilities(images), second.log_probabilities(images))

    tiny_run(run, data_dir, seed=1)  # the run trained on: new weights, so the cached export is stale
    third = open_model(run, "onnx", data_dir=data_dir, log=notes.append)
    assert len(notes) == 2
    expected = load_model(run).log_probabilities(images)
    np.testing.assert_allclose(third.log_probabilities(images), expected, atol=1e-4, rtol=0)


def test_weights_files_are_exported_into_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data_dir = write_idx_dataset(tmp_path / "data")
    torch.manual_seed(0)
    weights = save_weights(tmp_path / "shipped" / "tutorial.safetensors", "tutorial", build_model("tutorial"),
                           {"mean": 0.2, "std": 0.3, "classes": [str(d) for d in range(10)]})
    loaded = open_model(weights, "onnx", data_dir=data_dir, log=lambda line: None)
    cached = Path(loaded.source)
    assert cached.parent == tmp_path / "cache" / "digitrec" / "onnx" and cached.name.startswith("tutorial-")
    assert sorted(path.name for path in weights.parent.iterdir()) == ["tutorial.safetensors"]  # left untouched
    images = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8).numpy()
    expected = load_model(weights).log_probabilities(images)
    np.testing.assert_allclose(loaded.log_probabilities(images), expected, atol=1e-4, rtol=0)


def test_inference_on_onnx_never_imports_torch_or_training(exported_run: Path) -> None:
    code = ("import sys\n"
            "import numpy as np\n"
            "from digitrec.inference import open_model\n"
            f"loaded = open_model({str(exported_run / 'checkpoint.onnx')!r})\n"
            "loaded.log_probabilities(np.zeros((2, 28, 28), np.uint8))\n"
            "print(sorted(name for name in sys.modules if name.startswith(('digitrec', 'torch'))))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "digitrec.classifier" in result.stdout
    assert "digitrec.training" not in result.stdout and "'torch" not in result.stdout


def test_bad_onnx_inputs_get_one_clear_message(tmp_path: Path, capsys) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    assert main(["evaluate", str(garbage)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("digitrec: error: onnxruntime cannot load") and "Traceback" not in error

    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Identity", ["images"], ["log_probabilities"])
    value = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [None, 1, 28, 28])
    result = onnx.helper.make_tensor_value_info("log_probabilities", onnx.TensorProto.FLOAT, [None, 1, 28, 28])
    graph = onnx.helper.make_graph([node], "identity", [value], [result])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(DigitrecError, match="not a digitrec ONNX file"):
        load_onnx(foreign)
    with pytest.raises(DigitrecError, match="only the onnx backend runs"):
        open_model(foreign, "torch")
    with pytest.raises(DigitrecError, match="no ONNX file at"):
        open_model(tmp_path / "missing.onnx")
    with pytest.raises(DigitrecError, match="unknown backend 'tensorrt'"):
        open_model(foreign, "tensorrt")


def test_onnx_model_output_is_float32_like_pytorch_gives(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("mlp").eval()
    graph = export.to_onnx(export.LoadedModel(model, "mlp", 0.1, 0.3, tuple("0123456789"), "test"))
    session_model = OnnxClassifier(graph.SerializeToString(), threads=1)
    images = torch.randn(3, 1, 28, 28)
    found = session_model.run(images.numpy())
    assert isinstance(found, np.ndarray) and found.dtype == np.float32
    with torch.no_grad():
        np.testing.assert_allclose(found, model(images).numpy(), atol=1e-5)
    pixels = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    read = session_model.log_probabilities(pixels.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(read, model((pixels[:, None].float() / 255 - 0.1) / 0.3).numpy(), atol=1e-5)


def test_every_preset_can_name_an_onnx_file() -> None:
    from digitrec.classifier import PRESET_NAMES
    from digitrec.models import PRESETS

    assert PRESET_NAMES == tuple(PRESETS)
