"""One way to open a model for reading: `open_model`, from any model reference, on either backend.

Reading needs no PyTorch: an .onnx file (the shipped `best` one by default) opens in onnxruntime.
Everything else (a run folder, a checkpoint.pt, a .safetensors file, `--backend torch`, an
ensemble) imports the torch side here, when it is asked for, and says which extra to install where
PyTorch is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from digitrec.classifier import Classifier, load_onnx, pretrained_path
from digitrec.errors import DigitrecError, require_torch

BACKENDS = ("torch", "onnx")
DEFAULT_PRESET = "best"


def open_model(reference: str | Path | Sequence[str | Path] | None = None, backend: str | None = None,
               data_dir: str | Path | None = None, threads: int = 0, tta: bool = False,
               log: Callable[[str], None] = print) -> Classifier:
    """A classifier for `reference` on `backend` (torch or onnx; None: onnx for .onnx files and for no
    reference at all, the shipped `best` export; torch for the rest).

    `reference` is a preset name (its shipped weights), a run folder, a checkpoint.pt, a .safetensors
    or an .onnx file; several of them, or `tta`, make an ensemble on the torch backend. With onnx, a
    run or weights file is exported on first use, checked on the test split found by `data_dir` (or
    the usual places) and cached (export.open_export). `threads` sizes onnxruntime's pool (0: a thread
    per core).
    """
    if backend not in (None, *BACKENDS):
        raise DigitrecError(f"unknown backend {backend!r}; choose {' or '.join(BACKENDS)}")
    if reference is not None and not isinstance(reference, (str, Path)):
        return _open_ensemble(list(reference), backend, tta)
    if tta:
        return _open_ensemble([reference or DEFAULT_PRESET], backend, tta)
    if reference is None:
        reference = DEFAULT_PRESET
        backend = backend or "onnx"
    if Path(reference).suffix == ".onnx":
        if backend == "torch":
            raise DigitrecError(f"{reference} is an ONNX file, which only the onnx backend runs; pass "
                                "--backend onnx, or give the run folder or weights it came from")
        return load_onnx(reference, threads)
    if backend == "onnx" and (shipped := pretrained_path(str(reference), ".onnx")):
        return load_onnx(shipped, threads)  # exported and checked when the weights were made
    require_torch()
    if backend == "onnx":
        from digitrec.export import open_export

        return open_export(reference, data_dir, threads, log)
    from digitrec.checkpoint import load_model

    return load_model(reference)


def _open_ensemble(references: list[str | Path], backend: str | None, tta: bool) -> Classifier:
    if backend == "onnx":
        raise DigitrecError("ensembles and --tta run on the torch backend; leave out --backend onnx")
    require_torch("ensembles and test-time augmentation")
    from digitrec.checkpoint import load_ensemble

    return load_ensemble(references, tta)


@functools.lru_cache(maxsize=1)
def default_model() -> Classifier:
    """The `best` weights that ship inside the package, opened once, on the fastest backend there is:
    their checked ONNX export reads a digit 2-3 times faster than PyTorch (benchmarks/infer_speed.py),
    on one thread, since a picture's few 28x28 images are far too little work to share out."""
    if pretrained_path(DEFAULT_PRESET, ".onnx"):
        return open_model(threads=1)
    return open_model(DEFAULT_PRESET)


def open_reader(reference: str | Path | None = None, backend: str | None = None,
                log: Callable[[str], None] = print) -> Classifier:
    """A model to read pictures with, on one thread (a picture's few 28x28 images are too little work
    to share out): the shipped `best`, opened once (default_model), when neither is named."""
    if reference is None and backend is None:
        return default_model()
    return open_model(reference, backend, threads=1, log=log)

