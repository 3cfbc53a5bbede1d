"""digitrec: learn to read handwritten digits from MNIST-format data, then read them in real pictures.

The Python API (see the README's "Python API"): `read`, `open_model`, `load_data`, `train`, `resume`,
`evaluate` and `plot`. Importing the package loads none of the stages behind them.
"""

__version__ = "0.1.0"

from digitrec.api import evaluate, load_data, open_model, plot, read, resume, train

__all__ = ["evaluate", "load_data", "open_model", "plot", "read", "resume", "train", "__version__"]
