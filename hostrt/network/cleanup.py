"""What `system prune` removes for networking after a crash: whatever no container record owns.

Three places can hold leftovers of a container whose record is gone (a hostrt killed in
the middle of `run` or `rm`): its `network.json` in an orphaned container directory, a
namespace file under the run directory, a lease. Each is traced back to a container id;
an id with no record is released (veth, namespace, lease, and a default bridge and its
NAT rule once it has no lease left). Whether an id has a record is asked when it is about
to be released, under that container's lock (`unowned`): a `run` may create one meanwhile.
As Docker's `system prune`, user networks no container uses go too (`remove_unused`).
Everything removed is found through this root's own records and marked bridges.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from hostrt.engine.ids import ID_PATTERN

from hostrt.network import attach, bridge, nat, netns, occupied
from hostrt.network.ipam import Leases
from hostrt.network.networks import Network, NetworkStore

LEASES_SUFFIX = ".leases.json"


def prune(data_dir: Path, run_dir: Path, unowned: Callable[[str], AbstractContextManager[bool]]) -> list[str]:
    """Release every network resource whose container has no record; what was removed.
    `unowned(id)` holds that container for its block and says whether it has no record."""
    containers = data_dir / "containers"
    store = NetworkStore(data_dir / "networks")
    removed: list[str] = []
    for directory in containers.glob("*"):
        if ID_PATTERN.match(directory.name) and (directory / attach.NETWORK_FILE).exists():
            with unowned(directory.name) as free:
                if free:
                    attach.teardown(directory, directory.name)
                    (directory / attach.NETWORK_FILE).unlink(missing_ok=True)
                    removed.append(f"network of {directory.name[:12]}")
    user_bridges = {n.bridge for n in store.all() if not n.builtin}
    for lease_file in store.directory.glob("*" + LEASES_SUFFIX):
        name = lease_file.name[:-len(LEASES_SUFFIX)]
        builtin = name not in user_bridges  # a default bridge, of these or of earlier settings
        for container_id in Leases(store.directory, name).read():
            with unowned(container_id) as free:
                if free:
                    attach.release(store.directory, name, builtin, container_id, attach.veth_name(container_id),
                                   attach.netns_path(run_dir, container_id), containers)
                    removed.append(f"lease of {container_id[:12]} on {name}")
        if builtin and bridge.exists(name):
            with Leases(store.directory, name).locked() as held:
                if not held:
                    bridge.delete_bridge(name)
                    nat.remove(name)
                    removed.append(f"bridge {name}")
    for path in (run_dir / "netns").glob("*"):
        with unowned(path.name) as free:
            if free:
                bridge.delete(attach.veth_name(path.name))
                netns.remove(path)
                removed.append(f"network namespace {path.name[:12]}")
    for network in store.all():
        if not network.builtin and remove_unused(store, network):
            removed.append(f"network {network.name}")
    return removed


def remove_unused(store: NetworkStore, network: Network) -> bool:
    """Remove a user network, its bridge and NAT rule, unless a container holds an address on it.
    Under the host lock: a `network create` holds it until its bridge exists."""
    with occupied.host_lock(), Leases(store.directory, network.bridge).locked() as held:
        if held:
            return False
        bridge.delete_bridge(network.bridge)
        nat.remove(network.bridge)
        store.remove(network.name)
    for leftover in (f"{network.bridge}.leases.json", f"{network.bridge}.lock"):
        (store.directory / leftover).unlink(missing_ok=True)
    return True
