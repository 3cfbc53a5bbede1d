"""The `digitrec` command: a thin shell over the package's functions.

Every subcommand turns flags into a function call; every DigitrecError becomes one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from typing import TYPE_CHECKING

from digitrec.errors import DigitrecError, Interrupted, require_torch

if TYPE_CHECKING:  # only for annotations: importing them costs torch, which not every command needs
    from digitrec.checkpoint import Checkpoint
    from digitrec.data import Dataset
    from digitrec.run import Run

EXIT_ERROR = 1
EXIT_INTERRUPTED = 128 + signal.SIGINT


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="mnist (default) or fashion-mnist")
    parser.add_argument("--data", metavar="DIR", help="a folder with the four MNIST-format IDX files")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def tcp_port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a TCP port; choose one from 1 to 65535")
    return value


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting of TrainConfig that has one; unset flags keep the preset's recipe (None)."""
    from digitrec.config import FLAG_SETTINGS, SETTING_TYPES, choices, flag_name

    group = parser.add_argument_group("training settings (default: the model preset's recipe)")
    for setting in FLAG_SETTINGS:
        kind, options = SETTING_TYPES[setting.name], {"help": setting.metadata["help"] or None}
        if kind is bool:
            options.update(action=argparse.BooleanOptionalAction, default=None)
        elif allowed := choices(setting.name):
            options["choices"] = allowed
        else:
            options["type"] = positive_int if setting.metadata["counts"] else kind
        group.add_argument(flag_name(setting.name), **options)


def training_settings(args: argparse.Namespace) -> dict:
    """The values of add_training_flags' flags, by setting name (None where not given)."""
    from digitrec.config import FLAG_SETTINGS

    return {setting.name: getattr(args, setting.name) for setting in FLAG_SETTINGS}


def add_backend_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["torch", "onnx"], help="run the model in PyTorch or onnxruntime "
                        "(default: onnx for an .onnx file and the shipped model, else torch); onnx exports a run "
                        "on first use")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digitrec", description="Learn to read handwritten digits, then read them.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_train_parser, add_resume_parser, add_evaluate_parser, add_export_parser, add_plot_parser,
                add_predict_parser, add_models_parser, add_data_parser, add_report_parser, add_compare_parser,
                add_serve_parser):
        add(commands)
    return parser


