"""Backends that run OCI bundles: `linux_native` (the runtime itself) and `lightvm` (a VM that runs it)."""
