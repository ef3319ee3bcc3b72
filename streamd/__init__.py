"""streamd: a streaming, real-time audio classifier daemon."""

__version__ = "0.1.0"
