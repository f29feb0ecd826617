"""The runc-compatible OCI runtime. Standard library only: it also runs inside the VM guest,
and its import time is on every container's critical path."""

__version__ = "0.1.0"
OCI_VERSION = "1.1.0"
