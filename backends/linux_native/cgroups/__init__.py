"""Cgroups behind one interface: callers ask a Manager to apply, set, freeze, list and
destroy, and never which cgroup version the host runs (v1, v2, or this machine's hybrid
of v1 controllers beside an empty cgroup2, which is driven as v1)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import time

V1_CONTROLLERS = frozenset(
    "cpu cpuacct cpuset memory devices freezer blkio pids hugetlb net_cls net_prio perf_event rdma misc".split()
)


class Manager:
    """What the lifecycle operations need from a cgroup, whatever its version."""

    version = 0

    def create(self) -> None:
        """Make the cgroup(s), empty."""

    def apply(self, pid: int) -> None:
        """Create the cgroup(s) if needed and move PID in."""

    def set(self, resources: dict) -> None:
        """Write linux.resources (runtime-spec shape) into the controllers."""

    def freeze(self) -> None: ...

    def thaw(self) -> None: ...

    def is_frozen(self) -> bool:
        return False

    def pids(self) -> list[int]:
        return []

    def oom_kills(self) -> int:
        return 0

    def watch_oom(self):
        """An OomWatch (cgroups/oom.py) for this cgroup, or None without a memory controller."""
        return None

    def stats(self) -> dict:
        """runc's `events --stats` data: cpu, memory (plus our oom_kill count), pids."""
        return {}

    def destroy(self) -> None: ...

    def describe(self) -> dict:
        """What state.json keeps to rebuild this manager later."""
        return {}

    def mount_sources(self) -> list[tuple[str, str]]:
        """(host directory, name under /sys/fs/cgroup) pairs to bind into the container."""
        return []


class NoCgroup(Manager):
    """A rootless container without a cgroup (no tree delegated to the user): its processes
    are those of its PID namespace, recorded by the namespace's identity so a reused init
    pid never stands for it. Freezing needs a cgroup and is refused."""

    def __init__(self, init_pid: int = 0, pidns: str = "") -> None:
        self.init_pid, self.pidns = init_pid, pidns

    def started(self, pid: int) -> None:
        self.init_pid = pid
        try:
            self.pidns = os.readlink(f"/proc/{pid}/ns/pid")
        except OSError:
            self.pidns = ""

    def freeze(self) -> None:
        from backends.linux_native.errors import RuntimeFailure

        raise RuntimeFailure("pause needs a cgroup: this rootless container has none (no cgroup v2 tree is delegated to the user)")

    def pids(self) -> list[int]:
        if not self.pidns:
            return []
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.readlink(f"/proc/{name}/ns/pid") == self.pidns:
                        found.append(int(name))
                except OSError:
                    continue
        return found

    def describe(self) -> dict:
        return {"version": 0, "init": self.init_pid, "pidns": self.pidns}


def read_int(path: str) -> int | None:
    """A one-number cgroup file ("max" reads as None); None if absent."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


def _read_pids(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def read_keyed(path: str, key: str) -> int:
    """One counter of a flat-keyed cgroup file (`memory.oom_control`, `memory.events`); 0 if absent."""
    try:
        with open(path) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    except FileNotFoundError:
        pass
    return 0


def _rmdir_retry(path: str) -> None:
    """rmdir a cgroup; the kernel returns EBUSY for a moment after its last task exits."""
    for _ in range(500):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != 16:  # EBUSY
                raise
            time.sleep(0.002)  # v1 offers no notification of a cgroup becoming empty


def host_mode() -> str:
    """'v2' when /sys/fs/cgroup itself is cgroup2, else 'v1' (including hybrid)."""
    try:
        st = os.statvfs("/sys/fs/cgroup")
    except OSError:
        return "none"
    # f_type is not in statvfs; cgroup.controllers exists only at a cgroup2 root.
    del st
    return "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "v1"


def default_path(container_id: str) -> str:
    return f"hostrt-runtime/{container_id}"


def create_manager(cgroups_path: str, container_id: str, resources: dict | None = None) -> Manager:
    """A manager for a new container (nothing is created until apply). Rootless (in a user
    namespace an ordinary user owns) only the cgroupsPath the caller chose is used, in a
    tree delegated to that user; without one the container has no cgroup, and limits in
    RESOURCES are refused, naming them."""
    from backends.linux_native import namespaces

    if namespaces.rootless() and not cgroups_path:
        asked = [key for key in ("memory", "cpu", "pids", "blockIO", "hugepageLimits", "unified") if (resources or {}).get(key)]
        if asked:
            from backends.linux_native.errors import RuntimeFailure

            raise RuntimeFailure(f"rootless without a cgroupsPath: cannot apply linux.resources {', '.join(asked)}")
        return NoCgroup()
    path = cgroups_path or default_path(container_id)
    if ":" in path and not path.startswith("/"):
        # systemd's "slice:prefix:name" form, driven through cgroupfs.
        slice_, prefix, name = (path.split(":") + ["", ""])[:3]
        path = "/" + "/".join(p for p in (slice_, f"{prefix}-{name}" if prefix else name) if p)
    mode = host_mode()
    if mode == "v2":
        from backends.linux_native.cgroups.v2 import V2Manager

        return V2Manager.for_path(path)
    if mode == "v1":
        from backends.linux_native.cgroups.v1 import V1Manager

        return V1Manager.for_path(path)
    return Manager()


def manager_for(saved: dict) -> Manager:
    """Rebuild the manager recorded in state.json."""
    version = saved.get("version")
    if version == 1:
        from backends.linux_native.cgroups.v1 import V1Manager

        return V1Manager(saved["paths"])
    if version == 2:
        from backends.linux_native.cgroups.v2 import V2Manager

        return V2Manager(saved["path"], saved.get("root", "/sys/fs/cgroup"))
    if "pidns" in saved:
        return NoCgroup(int(saved.get("init") or 0), str(saved["pidns"]))
    return Manager()
