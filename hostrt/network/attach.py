"""Join a container to its network before the runtime runs, and undo it when the container goes.

`setup` leases an address, makes the bridge if needed, creates the namespace file with a
configured veth, and writes the container's /etc/hosts and /etc/resolv.conf. What it did is
written first to `network.json` in the container directory, so `teardown` (called by `rm`,
by the monitor for `--rm`, and by `system prune` after a crash) undoes exactly that and
nothing else; each step of `teardown` is safe to repeat.

Names on a user network resolve through /etc/hosts: every member's hosts file lists every
other member, rewritten in place (the file is bind-mounted) under the network's lease lock.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hostrt.engine import failpoints
from hostrt.errors import HostrtError, UsageError
from hostrt.network import bridge, nat, netns, occupied, slirp
from hostrt.network.ipam import AddressesExhaustedError, Leases, pick_address
from hostrt.network.networks import DEFAULT_NETWORK, NetworkStore
from hostrt.rootless import UID_VARIABLE, in_user_namespace

NETWORK_FILE = "network.json"
HOSTS_BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass
class Attachment:
    """What `setup` did for one container (its `network.json`)."""

    mode: str  # "bridge" (default or user network), "slirp4netns" (rootless), "container", "host", "none"
    network: str = ""
    networks_dir: str = ""
    bridge: str = ""
    builtin: bool = False  # the default network, whose bridge goes with its last lease
    address: str = ""
    prefix: int = 0
    gateway: str = ""
    netns: str = ""
    veth: str = ""
    names: list[str] = field(default_factory=list)
    ports: list[dict] = field(default_factory=list)

    def save(self, container_dir: Path) -> None:
        temp = container_dir / (NETWORK_FILE + ".tmp")
        temp.write_text(json.dumps(asdict(self)))
        os.replace(temp, container_dir / NETWORK_FILE)


def read(container_dir: Path) -> Attachment | None:
    try:
        return Attachment(**json.loads((container_dir / NETWORK_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def veth_name(container_id: str) -> str:
    return "vh" + container_id[:12]  # interface names are at most 15 bytes


def netns_path(run_dir: Path, container_id: str) -> Path:
    return run_dir / "netns" / container_id


def _container_name(container_dir: Path) -> str | None:
    try:
        return json.loads((container_dir / "record.json").read_text()).get("name")
    except (OSError, ValueError):
        return None


def setup(container_dir: Path, container_id: str, hostname: str, network: str, publish: list[dict],
          data_dir: Path, run_dir: Path) -> str | None:
    """Connect the container as `--network` says; the namespace path for config.json, or None.

    None means: host networking (no namespace) for "host", a fresh empty namespace made by
    the runtime for "none".
    """
    if network in ("host", "none"):
        Attachment(mode=network).save(container_dir)
        return None
    if network.startswith("container:"):
        return _share(container_dir, network.partition(":")[2], data_dir, run_dir)
    rootless = in_user_namespace() or UID_VARIABLE in os.environ
    if network == slirp.NETWORK or (network == DEFAULT_NETWORK and rootless):
        return _slirp(container_dir, container_id, hostname, publish, run_dir)  # Podman's rootless default
    if rootless:
        raise UsageError(f"invalid --network {network} for an unprivileged user: user networks need bridges in the "
                         "host's namespace; use the default network (slirp4netns), none or host")
    store = NetworkStore(data_dir / "networks")
    net = store.get(network)
    names = [n for n in {_container_name(container_dir), hostname} if n]
    attachment = Attachment(mode="bridge", network=net.name, networks_dir=str(store.directory), bridge=net.bridge,
                            builtin=net.builtin, prefix=net.prefix, gateway=net.gateway, netns=str(netns_path(run_dir, container_id)),
                            veth=veth_name(container_id), names=names, ports=publish)
    attachment.save(container_dir)  # before anything exists, so a crash from here on is undone by prune
    leases = Leases(store.directory, net.bridge)  # by bridge: the default's comes from settings that may change
    with leases.locked() as held, occupied.host_lock():
        net = store.usable(net, in_use=any(other != container_id for other in held))
        attachment.prefix, attachment.gateway = net.prefix, net.gateway
        try:
            attachment.address = held.setdefault(container_id, pick_address(net.subnet, net.gateway, held))
        except AddressesExhaustedError as err:
            raise HostrtError(f"network {net.name}: {err}") from None
        bridge.ensure(net)
        if net.builtin:
            nat.install(net)
    attachment.save(container_dir)
    failpoints.reached("net-after-lease")
    netns.create(Path(attachment.netns), attachment.veth, attachment.address, net.prefix, net.gateway)
    failpoints.reached("net-after-netns")
    done = bridge.ip_batch([f"link set {attachment.veth} master {net.bridge}", f"link set {attachment.veth} up"])
    if done.returncode != 0:
        raise HostrtError(f"cannot attach {attachment.veth} to {net.bridge}: {done.stderr.strip()}")
    _write_resolv_conf(container_dir / "resolv.conf")
    with leases.locked():
        (container_dir / "hosts").write_text(HOSTS_BASE + f"{attachment.address}\t{hostname}\n")
        if not net.builtin:
            _refresh_hosts(container_dir.parent, leases.read())
    return attachment.netns


def _slirp(container_dir: Path, container_id: str, hostname: str, publish: list[dict], run_dir: Path) -> str:
    """A namespace of our own connected through slirp4netns: what an unprivileged user can have."""
    path = netns_path(run_dir, container_id)
    Attachment(mode=slirp.NETWORK, network=slirp.NETWORK, address=slirp.ADDRESS, prefix=slirp.PREFIX,
               gateway=slirp.GATEWAY, netns=str(path), ports=publish).save(container_dir)  # first: prune undoes a crash
    netns.create_empty(path)
    slirp.start(path, publish, container_dir)
    failpoints.reached("net-after-slirp")
    (container_dir / "resolv.conf").write_text(f"nameserver {slirp.DNS}\n")  # slirp4netns forwards to the host's
    (container_dir / "hosts").write_text(HOSTS_BASE + f"{slirp.ADDRESS}\t{hostname}\n")
    return str(path)


def _share(container_dir: Path, ref: str, data_dir: Path, run_dir: Path) -> str:
    """`--network container:NAME`: join that container's namespace file (it must have one)."""
    from hostrt.engine.records import RecordStore

    other = RecordStore(data_dir / "containers").find(ref)
    path = netns_path(run_dir, other.id)
    if not path.exists():
        raise UsageError(f"invalid --network container:{ref}: that container has no network namespace of its own "
                         "(it uses host or none)")
    Attachment(mode="container", netns=str(path)).save(container_dir)
    other_dir = data_dir / "containers" / other.id
    for name in ("hosts", "resolv.conf"):
        if (other_dir / name).exists():
            (container_dir / name).write_text((other_dir / name).read_text())
    return str(path)