def add_train_parser(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model (default: the lab's tutorial recipe)")
    train.add_argument("--model", default="tutorial", help="preset: tutorial, mlp, fast or best")
    train.add_argument("--out", metavar="DIR", help="run folder (default: runs/MODEL, numbered if taken)")
    train.add_argument("--force", action="store_true", help="start again in a run folder that holds a run")
    train.add_argument("--no-plots", action="store_true", help="skip the PNG plots at the end")
    train.add_argument("--nproc", type=int, default=1,
                       help="train with N processes (DistributedDataParallel through torchrun)")
    add_data_flags(train)
    add_training_flags(train)


def add_resume_parser(commands: argparse._SubParsersAction) -> None:
    resume = commands.add_parser("resume", help="continue a run from its checkpoint")
    resume.add_argument("run", metavar="RUN", help="run folder")
    resume.add_argument("--epochs", type=int, help="train up to this many epochs in all")
    resume.add_argument("--data", metavar="DIR", help="where the run's data is now, if it moved")
    resume.add_argument("--no-plots", action="store_true")


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser("evaluate", help="score a model on the test split")
    evaluate.add_argument("model", metavar="MODEL", nargs="+", help="run folder, checkpoint.pt, .safetensors or "
                          "preset name; several: their ensemble (the mean of their probabilities)")
    evaluate.add_argument("--tta", action="store_true", help="test-time augmentation: also read each image "
                          "moved one pixel left, right, up and down (and all of these mirrored, for a model trained "
                          "with --augment flip), and average (5 or 10 times the work)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    add_backend_flag(evaluate)
    add_data_flags(evaluate)


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="export a model to ONNX, checked against PyTorch on the test set")
    export.add_argument("model", metavar="MODEL", help="run folder, checkpoint.pt, .safetensors or preset name")
    export.add_argument("--format", default="onnx", choices=["onnx", "safetensors"],
                        help="onnx (default), or safetensors: the weights alone, with their test accuracy")
    export.add_argument("--out", metavar="FILE.onnx", required=True, help="the file to write (its check goes "
                        "beside it as FILE.check.json)")
    export.add_argument("--int8", action="store_true", help="quantize to int8 (calibrated on the training split)")
    export.add_argument("--quantization", default="static", choices=["static", "dynamic"],
                        help="int8 method: static (default; calibrated, several times faster on CNNs) or dynamic")
    add_data_flags(export)


def add_plot_parser(commands: argparse._SubParsersAction) -> None:
    plot = commands.add_parser("plot", help="redraw a run's samples.png, loss.png and predictions.png")
    plot.add_argument("run", metavar="RUN")
    add_data_flags(plot)


def add_predict_parser(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="read the digits in pictures (default model: the shipped best)")
    predict.add_argument("paths", nargs="+", metavar="PATH",
                         help="picture files, folders (searched recursively for pictures) or - for standard input")
    predict.add_argument("--model", help="preset, run folder, checkpoint.pt or .safetensors (default: shipped best)")
    predict.add_argument("--json", action="store_true", help="one JSON object per picture (JSON Lines)")
    predict.add_argument("--top-k", type=positive_int, metavar="K", help="also show the K likeliest digits of each")
    predict.add_argument("--single", action="store_true", help="read each whole picture as one digit")
    add_backend_flag(predict)


def add_models_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("models", help="list the model presets")


def add_data_parser(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="find (or download) a data set and describe it")
    add_data_flags(data)


def add_report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="write a run's evaluation report: report.html and metrics.json")
    report.add_argument("run", metavar="RUN", help="run folder")
    report.add_argument("--out", metavar="DIR", help="where to write them (default: the run folder)")
    add_data_flags(report)


def add_compare_parser(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="compare runs: a table and one figure of their curves")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders")
    compare.add_argument("--out", metavar="FILE", default="compare.png", help="the figure (default: compare.png)")


def add_serve_parser(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="the HTTP API and the draw-a-digit web page")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=tcp_port, default=8000, help="1 to 65535 (default 8000)")
    serve.add_argument("--model", help="run folder, checkpoint.pt, .safetensors or preset (default: shipped best)")
    serve.add_argument("--workers", type=int, help="server processes, each with its own copy of the model "
                       "(default: one per core this process may use)")
    serve.add_argument("--threads", type=int, help="reading threads per process (default: cores / workers)")
    serve.add_argument("--queue", type=int, help="requests that may wait for a thread before 503 (default 16)")
    serve.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body accepted (default 10 MB)")
    add_backend_flag(serve)


def command_train(args: argparse.Namespace) -> int:
    from digitrec.distributed import launch_processes, without_option
    from digitrec.run import Run, default_run_dir
    from digitrec.training import make_config, train

    config = make_config(args.model, dataset=args.dataset, data_dir=args.data, **training_settings(args))
    run = Run(args.out or default_run_dir(args.model))
    main_process = os.environ.get("RANK", "0") == "0"
    if main_process:
        run.refuse_to_overwrite(args.force)
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return 0 if launch_processes(args.nproc, without_option(args.argv, "--nproc"), run.folder) else EXIT_ERROR
    data = _load_data(config.dataset, config.data_dir)
    if main_process:
        print(f"Training {config.model} on {data.name} ({len(data.train_images):,} train, "
              f"{len(data.test_images):,} test) into {run.folder}; classes: {', '.join(data.classes)}", flush=True)
    final = train(config, run, data=data, log=_print)
    return _finish(run, final, data, args.no_plots) if main_process else 0


def command_resume(args: argparse.Namespace) -> int:
    from digitrec.run import Run
    from digitrec.training import resume

    run = Run.open(args.run)
    data = run.dataset(None, args.data)
    final = resume(run, epochs=args.epochs, data_dir=args.data, log=_print, data=data)
    return _finish(run, final, data, args.no_plots)


