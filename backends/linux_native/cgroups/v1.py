"""cgroup v1: one directory per hierarchy; linux.resources written through a table of
(section, key) -> (controller, file, format)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import time

from backends.linux_native.cgroups import V1_CONTROLLERS, Manager, _read_pids, _rmdir_retry, read_int, read_keyed


def _limit(value: int) -> str:
    return "-1" if value is None or value < 0 else str(value)


def _pids_max(value: int) -> str:
    return "max" if value <= 0 else str(value)


# (resources section, key) -> (controller, file, to-string). Order matters: the period
# goes in before the quota, the memory limit before memsw.
SCALARS: tuple[tuple[str, str, str, str, object], ...] = (
    ("memory", "limit", "memory", "memory.limit_in_bytes", _limit),
    ("memory", "swap", "memory", "memory.memsw.limit_in_bytes", _limit),
    ("memory", "reservation", "memory", "memory.soft_limit_in_bytes", _limit),
    ("memory", "kernel", "memory", "memory.kmem.limit_in_bytes", _limit),
    ("memory", "kernelTCP", "memory", "memory.kmem.tcp.limit_in_bytes", _limit),
    ("memory", "swappiness", "memory", "memory.swappiness", str),
    ("memory", "disableOOMKiller", "memory", "memory.oom_control", lambda v: "1" if v else "0"),
    ("cpu", "shares", "cpu", "cpu.shares", str),
    ("cpu", "period", "cpu", "cpu.cfs_period_us", str),
    ("cpu", "quota", "cpu", "cpu.cfs_quota_us", str),
    ("cpu", "realtimePeriod", "cpu", "cpu.rt_period_us", str),
    ("cpu", "realtimeRuntime", "cpu", "cpu.rt_runtime_us", str),
    ("cpu", "cpus", "cpuset", "cpuset.cpus", str),
    ("cpu", "mems", "cpuset", "cpuset.mems", str),
    ("pids", "limit", "pids", "pids.max", _pids_max),
    ("blockIO", "weight", "blkio", "blkio.weight", str),
    ("blockIO", "leafWeight", "blkio", "blkio.leaf_weight", str),
    ("network", "classID", "net_cls", "net_cls.classid", str),
)

# blockIO per-device lists -> (file, value key)
BLKIO_DEVICE_LISTS: dict[str, tuple[str, str]] = {
    "weightDevice": ("blkio.weight_device", "weight"),
    "leafWeightDevice": ("blkio.leaf_weight_device", "leafWeight"),
    "throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rate"),
    "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "rate"),
    "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "rate"),
    "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "rate"),
}


_HIERARCHIES: dict[str, str] | None = None
UNIFIED = "unified"  # the key of a hybrid host's cgroup2 directory in V1Manager.paths


def mounted_hierarchies() -> dict[str, str]:
    """controller (or name=X) -> mount point, from /proc/self/mountinfo, read once per
    process: the kernel takes about a millisecond to render that file, and create needs
    it twice (the cgroup paths, then the container's /sys/fs/cgroup binds). A hybrid
    host's cgroup2 mount is under UNIFIED."""
    global _HIERARCHIES
    if _HIERARCHIES is None:
        _HIERARCHIES = _read_hierarchies()
    return dict(_HIERARCHIES)


def _read_hierarchies() -> dict[str, str]:
    found: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _source, superopts = right.split()[:3]
            if fstype == "cgroup2":
                found.setdefault(UNIFIED, left.split()[4])
            if fstype != "cgroup":
                continue
            mountpoint = left.split()[4]
            for opt in superopts.split(","):
                if opt in V1_CONTROLLERS or opt.startswith("name="):
                    found.setdefault(opt, mountpoint)
    return found


def own_cgroups() -> dict[str, str]:
    """controller -> this process's cgroup path, from /proc/self/cgroup."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            for c in controllers.split(","):
                if c:
                    own[c] = path
            if hierarchy == "0" and not controllers:
                own[UNIFIED] = path
    return own


class V1Manager(Manager):
    """The v1 controllers, and on a hybrid host the container's own cgroup2 directory too
    (paths[UNIFIED]): the processes move there as well, so the device program attached to
    it holds beside the devices controller (or in its place when v1 has none)."""

    version = 1

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths  # controller (or UNIFIED) -> absolute directory

    @classmethod
    def for_path(cls, path: str) -> "V1Manager":
        hierarchies = mounted_hierarchies()
        own = own_cgroups() if not path.startswith("/") else {}
        paths = {}
        for controller, mountpoint in hierarchies.items():
            inner = path if path.startswith("/") else os.path.join(own.get(controller, "/"), path)
            paths[controller] = os.path.normpath(mountpoint + "/" + inner.lstrip("/"))
        return cls(paths)

    def describe(self) -> dict:
        return {"version": 1, "paths": self.paths}

    def _dir(self, controller: str) -> str | None:
        return self.paths.get(controller)

    def apply(self, pid: int) -> None:
        for controller, path in self.paths.items():
            if not os.path.isdir(path):
                if controller == "cpuset":
                    _make_cpuset(path)
                else:
                    os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def create(self) -> None:
        for controller, path in self.paths.items():
            if controller == "cpuset":
                _make_cpuset(path)
            else:
                os.makedirs(path, exist_ok=True)

    def _write(self, controller: str, name: str, value: str) -> None:
        path = self._dir(controller)
        if path is None:
            raise OSError(2, f"cgroup controller {controller} is not mounted", controller)
        with open(os.path.join(path, name), "w") as f:
            f.write(value)

    def set(self, resources: dict) -> None:
        from backends.linux_native.log import LOG

        memory = resources.get("memory") or {}
        for section, key, controller, name, fmt in SCALARS:
            value = (resources.get(section) or {}).get(key)
            if value is None or (section == "cpu" and value == "" and key in ("cpus", "mems")):
                continue
            try:
                self._write(controller, name, fmt(value))  # type: ignore[operator]
            except OSError as exc:
                if name == "blkio.weight" and exc.errno in (2, 13):
                    # BFQ-only kernels name it blkio.bfq.weight (CFQ is gone since 5.0).
                    self._write(controller, "blkio.bfq.weight", fmt(value))  # type: ignore[operator]
                    continue
                if key in ("kernel", "kernelTCP") and exc.errno in (95, 22, 2):
                    LOG.warning(f"{name} not supported by this kernel, ignored")
                    continue
                if key == "limit" and section == "memory" and memory.get("swap") is not None:
                    # Raising the limit above the old memsw limit: memsw first, then the limit.
                    self._write("memory", "memory.memsw.limit_in_bytes", _limit(memory["swap"]))
                    self._write(controller, name, fmt(value))  # type: ignore[operator]
                    continue
                raise OSError(exc.errno, f"cgroup {name}={value}: {exc.strerror}") from None
        blockio = resources.get("blockIO") or {}
        for key, (name, value_key) in BLKIO_DEVICE_LISTS.items():
            for dev in blockio.get(key) or ():
                if dev.get(value_key) is not None:
                    self._write("blkio", name, f"{dev['major']}:{dev['minor']} {dev[value_key]}")
        for limit in resources.get("hugepageLimits") or ():
            self._write("hugetlb", f"hugetlb.{limit['pageSize']}.limit_in_bytes", str(limit["limit"]))
        for prio in (resources.get("network") or {}).get("priorities") or ():
            self._write("net_prio", "net_prio.ifpriomap", f"{prio['name']} {prio['priority']}")
        if resources.get("devices") is not None:
            self.set_devices(resources["devices"])

    def set_devices(self, rules: list[dict]) -> None:
        """The spec's device rules then the defaults, after a deny-all unless the spec
        starts with its own all-devices rule (device_rules.py): into the devices controller,
        and as a device program on the hybrid host's cgroup2 directory."""
        from backends.linux_native.cgroups import device_rules

        parsed = device_rules.container_rules(rules)
        if "devices" in self.paths:
            lines = [(rule[0], _device_line(rule)) for rule in parsed if rule[4]]  # an empty access changes nothing
            if not parsed or not _resets(parsed[0]):
                lines.insert(0, (False, "a"))
            files = {allow: os.open(os.path.join(self.paths["devices"], name), os.O_WRONLY | os.O_CLOEXEC)
                     for allow, name in ((True, "devices.allow"), (False, "devices.deny"))}
            try:
                for allow, line in lines:  # one write per rule: the kernel takes one rule per write
                    try:
                        os.write(files[allow], line.encode())
                    except OSError as exc:
                        raise OSError(exc.errno, f"cgroup devices rule {line!r}: {exc.strerror}") from None
            finally:
                for fd in files.values():
                    os.close(fd)
        if UNIFIED in self.paths:
            from backends.linux_native.cgroups import devices_bpf

            try:
                devices_bpf.install(self.paths[UNIFIED], parsed)
            except OSError as exc:
                if "devices" not in self.paths:
                    raise
                from backends.linux_native.log import LOG

                LOG.warning(f"{exc.strerror}; the devices controller still holds")

    def _freezer(self, state: str) -> None:
        self._write("freezer", "freezer.state", state)
        for _ in range(1000):
            if self._freezer_state() == state:
                return
            time.sleep(0.001)
            self._write("freezer", "freezer.state", state)

    def _freezer_state(self) -> str:
        path = self._dir("freezer")
        if path is None:
            return "THAWED"
        try:
            with open(os.path.join(path, "freezer.state")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return "THAWED"

    def freeze(self) -> None:
        self._freezer("FROZEN")

    def thaw(self) -> None:
        self._freezer("THAWED")

    def is_frozen(self) -> bool:
        return self._freezer_state() == "FROZEN"

    def pids(self) -> list[int]:
        for controller in ("pids", "freezer", "memory", "cpu", "devices"):
            if controller in self.paths:
                return _read_pids(os.path.join(self.paths[controller], "cgroup.procs"))
        return []

    def oom_kills(self) -> int:
        return read_keyed(os.path.join(self._dir("memory") or "/nonexistent", "memory.oom_control"), "oom_kill")

    def watch_oom(self):
        from backends.linux_native.cgroups.oom import EventfdOomWatch

        memory = self._dir("memory")
        return EventfdOomWatch(memory) if memory else None

    def stats(self) -> dict:
        def read(controller: str, name: str) -> int | None:
            path = self._dir(controller)
            return read_int(os.path.join(path, name)) if path else None

        return {
            "cpu": {"usage": {"total": read("cpuacct", "cpuacct.usage")}},
            "memory": {
                "usage": {
                    "usage": read("memory", "memory.usage_in_bytes"), "max": read("memory", "memory.max_usage_in_bytes"),
                    "limit": read("memory", "memory.limit_in_bytes"), "failcnt": read("memory", "memory.failcnt"),
                },
                "oom_kill": self.oom_kills(),
            },
            "pids": {"current": read("pids", "pids.current"), "limit": read("pids", "pids.max")},
        }

    def destroy(self) -> None:
        for path in self.paths.values():
            _rmdir_retry(path)  # the cgroup2 directory's device program goes with it

    def mount_sources(self) -> list[tuple[str, str]]:
        hierarchies = mounted_hierarchies()
        by_mount: dict[str, str] = {}
        for controller, mountpoint in hierarchies.items():
            if controller in self.paths and controller != UNIFIED:  # as runc: the v1 hierarchies only
                by_mount[mountpoint] = self.paths[controller]
        return [(path, os.path.basename(mountpoint)) for mountpoint, path in by_mount.items()]


def _resets(rule: tuple) -> bool:
    """A rule v1 takes as `a`: every device, the whole list replaced."""
    return rule[1] == "a" and rule[2] < 0 and rule[3] < 0


def _device_line(rule: tuple) -> str:
    """A parsed rule (device_rules.Rule) in devices.allow / devices.deny syntax."""
    _allow, kind, major, minor, access = rule
    if _resets(rule):
        return "a"
    letters = "".join(letter for bit, letter in ((2, "r"), (4, "w"), (1, "m")) if access & bit)
    return f"{kind} {'*' if major < 0 else major}:{'*' if minor < 0 else minor} {letters}"


def _make_cpuset(path: str) -> None:
    """Create a cpuset cgroup, copying cpus/mems down from the parent: v1 leaves them empty
    and then refuses every task."""
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        _make_cpuset(parent)
    try:
        os.mkdir(path)
    except FileExistsError:
        return
    for name in ("cpuset.cpus", "cpuset.mems"):
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(os.path.join(path, name), "w") as f:
            f.write(value)
