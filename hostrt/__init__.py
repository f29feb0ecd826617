"""hostrt: run Linux container images natively where the host can, in a light VM where it cannot."""

__version__ = "0.1.0"