def _write_resolv_conf(path: Path) -> None:
    """The host's resolvers, minus loopback ones (a container's loopback is its own).

    HOSTRT_DNS (space-separated addresses, may be empty) replaces them, e.g. on hosts whose
    resolver containers must not use.
    """
    if "HOSTRT_DNS" in os.environ:
        path.write_text("".join(f"nameserver {ip}\n" for ip in os.environ["HOSTRT_DNS"].split()))
        return
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        lines = []
    kept = [line for line in lines
            if not (line.split()[:1] == ["nameserver"] and line.split()[1:2]
                    and (line.split()[1].startswith("127.") or line.split()[1] == "::1"))]
    path.write_text("\n".join(kept) + ("\n" if kept else ""))


def _refresh_hosts(containers_dir: Path, leases: dict[str, str]) -> None:
    """Rewrite each member's hosts file (in place: it is bind-mounted) to list all members."""
    members = {cid: read(containers_dir / cid) for cid in leases}
    lines = {cid: f"{a.address}\t{' '.join(a.names)}\n" for cid, a in members.items() if a is not None and a.address}
    for cid, entry in lines.items():
        try:
            with open(containers_dir / cid / "hosts", "w") as hosts:
                hosts.write(HOSTS_BASE + entry + "".join(line for other, line in lines.items() if other != cid))
        except OSError:
            pass  # being removed right now


def teardown(container_dir: Path, container_id: str) -> None:
    """Undo `setup` from the container's `network.json`; every step may already be done."""
    attachment = read(container_dir)
    if attachment is not None and attachment.mode == slirp.NETWORK:
        slirp.stop_recorded(container_dir)
        netns.remove(Path(attachment.netns))
        return
    if attachment is None or attachment.mode != "bridge":
        return
    release(Path(attachment.networks_dir), attachment.bridge, attachment.builtin, container_id, attachment.veth,
            Path(attachment.netns), container_dir.parent)


def release(networks_dir: Path, bridge_name: str, builtin: bool, container_id: str, veth: str, netns_file: Path,
            containers_dir: Path) -> None:
    """Delete the veth and namespace file, free the lease; the default bridge goes with its last lease."""
    bridge.delete(veth)
    netns.remove(netns_file)
    with Leases(networks_dir, bridge_name).locked() as held:
        held.pop(container_id, None)
        if builtin and not held:
            bridge.delete_bridge(bridge_name)
            nat.remove(bridge_name)
        elif not builtin:
            _refresh_hosts(containers_dir, held)

