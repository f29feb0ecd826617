"""cgroup v2: one directory; controllers enabled down the tree through
cgroup.subtree_control; linux.resources converted to the unified files, and the device
rules to a device program attached to the directory (devices_bpf.py)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import time

from backends.linux_native.cgroups import Manager, _read_pids, _rmdir_retry, read_int, read_keyed

ROOT = "/sys/fs/cgroup"


def _max(value: int | None) -> str:
    return "max" if value is None or value < 0 else str(value)


def _shares_to_weight(shares: int) -> str:
    # The conversion runc and crun agree on: [2, 262144] -> [1, 10000].
    return str(1 + ((shares - 2) * 9999) // 262142) if shares else "100"


def _blkio_to_io_weight(weight: int) -> int:
    # The conversion runc and crun agree on: [10, 1000] -> [1, 10000].
    return 1 + ((weight - 10) * 9999) // 990


class V2Manager(Manager):
    version = 2

    def __init__(self, path: str, root: str = ROOT) -> None:
        self.path = path
        self.root = root

    @classmethod
    def for_path(cls, path: str, root: str = ROOT) -> "V2Manager":
        """ROOT is the cgroup2 mount (another one than /sys/fs/cgroup only in tests)."""
        return cls(os.path.normpath(root + "/" + path.lstrip("/")), root)

    def describe(self) -> dict:
        return {"version": 2, "path": self.path, "root": self.root}

    def _enable_controllers(self) -> None:
        with open(os.path.join(self.root, "cgroup.controllers")) as f:
            available = f.read().split()
        rel = os.path.relpath(self.path, self.root)
        current = self.root
        for part in rel.split("/"):
            if available:
                try:
                    with open(os.path.join(current, "cgroup.subtree_control"), "w") as f:
                        f.write(" ".join("+" + c for c in available))
                except OSError:
                    pass  # a parent with processes in it cannot delegate; limits there are lost
            current = os.path.join(current, part)
            os.makedirs(current, exist_ok=True)

    def create(self) -> None:
        self._enable_controllers()

    def apply(self, pid: int) -> None:
        if not os.path.isdir(self.path):
            self._enable_controllers()
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def set(self, resources: dict) -> None:
        memory = resources.get("memory") or {}
        cpu = resources.get("cpu") or {}
        writes: list[tuple[str, str]] = []
        if memory.get("limit") is not None:
            writes.append(("memory.max", _max(memory["limit"])))
        if memory.get("reservation") is not None:
            writes.append(("memory.low", _max(memory["reservation"])))
        if memory.get("swap") is not None:
            swap, limit = memory["swap"], memory.get("limit")
            writes.append(("memory.swap.max", _max(swap if swap < 0 or limit is None or limit < 0 else swap - limit)))
        if memory.get("disableOOMKiller"):
            writes.append(("memory.oom.group", "0"))
        if cpu.get("shares"):
            writes.append(("cpu.weight", _shares_to_weight(cpu["shares"])))
        if cpu.get("quota") is not None or cpu.get("period") is not None:
            writes.append(("cpu.max", self._cpu_max(cpu.get("quota"), cpu.get("period"))))
        if cpu.get("cpus"):
            writes.append(("cpuset.cpus", cpu["cpus"]))
        if cpu.get("mems"):
            writes.append(("cpuset.mems", cpu["mems"]))
        pids = resources.get("pids") or {}
        if pids.get("limit") is not None:
            writes.append(("pids.max", "max" if pids["limit"] <= 0 else str(pids["limit"])))
        writes += self._io_weights(resources.get("blockIO") or {})
        blockio = resources.get("blockIO") or {}
        for key, field in (
            ("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
            ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops"),
        ):
            for dev in blockio.get(key) or ():
                writes.append(("io.max", f"{dev['major']}:{dev['minor']} {field}={dev['rate']}"))
        for limit in resources.get("hugepageLimits") or ():
            writes.append((f"hugetlb.{limit['pageSize']}.max", str(limit["limit"])))
        for name, value in (resources.get("unified") or {}).items():
            writes.append((name, value))
        for name, value in writes:
            try:
                self._write(name, value)
            except OSError as exc:
                raise OSError(exc.errno, f"cgroup {name}={value}: {exc.strerror}") from None
        if resources.get("devices") is not None:
            self.set_devices(resources["devices"])

    def _cpu_max(self, quota: int | None, period: int | None) -> str:
        """cpu.max holds both halves v1 keeps in two files: a quota alone is written alone
        (the kernel keeps the period), a period alone with the quota in force, so an update
        of one never lifts or resets the other."""
        if period is None:
            return _max(quota)
        if quota is None:
            try:
                with open(os.path.join(self.path, "cpu.max")) as f:
                    return f"{f.read().split()[0]} {period}"
            except (OSError, IndexError):
                return f"max {period}"
        return f"{_max(quota)} {period}"

    def _io_weights(self, blockio: dict) -> list[tuple[str, str]]:
        """blockIO.weight and weightDevice (v1's blkio scale, 10-1000) as runc and crun write
        them: unchanged into io.bfq.weight where the BFQ scheduler offers it, else converted
        to io.weight's scale (1-10000)."""
        bfq = os.path.exists(os.path.join(self.path, "io.bfq.weight"))
        name = "io.bfq.weight" if bfq else "io.weight"
        scale = (lambda w: w) if bfq else _blkio_to_io_weight
        writes = []
        if blockio.get("weight"):
            writes.append((name, str(scale(blockio["weight"]))))
        for dev in blockio.get("weightDevice") or ():
            if dev.get("weight"):
                writes.append((name, f"{dev['major']}:{dev['minor']} {scale(dev['weight'])}"))
        return writes

    def set_devices(self, rules: list[dict]) -> None:
        """v2 has no devices controller: the spec's rules then the defaults
        (device_rules.py) become the cgroup's device program, in place of the old one."""
        from backends.linux_native.cgroups import device_rules, devices_bpf

        try:
            devices_bpf.install(self.path, device_rules.container_rules(rules))
        except PermissionError:
            if not _in_user_namespace():
                raise
            from backends.linux_native.log import LOG  # as runc: bpf(2) is root's, not a user namespace's

            LOG.warning("device rules not enforced: no bpf(2) in a user namespace")

    def _frozen_event(self) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.events")) as f:
                return "frozen 1" in f.read()
        except FileNotFoundError:
            return False

    def freeze(self) -> None:
        self._write("cgroup.freeze", "1")
        for _ in range(1000):
            if self._frozen_event():
                return
            time.sleep(0.001)

    def thaw(self) -> None:
        self._write("cgroup.freeze", "0")

    def is_frozen(self) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except FileNotFoundError:
            return False

    def pids(self) -> list[int]:
        return _read_pids(os.path.join(self.path, "cgroup.procs"))

    def oom_kills(self) -> int:
        return read_keyed(os.path.join(self.path, "memory.events"), "oom_kill")

    def watch_oom(self):
        from backends.linux_native.cgroups.oom import EventsFileOomWatch

        if not os.path.exists(os.path.join(self.path, "memory.events")):
            return None
        return EventsFileOomWatch(self.path)

    def stats(self) -> dict:
        def read(name: str) -> int | None:
            return read_int(os.path.join(self.path, name))

        usage_usec = read_keyed(os.path.join(self.path, "cpu.stat"), "usage_usec")
        return {
            "cpu": {"usage": {"total": usage_usec * 1000}},
            "memory": {
                "usage": {
                    "usage": read("memory.current"), "max": read("memory.peak"), "limit": read("memory.max"),
                    "failcnt": read_keyed(os.path.join(self.path, "memory.events"), "max"),
                },
                "oom_kill": self.oom_kills(),
            },
            "pids": {"current": read("pids.current"), "limit": read("pids.max")},
        }

    def destroy(self) -> None:
        if os.path.exists(os.path.join(self.path, "cgroup.kill")):
            try:
                self._write("cgroup.kill", "1")
            except OSError:
                pass
        _rmdir_retry(self.path)  # its device program goes with it

    def mount_sources(self) -> list[tuple[str, str]]:
        return [(self.path, "")]


def _in_user_namespace() -> bool:
    """Whether this process's uids are mapped (a rootless runtime), rather than the host's."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False
