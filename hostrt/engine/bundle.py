"""Prepare a container's OCI bundle on this host: rootfs snapshot, /etc files, config.json.

The bundle is the container's own directory (config.json beside rootfs/), so everything a
crash could leave behind hangs off one place that `system prune` knows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostrt.engine import failpoints
from hostrt.engine.snapshot import mount_rootfs
from hostrt.network import attach
from hostrt.paths import Paths
from hostrt.seccomp_profile import kernel_version
from hostrt.spec import ContainerFiles, build_spec

if TYPE_CHECKING:
    from hostrt.engine.options import RunOptions

HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def _resolv_conf(network: str) -> str:
    """The host's resolvers for --network host; none otherwise (no network to reach them)."""
    if network != "host":
        return ""
    try:
        return Path("/etc/resolv.conf").read_text()
    except OSError:
        return ""


def write_container_files(container_dir: Path, hostname: str, network: str) -> ContainerFiles:
    files = ContainerFiles(container_dir / "hostname", container_dir / "hosts", container_dir / "resolv.conf")
    files.hostname.write_text(hostname + "\n")
    files.hosts.write_text(HOSTS + f"127.0.1.1\t{hostname}\n")
    files.resolv_conf.write_text(_resolv_conf(network))
    return files


def prepare_bundle(container_dir: Path, container_id: str, image_config: dict[str, Any], options: RunOptions,
                   lower_dirs: list[Path], architecture: str, paths: Paths | None = None) -> dict[str, Any]:
    """Mount the rootfs, connect the network namespace and write config.json; returns the spec written.
    ARCHITECTURE is the image's, which is this machine's (the native backend runs no other)."""
    paths = paths or Paths.default()
    rootfs = mount_rootfs(lower_dirs, container_dir)
    failpoints.reached("after-mount")
    hostname = options.hostname or container_id[:12]
    files = write_container_files(container_dir, hostname, options.network)
    netns = attach.setup(container_dir, container_id, hostname, options.network, options.publish, paths.root, paths.run)
    spec = build_spec(image_config, options, rootfs, container_id, files, netns, architecture=architecture,
                      kernel=kernel_version(os.uname().release))
    (container_dir / "config.json").write_text(json.dumps(spec, separators=(",", ":")))  # C encoder
    return spec
