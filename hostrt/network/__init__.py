"""Container networking on the native backend: bridge networks, addresses, namespaces, published ports.

Standard library only, so the monitor daemon can tear down and proxy without pydantic. The
engine calls `attach.setup` while it prepares a bundle and `attach.teardown` when it
removes a container; `cleanup.prune` finds what a killed hostrt left behind.
"""
