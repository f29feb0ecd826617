"""Checks of `--network` and `-p` values at the CLI, before anything is created (one-line exit 125)."""

from __future__ import annotations

from hostrt.errors import HostrtError, UsageError
from hostrt.network.networks import DEFAULT_NETWORK, NetworkStore
from hostrt.network.ports import parse


def check_network(network: str) -> None:
    """bridge, slirp4netns, none, host, container:NAME or an existing user network."""
    if network in (DEFAULT_NETWORK, "slirp4netns", "none", "host"):
        return
    if network.startswith("container:"):
        if not network.partition(":")[2]:
            raise UsageError("invalid --network value 'container:': expected container:NAME")
        return
    from hostrt.paths import Paths

    try:
        NetworkStore(Paths.default().root / "networks").get(network)
    except HostrtError:
        raise UsageError(f"invalid --network value {network!r}: expected bridge, slirp4netns, none, host, container:NAME "
                         "or the name of a network from `hostrt network create`") from None


def parse_publish(items: list[str], network: str) -> list[dict]:
    """`-p` values as dicts for RunOptions; only a bridge network has ports to publish."""
    if items and (network in ("none", "host") or network.startswith("container:")):
        raise UsageError(f"invalid -p with --network {network}: published ports need a bridge network")
    specs = []
    for item in items:
        try:
            specs.append(parse(item).to_dict())
        except ValueError as err:
            raise UsageError(f"invalid -p value {item!r}: {err}") from None
    return specs
