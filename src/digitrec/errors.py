"""The one exception type a user ever sees, the stop after a signal, and atomic file writes."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# What open() would give a new file. mkstemp makes its files private (0600), and the rename would
# keep that: plots, reports and model files nobody else could read. Read once, at import, since
# changing the umask to read it is not safe while other threads create files.
FILE_MODE = 0o666 & ~_umask()


class DigitrecError(Exception):
    """A problem with the user's input or environment: the message says what and what to do.

    The CLI prints it as one line and exits non-zero; the server turns it into a 4xx.
    """


class Interrupted(Exception):
    """Raised after a Ctrl-C or SIGTERM, once the checkpoint is safely written."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


TRAIN_EXTRA = "pip install 'digitrec[train]'"


def require_torch(what: str = "training and PyTorch models") -> None:
    """Raise the one line that says how to get PyTorch, on an install made for reading only."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise DigitrecError(f"this needs PyTorch ({what}), which the train extra installs: {TRAIN_EXTRA}") from None


class InputTooLarge(DigitrecError):
    """An upload or image over a size limit (the server answers 413)."""


class UnsupportedInput(DigitrecError):
    """Input that is not what was expected: not an image, an empty drawing (the server answers 400 or 415)."""


def write_atomic(path: str | Path, write: Callable[[Path], None] | bytes | str) -> Path:
    """Write `path` so that a crash at any moment leaves either the old file or the new one.

    `write` is the content, or a function that writes a file at the temporary path it is given.
    The temporary file sits in the same folder, so the final rename is atomic on POSIX.
    """
    path = Path(path)
    temporary_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = _temporary_affixes(path)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
        os.close(descriptor)
        temporary_path = Path(temporary)
        if callable(write):
            write(temporary_path)
        else:
            temporary_path.write_bytes(write.encode() if isinstance(write, str) else write)
        os.chmod(temporary_path, FILE_MODE)
        with open(temporary_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary_path, path)
        _fsync_folder(path.parent)
    except OSError as error:
        if temporary_path is not None:
            temporary_path.unlink(missing_ok=True)
        raise DigitrecError(f"could not write {path}: {error.strerror or error}; "
                            "check that the folder is writable and the disk is not full") from error
    except BaseException:
        if temporary_path is not None:
            temporary_path.unlink(missing_ok=True)
        raise
    return path


def _temporary_affixes(path: Path) -> tuple[str, str]:
    # Hidden, and named after the file, so a leftover is easy to tell apart and to find again.
    return f".{path.name}.", ".tmp"


def remove_leftover_writes(path: str | Path) -> list[Path]:
    """Delete the temporary files that writes of `path` cut short by a kill left beside it."""
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    leftovers = sorted(path.parent.glob(f"{glob.escape(prefix)}*{suffix}"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def _fsync_folder(folder: Path) -> None:
    # The rename is an entry in the folder: without this a power cut could still lose it.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError:
        pass  # not every system can open or fsync a folder; the rename is atomic all the same
