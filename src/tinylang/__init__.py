"""tinylang: mechanistic evaluation of sequence-model architectures on synthetic languages."""

__version__ = "0.1.0"