def _finish(run: Run, final: Checkpoint, data: Dataset, no_plots: bool) -> int:
    if not no_plots:
        from digitrec.plots import draw_run_plots

        paths = draw_run_plots(run, data)
        print("Plots: " + ", ".join(str(path) for path in paths))
    test = final.history.final_test
    print(f"Final test accuracy after {final.epoch} epochs: {100 * test.accuracy:.2f}% "
          f"(loss {test.loss:.4f}, {final.seconds:.1f} s of training); run folder: {run.folder}")
    return 0


def command_evaluate(args: argparse.Namespace) -> int:
    from digitrec.evaluation import evaluate
    from digitrec.inference import open_model

    reference = args.model if len(args.model) > 1 else args.model[0]
    classifier = open_model(reference, args.backend, data_dir=args.data, tta=args.tta, log=_note)
    backend = classifier.metadata.get("backend", "torch")
    data = _load_data(args.dataset or classifier.metadata.get("dataset") or "mnist", args.data)
    result = evaluate(classifier, data)
    if args.json:
        print(json.dumps({"model": classifier.name, "source": classifier.source, "dataset": data.name,
                          **result.summary()}))
        return 0
    print(f"{classifier.name} from {classifier.source} ({backend}) on {data.name} test ({result.total:,} images)")
    print(f"Average loss: {result.loss:.4f}   Accuracy: {result.correct}/{result.total} ({100 * result.accuracy:.2f}%)")
    print("Per class: " + "  ".join(f"{name}: {100 * value:.1f}%" for name, value in result.per_class.items()))
    return 0


def command_export(args: argparse.Namespace) -> int:
    from digitrec.checkpoint import load_model
    from digitrec.export import export_onnx, report_path

    loaded = load_model(args.model)
    data = _load_data(args.dataset or loaded.metadata.get("dataset") or "mnist", args.data)
    if args.format == "safetensors":
        return export_weights(loaded, data, args.out)
    report = export_onnx(loaded, args.out, data, int8=args.int8, quantization=args.quantization)
    kind = f"int8 ({report['quantization']} quantization)" if args.int8 else "fp32"
    print(f"Exported {loaded.name} from {loaded.source} to {args.out}: {kind}, {report['bytes'] / 1024:.0f} KiB")
    print(f"Check on {data.name} test ({report['images']:,} images) against PyTorch: "
          f"max |difference| {report['max_abs_difference']:.2e}, top-1 agreement {100 * report['top1_agreement']:.2f}%, "
          f"accuracy {100 * report['torch_accuracy']:.2f}% -> {100 * report['onnx_accuracy']:.2f}% "
          f"(drop {100 * report['accuracy_drop']:.2f} point); passed")
    print(f"Check numbers: {report_path(args.out)}")
    return 0


def export_weights(loaded, data, out: str) -> int:
    """`digitrec export --format safetensors`: the weights file, and what is in it."""
    from digitrec.checkpoint import export_weights as write_weights_file

    path, accuracy = write_weights_file(loaded, data, out)
    print(f"Wrote {loaded.name} weights from {loaded.source} to {out} ({path.stat().st_size / 1024:.0f} KiB); "
          f"test accuracy {100 * accuracy:.2f}% on {data.name}")
    return 0


def command_plot(args: argparse.Namespace) -> int:
    from digitrec.plots import draw_run_plots
    from digitrec.run import Run

    run = Run.open(args.run)
    for path in draw_run_plots(run, run.dataset(args.dataset, args.data)):
        print(path)
    return 0


def command_models(args: argparse.Namespace) -> int:
    from digitrec.checkpoint import pretrained_path
    from digitrec.models import PRESETS, build_model, count_parameters

    print(f"{'model':<10} {'parameters':>10}  {'shipped weights':<16} description")
    for name, preset in PRESETS.items():
        shipped = "yes" if pretrained_path(name) else "-"
        print(f"{name:<10} {count_parameters(build_model(name)):>10,}  {shipped:<16} {preset.description}")
    return 0


def command_data(args: argparse.Namespace) -> int:
    data = _load_data(args.dataset or "mnist", args.data)
    print(f"{data.name} in {data.folder}")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        counts = labels.bincount(minlength=len(data.classes)).tolist()
        print(f"  {split}: {tuple(images.shape)} uint8, labels per class {counts}")
    print(f"  normalisation: mean {data.mean}, std {data.std}")
    for name, digest in data.checksums.items():
        print(f"  sha256 {digest}  {name}")
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from digitrec.server import serve

    limits = {key: getattr(args, key) for key in ("threads", "queue", "max_body") if getattr(args, key) is not None}
    serve(args.model, host=args.host, port=args.port, workers=args.workers, log=_print, backend=args.backend, **limits)
    return 0


