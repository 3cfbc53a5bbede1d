"""The `best` preset on Fashion-MNIST beside the lab's recipe on the same data, per class.

    python benchmarks/fashion.py runs/best-fashion [--also RUN...] [--tutorial-epochs 3]

`best` comes from a finished run (`make fashion`: about 12 minutes on this 2-core CPU); the lab's
`tutorial` recipe is trained here, on the same data, as the baseline (about 20 seconds). Both are
scored by `digitrec evaluate` on the 10,000 Fashion-MNIST test images, and their TTA
(`evaluate --tta`) is shown for `best`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from markdown import table, write_section  # noqa: E402

from digitrec.checkpoint import Checkpoint, load_ensemble  # noqa: E402
from digitrec.data import load_dataset  # noqa: E402
from digitrec.evaluation import evaluate  # noqa: E402
from digitrec.training import make_config, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished `best` run on Fashion-MNIST")
    parser.add_argument("--also", nargs="+", default=[], metavar="RUN",
                        help="more finished Fashion-MNIST runs to show beside it (other recipes)")
    parser.add_argument("--tutorial-epochs", type=int, default=3, help="epochs of the lab's recipe (its default: 3)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()

    data = load_dataset("fashion-mnist")
    best = Checkpoint.load(args.run)
    if best.data.get("name") != "fashion-mnist":
        raise SystemExit(f"{args.run} was trained on {best.data.get('name')}, not fashion-mnist")
    with tempfile.TemporaryDirectory() as folder:
        lab = train(make_config("tutorial", dataset="fashion-mnist", epochs=args.tutorial_epochs), folder, data=data,
                    log=lambda line: None, progress=False)
        lab_result = evaluate(load_ensemble([folder]), data)
    best_result = evaluate(load_ensemble([args.run]), data)
    best_tta = evaluate(load_ensemble([args.run], tta=True), data)

    rows = [[f"lab recipe (`tutorial`, {args.tutorial_epochs} epochs)", f"{lab.seconds:.0f} s",
             f"{100 * lab_result.accuracy:.2f}%", "", f"{lab_result.macro_f1():.4f}", f"{lab_result.loss:.4f}"],
            [f"`best` ({best.epoch} epochs, {args.run})", f"{best.seconds / 60:.1f} min",
             f"{100 * best_result.accuracy:.2f}%", f"{100 * best_tta.accuracy:.2f}%", f"{best_result.macro_f1():.4f}",
             f"{best_result.loss:.4f}"]]
    for run in args.also:
        other = Checkpoint.load(run)
        result, tta = (evaluate(load_ensemble([run], tta), data) for tta in (False, True))
        settings = ", ".join(f"--{key.replace('_', '-')} {value}" for key, value in other.config.items()
                             if key in ("augment", "epochs", "lr", "label_smoothing") and value != best.config.get(key))
        rows.append([f"`{other.config['model']}` {settings} ({run})", f"{other.seconds / 60:.1f} min",
                     f"{100 * result.accuracy:.2f}%", f"{100 * tta.accuracy:.2f}%", f"{result.macro_f1():.4f}",
                     f"{result.loss:.4f}"])
    summary = table(["recipe", "training time", "test accuracy", "with --tta", "macro F1", "test loss"], rows)
    classes = table(["class", "lab recipe F1", "`best` F1", "`best` errors / lab errors"], [
        [name, f"{lab_result.class_metrics()[name]['f1']:.3f}", f"{best_result.class_metrics()[name]['f1']:.3f}",
         f"{(1 - best_result.per_class[name]) / max(1 - lab_result.per_class[name], 1e-9):.2f}x"]
        for name in data.classes])
    pairs = ", ".join(f"{pair['true']} read as {pair['predicted']} ({pair['count']})"
                      for pair in best_result.confused_pairs(5))
    body = (f"Fashion-MNIST test set, 10,000 images. Published small CNNs reach about 93-94% on it. "
            f"`best` makes {(1 - lab_result.accuracy) / (1 - best_result.accuracy):.1f}x fewer errors than the lab's "
            f"recipe; its most confused pairs: {pairs}.\n\n{summary}\n\n{classes}")
    print(body)
    if not args.no_write:
        write_section("fashion", "Fashion-MNIST", body)


if __name__ == "__main__":
    main()
