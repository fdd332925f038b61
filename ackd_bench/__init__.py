"""ackd-bench: Asymmetric Cross-modal Knowledge Distillation benchmarks for remote sensing."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ackd-bench")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