def command_report(args: argparse.Namespace) -> int:
    from digitrec.report import write_report
    from digitrec.run import Run

    run = Run.open(args.run)
    report = write_report(run, run.dataset(args.dataset, args.data), args.out)
    metrics = report.metrics
    print(f"{metrics['model']} on {metrics['dataset']}: accuracy {100 * metrics['accuracy']:.2f}%, "
          f"loss {metrics['loss']:.4f}, macro F1 {metrics['macro_f1']:.4f}, ECE {metrics['calibration']['ece']:.4f}")
    print(f"Report: {report.html}\nMetrics: {report.metrics_path}")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from digitrec.report import compare_runs, format_table

    rows = compare_runs(args.runs, args.out)
    print(format_table(rows))
    print(f"Figure: {args.out}")
    return 0


def command_predict(args: argparse.Namespace) -> int:
    from digitrec.inference import open_reader
    from digitrec.predict import read_pictures

    classifier = open_reader(args.model or None, args.backend, log=_note)
    failures = 0
    with _reading_threads(classifier):
        for path, result in read_pictures(args.paths, classifier, args.single, stdin=sys.stdin.buffer):
            failures += isinstance(result, DigitrecError)
            _print_reading(path, result, args.json, args.top_k)
    return EXIT_ERROR if failures else 0


def _print_reading(path: str, result, as_json: bool, top_k: int | None) -> None:
    if isinstance(result, DigitrecError):
        if as_json:
            print(json.dumps({"file": path, "error": str(result)}), flush=True)
        else:
            print(f"digitrec: error: {result}", file=sys.stderr, flush=True)
    elif as_json:
        print(json.dumps({"file": path, **result.to_json(top_k=top_k)}), flush=True)
    else:
        print(f"{path}: {result.describe(top_k)}", flush=True)


def _reading_threads(classifier) -> contextlib.AbstractContextManager:
    """PyTorch on one thread while a PyTorch model reads, and as it was after: one picture is a batch
    of a few 28x28 images, and a pool of threads costs more to wake than it saves (on a busy CPU its
    spinning makes a 1 ms batch take 100 ms). An onnxruntime model was opened with one thread."""
    if classifier.metadata.get("backend") == "onnx":
        return contextlib.nullcontext()
    from digitrec.models import torch_threads

    return torch_threads(1)


def _load_data(name: str | None, folder: str | None):
    from digitrec.data import load_dataset

    return load_dataset(name or "mnist", folder)


def _print(line: str) -> None:
    print(line, flush=True)


def _note(line: str) -> None:
    """A progress note (e.g. a first-use ONNX export) on stderr, so `--json` output stays parseable."""
    print(line, file=sys.stderr, flush=True)


# The commands that need PyTorch (the train extra): they say so in one line on a reading-only install.
# predict and serve need it only for a PyTorch model, and open_model says so then.
TORCH_COMMANDS = frozenset({"train", "resume", "evaluate", "plot", "models", "data", "report", "compare", "export"})

COMMANDS = {"train": command_train, "resume": command_resume, "evaluate": command_evaluate,
            "plot": command_plot, "models": command_models, "data": command_data,
            "report": command_report, "compare": command_compare,
            "serve": command_serve, "export": command_export, "predict": command_predict}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what a command that starts more processes of itself passes on
    try:
        if args.command in TORCH_COMMANDS:
            require_torch(f"digitrec {args.command}")
        return COMMANDS[args.command](args)
    except DigitrecError as error:
        print(f"digitrec: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as stop:
        print(f"digitrec: {stop}", file=sys.stderr)
        return 128 + stop.signal_number
    except KeyboardInterrupt:
        print("digitrec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left early (`digitrec evaluate RUN | head`): stop quietly, as other tools do,
        # with stdout on /dev/null so the flush at exit cannot fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
