"""`hostrt network create|ls|rm|inspect` and `hostrt port`, spelled as docker spells them.

Only parses and prints; networks live in `hostrt.network`.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

network_app = typer.Typer(rich_markup_mode=None, help="Manage networks.", no_args_is_help=True)


def _store():  # noqa: ANN202
    from hostrt.network.networks import NetworkStore
    from hostrt.paths import Paths

    return NetworkStore(Paths.default().root / "networks")


@network_app.command("create")
def create(
    name: Annotated[str, typer.Argument()],
    subnet: Annotated[Optional[str], typer.Option(
        "--subnet", help="IPv4 CIDR (default: the first free subnet of the address pools, as Docker's).")] = None,
) -> None:
    """Create a bridge network whose containers reach each other by name."""
    from hostrt.network import bridge, nat, occupied

    store = _store()
    with occupied.host_lock():  # until the bridge's route exists, other roots must not pick its subnet
        network = store.create(name, subnet)
        try:
            bridge.ensure(network)
            nat.install(network)
        except BaseException:
            bridge.delete_bridge(network.bridge)
            nat.remove(network.bridge)
            store.remove(name)
            raise
    typer.echo(network.name)


@network_app.command("ls")
def ls(quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only names.")] = False) -> None:
    """List networks; OVERLAPS names what on the host took a network's subnet since it was made."""
    store = _store()
    networks = store.all()
    if quiet:
        for network in networks:
            typer.echo(network.name)
        return
    overlaps = store.overlapping(networks)
    rows = [("NAME", "BRIDGE", "SUBNET", "GATEWAY", "OVERLAPS")] + [
        (n.name, n.bridge, n.subnet, n.gateway, "; ".join(overlaps[n.name]) or "-") for n in networks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        typer.echo("   ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "   " + row[4])


@network_app.command("rm")
def rm(names: Annotated[list[str], typer.Argument()]) -> None:
    """Remove user networks that no container uses."""
    from hostrt.errors import HostrtError, UsageError
    from hostrt.network.cleanup import remove_unused
    from hostrt.network.ipam import Leases

    store = _store()
    for name in names:
        network = store.get(name)
        if network.builtin:
            raise UsageError(f"network {name} is built in and cannot be removed")
        if not remove_unused(store, network):
            held = Leases(store.directory, network.bridge).read()
            raise HostrtError(f"network {name} is in use by {len(held)} container(s); remove them first")
        typer.echo(name)


@network_app.command("inspect")
def inspect(names: Annotated[list[str], typer.Argument()]) -> None:
    """Networks as JSON, with the address of each container on them."""
    from dataclasses import asdict

    from hostrt.network.ipam import Leases

    store = _store()
    networks = [store.get(name) for name in names]
    overlaps = store.overlapping(networks)
    found = [{**asdict(network), "containers": Leases(store.directory, network.bridge).read(),
              "overlaps": overlaps[network.name]} for network in networks]
    typer.echo(json.dumps(found, indent=2))


def port(container: Annotated[str, typer.Argument()]) -> None:
    """The published ports of a running container (`80/tcp -> 127.0.0.1:8080`)."""
    from hostrt.engine.containers import Engine
    from hostrt.network.proxy import PUBLISHED_FILE

    engine = Engine.open()
    record = engine.find(container)
    path = engine.records.dir_of(record.id) / PUBLISHED_FILE
    if record.status != "running" or not path.exists():
        return
    for spec in json.loads(path.read_text()):
        typer.echo(f"{spec['container_port']}/{spec['protocol']} -> {spec['host_ip']}:{spec['host_port']}")


def register(app: typer.Typer) -> None:
    app.add_typer(network_app, name="network")
    app.command("port")(port)
