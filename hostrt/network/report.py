"""A container's network as `inspect` shows it, in docker's NetworkSettings shape."""

from __future__ import annotations

import json
from pathlib import Path

from hostrt.network.attach import read
from hostrt.network.proxy import PUBLISHED_FILE


def network_settings(container_dir: Path) -> dict:
    """Mode, address, gateway and published ports (ports only while the container runs).

    A VM container has no attachment on the host, only its published ports.
    """
    attachment = read(container_dir)
    try:
        published = json.loads((container_dir / PUBLISHED_FILE).read_text())
    except (OSError, ValueError):
        published = []
    ports: dict[str, list[dict]] = {}
    for spec in published:
        ports.setdefault(f"{spec['container_port']}/{spec['protocol']}", []).append(
            {"HostIp": spec["host_ip"], "HostPort": str(spec["host_port"])})
    if attachment is None:
        return {"Ports": ports} if ports else {}
    return {"NetworkMode": attachment.network or attachment.mode, "IPAddress": attachment.address,
            "IPPrefixLen": attachment.prefix, "Gateway": attachment.gateway, "SandboxKey": attachment.netns,
            "Ports": ports}
