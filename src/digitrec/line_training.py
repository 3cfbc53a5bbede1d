"""Training the line reader (lines.LineReader) in a time budget, and shipping its weights checked.

    python -m digitrec.line_training --out src/digitrec/weights --minutes 25

Every batch is composed afresh from the MNIST TRAINING digits (lines.compose_lines); the validation
lines are composed once, with a fixed seed, from the TEST digits: plain lines of 1-8 digits, and
lines of 2-4 digits two of which touch (as benchmarks/make_photos.py writes `touching` numbers).
The score is whole-line exact match. At the end it writes line.safetensors (the weights, with the
recipe and the scores in the header) and line.onnx, the latter only once onnxruntime's answers
match PyTorch's on every validation line (max |difference| <= 1e-4, the same strings).
"""

from __future__ import annotations

import argparse
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from digitrec import __version__
from digitrec.data import load_dataset
from digitrec.errors import DigitrecError, write_atomic
from digitrec.line_reading import BLANK, HEIGHT, INPUT_NAME, OUTPUT_NAME, STRIDE, LineReaderOnnx, greedy_decode
from digitrec.lines import MAX_DIGITS, LineReader, compose_lines

# The recipe. The step count follows from the time budget: timed over STEPS_TIMED steps after
# STEPS_WARMING (the first steps are slower; timed from the start, 25 minutes' steps took 19.9).
BATCH_SIZE = 64  # lines per step: ~0.5 s a step on one core of this CPU
LEARNING_RATE = 3e-3  # OneCycle's peak, for AdamW
WEIGHT_DECAY = 1e-2
GRADIENT_CLIP = 5.0  # CTC's early gradients can be large
STEPS_WARMING, STEPS_TIMED = 5, 30
VALIDATION_LINES = 1000  # of each kind
VALIDATION_SEED, TRAINING_SEED = 0, 1
TOUCHING_LENGTHS = (2, 4)
EVALUATE_EVERY_S = 240
LOG_EVERY_STEPS = 100
ONNX_MAX_DIFFERENCE = 1e-4
OPSET = 17


def batch_lengths(generator: torch.Generator) -> tuple[int, int]:
    """Lines of one batch are of similar length (at most 3 digits apart), so little of the batch is
    padding: a batch of 1-8 digits would be as wide as its 8-digit line throughout."""
    longest = int(torch.randint(1, MAX_DIGITS + 1, (1,), generator=generator))
    return max(1, longest - 3), longest


def validation_sets(data) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    return {"plain": compose_lines(data.test_images, data.test_labels, VALIDATION_LINES, generator),
            "touching": compose_lines(data.test_images, data.test_labels, VALIDATION_LINES, generator,
                                      lengths=TOUCHING_LENGTHS, touching=True)}


def strings(targets: torch.Tensor, lengths: torch.Tensor) -> list[str]:
    return ["".join(str(int(d)) for d in row[:length]) for row, length in zip(targets, lengths)]


@torch.no_grad()
def log_probabilities(model: nn.Module, lines: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    model.eval()
    return torch.cat([model(lines[start:start + batch_size]) for start in range(0, len(lines), batch_size)])


def accuracy(model: nn.Module, lines, targets, lengths) -> float:
    readings = greedy_decode(log_probabilities(model, lines))
    return float(np.mean([reading.digits == truth for reading, truth in zip(readings, strings(targets, lengths))]))


def train(data, minutes: float, log=print) -> tuple[LineReader, dict]:
    """Train for about `minutes`, with OneCycle laid over the steps that the early steps' speed says fit."""
    torch.manual_seed(TRAINING_SEED)
    generator = torch.Generator().manual_seed(TRAINING_SEED)
    validation = validation_sets(data)
    model = LineReader()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE / 25, weight_decay=WEIGHT_DECAY)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    started, budget = time.perf_counter(), 60 * minutes
    scheduler, total_steps, step, last_evaluation, timed_from = None, None, 0, started, started

    while total_steps is None or step < total_steps:
        model.train()
        lines, targets, lengths = compose_lines(data.train_images, data.train_labels, BATCH_SIZE, generator,
                                                lengths=batch_lengths(generator))
        output = model(lines)
        frames = torch.full((len(lines),), output.shape[1], dtype=torch.long)
        loss = ctc(output.transpose(0, 1), targets, frames, lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP)
        optimizer.step()
        step += 1
        if scheduler:
            scheduler.step()
        elif step == STEPS_WARMING:
            timed_from = time.perf_counter()
        elif step == STEPS_WARMING + STEPS_TIMED:
            # Leave a tenth of the budget for the validations along the way and the export at the end.
            per_step = (time.perf_counter() - timed_from) / STEPS_TIMED
            left = 0.9 * budget - (time.perf_counter() - started)
            total_steps = step + max(1, int(left / per_step))
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=total_steps - step + 1)
            log(f"{per_step:.2f} s a step: {total_steps} steps of {BATCH_SIZE} lines in {minutes:g} minutes")
        if step % LOG_EVERY_STEPS == 0:
            log(f"step {step}/{total_steps} loss {loss.item():.4f} lr {optimizer.param_groups[0]['lr']:.2e}")
        if time.perf_counter() - last_evaluation > EVALUATE_EVERY_S:
            scores = {kind: accuracy(model, *lines_) for kind, lines_ in validation.items()}
            log(f"step {step}/{total_steps} loss {loss.item():.4f} " + " ".join(
                f"{kind} {score:.2%}" for kind, score in scores.items())
                + f" ({(time.perf_counter() - started) / 60:.1f} min)")
            last_evaluation = time.perf_counter()
        if time.perf_counter() - started > 1.1 * budget:
            log(f"out of time at step {step} of {total_steps}")
            break
    scores = {kind: round(accuracy(model, *lines_), 4) for kind, lines_ in validation.items()}
    report = {"steps": step, "batch_size": BATCH_SIZE, "lines_seen": step * BATCH_SIZE,
              "minutes": round((time.perf_counter() - started) / 60, 1),
              "parameters": sum(p.numel() for p in model.parameters()),
              **{f"{kind}_accuracy": score for kind, score in scores.items()}}
    log(f"trained: {json.dumps(report)}")
    return model, report


