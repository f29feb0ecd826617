"""`-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]`: docker's spelling of a published port, parsed once."""

from __future__ import annotations

from dataclasses import asdict, dataclass

PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class PortSpec:
    """One published port; host_port 0 means any free port (chosen when the container starts)."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.container_port}/{self.protocol} -> {self.host_ip}:{self.host_port}"


def _port(text: str, what: str, allow_zero: bool = False) -> int:
    if not text.isdigit() or not (0 if allow_zero else 1) <= int(text) <= 65535:
        raise ValueError(f"invalid {what} {text!r}: expected a number from 1 to 65535")
    return int(text)


def parse(text: str) -> PortSpec:
    """`8080:80`, `127.0.0.1:8080:80/udp`, `127.0.0.1::80`, `80` (host port chosen); ValueError if malformed."""
    import ipaddress  # only the CLI parses; the monitor builds PortSpecs from JSON

    spec, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise ValueError(f"invalid protocol {protocol!r}: expected tcp or udp")
    parts = spec.rsplit(":", 2)
    host_ip, host_port = "0.0.0.0", "0"
    if len(parts) == 3:
        host_ip, host_port, container_port = parts
        host_ip = host_ip.strip("[]") or "0.0.0.0"
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(f"invalid host address {host_ip!r}") from None
    elif len(parts) == 2:
        host_port, container_port = parts
    else:
        container_port = parts[0]
    return PortSpec(host_ip, _port(host_port or "0", "host port", allow_zero=True),
                    _port(container_port, "container port"), protocol)
