"""digitrec: learn to read handwritten digits from MNIST-format data, then read them in real pictures."""

__version__ = "0.1.0"