def to_onnx(model: LineReader, metadata: dict) -> bytes:
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")  # the TorchScript exporter's deprecation and GRU batch-size notes
        torch.onnx.export(model.eval(), (torch.zeros(1, 1, HEIGHT, 64),), buffer, dynamo=False,
                          opset_version=OPSET, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch", 3: "width"}, OUTPUT_NAME: {0: "batch", 1: "frames"}})
    graph = onnx.load_from_string(buffer.getvalue())
    graph.doc_string = (f"digitrec line reader: input '{INPUT_NAME}' float32 (batch, 1, {HEIGHT}, width), ink 0..1 "
                        f"white on black; output '{OUTPUT_NAME}' float32 (batch, width/{STRIDE}, 11): natural-log "
                        f"probabilities of digits 0-9 and the CTC blank ({BLANK}) per {STRIDE}-column frame")
    onnx.helper.set_model_props(graph, {key: str(value) for key, value in metadata.items()})
    return graph.SerializeToString()


def check_onnx(model: LineReader, content: bytes, validation: dict) -> dict:
    """onnxruntime against PyTorch on every validation line (two widths, so the width axis is exercised)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        import tempfile
        with tempfile.NamedTemporaryFile(suffix=".onnx") as handle:
            handle.write(content)
            handle.flush()
            reader = LineReaderOnnx(handle.name)
    difference, same, total = 0.0, 0, 0
    for lines, _, _ in validation.values():
        reference = log_probabilities(model, lines).numpy()
        candidate = np.concatenate([reader.run(lines[start:start + 250].numpy()) for start in range(0, len(lines), 250)])
        difference = max(difference, float(np.abs(reference - candidate).max()))
        same += sum(a.digits == b.digits for a, b in zip(greedy_decode(reference), greedy_decode(candidate)))
        total += len(lines)
    return {"max_abs_difference": float(f"{difference:.3g}"), "same_strings": same, "lines": total,
            "passed": difference <= ONNX_MAX_DIFFERENCE and same == total}


def save(model: LineReader, report: dict, data, out: Path, log=print) -> dict:
    from safetensors.torch import save as save_safetensors

    metadata = {"model": "line-reader", "height": HEIGHT, "stride": STRIDE, "classes": json.dumps(
        [str(digit) for digit in range(10)] + ["blank"]), "blank": BLANK, "input": INPUT_NAME, "output": OUTPUT_NAME,
        "trained_on": "mnist train split", "digitrec_version": __version__, "torch_version": torch.__version__,
        **report}
    metadata = {key: str(value) for key, value in metadata.items()}
    content = to_onnx(model, metadata)
    check = check_onnx(model, content, validation_sets(data))
    log(f"onnx check: {json.dumps(check)}")
    if not check["passed"]:
        raise DigitrecError(f"the line reader's ONNX export differs from PyTorch ({check}); nothing was written")
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    write_atomic(out / "line.safetensors", save_safetensors(state, metadata))
    write_atomic(out / "line.onnx", content)
    summary = {**report, "onnx_check": check, "onnx_bytes": len(content)}
    write_atomic(out / "line.check.json", json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the line reader and write its checked weights.")
    parser.add_argument("--out", type=Path, default=Path("src/digitrec/weights"))
    parser.add_argument("--minutes", type=float, default=25, help="training time budget (default 25)")
    parser.add_argument("--data", default=None, help="the MNIST folder (default: DIGITREC_DATA or the cache)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: leave the others free)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", args.data)
    model, report = train(data, args.minutes)
    save(model, report, data, args.out)


if __name__ == "__main__":
    main()
