"""config.json -> typed objects, once (runc's specconv idea): nothing downstream reads the
raw JSON, except the resources and seccomp sections whose own modules parse them."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native import jsonio
from backends.linux_native.errors import ConfigError


class User:
    __slots__ = ("uid", "gid", "umask", "additional_gids")

    def __init__(self, raw: dict) -> None:
        self.uid: int = int(raw.get("uid", 0))
        self.gid: int = int(raw.get("gid", 0))
        self.umask: int | None = raw.get("umask")
        self.additional_gids: list[int] = [int(g) for g in raw.get("additionalGids") or ()]


class Process:
    __slots__ = (
        "terminal", "console_size", "user", "args", "env", "cwd", "capabilities", "rlimits",
        "no_new_privileges", "oom_score_adj", "apparmor", "selinux",
    )

    def __init__(self, raw: dict) -> None:
        self.terminal: bool = bool(raw.get("terminal", False))
        size = raw.get("consoleSize") or {}
        self.console_size: tuple[int, int] | None = (size.get("height", 0), size.get("width", 0)) if size else None
        self.user = User(raw.get("user") or {})
        self.args: list[str] = list(raw.get("args") or ())
        self.env: list[str] = list(raw.get("env") or ())
        self.cwd: str = raw.get("cwd") or "/"
        caps = raw.get("capabilities")
        # None means "leave the capabilities alone" (no capabilities section at all).
        self.capabilities: dict[str, list[str]] | None = (
            {k: list(caps.get(k) or ()) for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
            if caps is not None
            else None
        )
        self.rlimits: list[tuple[str, int, int]] = [
            (r["type"], int(r.get("soft", 0)), int(r.get("hard", 0))) for r in raw.get("rlimits") or ()
        ]
        self.no_new_privileges: bool = bool(raw.get("noNewPrivileges", False))
        self.oom_score_adj: int | None = raw.get("oomScoreAdj")
        self.apparmor: str = raw.get("apparmorProfile") or ""
        self.selinux: str = raw.get("selinuxLabel") or ""
        if not self.args:
            raise ConfigError("process.args must not be empty")
        if not os.path.isabs(self.cwd):
            raise ConfigError(f"process.cwd must be an absolute path: {self.cwd!r}")


class Mount:
    __slots__ = ("destination", "type", "source", "options")

    def __init__(self, raw: dict) -> None:
        self.destination: str = raw["destination"]
        self.type: str = raw.get("type") or ""
        self.source: str = raw.get("source") or ""
        self.options: list[str] = list(raw.get("options") or ())


class Hook:
    __slots__ = ("path", "args", "env", "timeout")

    def __init__(self, raw: dict) -> None:
        self.path: str = raw["path"]
        self.args: list[str] = list(raw.get("args") or (self.path,))
        self.env: list[str] = list(raw.get("env") or ())
        self.timeout: int | None = raw.get("timeout")


class IDMap:
    __slots__ = ("container_id", "host_id", "size")

    def __init__(self, raw: dict) -> None:
        self.container_id = int(raw["containerID"])
        self.host_id = int(raw["hostID"])
        self.size = int(raw["size"])


class Device:
    __slots__ = ("path", "type", "major", "minor", "mode", "uid", "gid")

    def __init__(self, raw: dict) -> None:
        self.path: str = raw["path"]
        self.type: str = raw.get("type", "c")
        self.major: int = int(raw.get("major", 0))
        self.minor: int = int(raw.get("minor", 0))
        self.mode: int | None = raw.get("fileMode")
        self.uid: int | None = raw.get("uid")
        self.gid: int | None = raw.get("gid")


HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")


class Spec:
    __slots__ = (
        "raw", "oci_version", "bundle", "root_path", "root_readonly", "process", "hostname",
        "domainname", "mounts", "hooks", "annotations", "namespaces", "uid_mappings",
        "gid_mappings", "devices", "cgroups_path", "resources", "sysctl", "masked_paths",
        "readonly_paths", "rootfs_propagation", "seccomp", "personality",
    )

    def __init__(self, raw: dict, bundle: str) -> None:
        self.raw = raw
        self.bundle = bundle
        self.oci_version: str = raw.get("ociVersion", "")
        root = raw.get("root") or {}
        path = root.get("path") or "rootfs"
        self.root_path: str = os.path.normpath(os.path.join(bundle, path))
        self.root_readonly: bool = bool(root.get("readonly", False))
        self.process: Process | None = Process(raw["process"]) if raw.get("process") else None
        self.hostname: str | None = raw.get("hostname")
        self.domainname: str | None = raw.get("domainname")
        self.mounts = [Mount(m) for m in raw.get("mounts") or ()]
        hooks = raw.get("hooks") or {}
        self.hooks: dict[str, list[Hook]] = {k: [Hook(h) for h in hooks.get(k) or ()] for k in HOOK_KINDS}
        self.annotations: dict[str, str] = raw.get("annotations") or {}
        linux = raw.get("linux") or {}
        self.namespaces: dict[str, str] = {}
        for ns in linux.get("namespaces") or ():
            if ns["type"] in self.namespaces:
                raise ConfigError(f"namespace {ns['type']} listed twice")
            self.namespaces[ns["type"]] = ns.get("path") or ""
        self.uid_mappings = [IDMap(m) for m in linux.get("uidMappings") or ()]
        self.gid_mappings = [IDMap(m) for m in linux.get("gidMappings") or ()]
        self.devices = [Device(d) for d in linux.get("devices") or ()]
        self.cgroups_path: str = linux.get("cgroupsPath") or ""
        self.resources: dict = linux.get("resources") or {}
        self.sysctl: dict[str, str] = linux.get("sysctl") or {}
        self.masked_paths: list[str] = list(linux.get("maskedPaths") or ())
        self.readonly_paths: list[str] = list(linux.get("readonlyPaths") or ())
        self.rootfs_propagation: str = linux.get("rootfsPropagation") or ""
        self.seccomp: dict | None = linux.get("seccomp")
        self.personality: dict | None = linux.get("personality")
        self._validate()

    def _validate(self) -> None:
        from backends.linux_native.tables import NAMESPACES

        for kind, path in self.namespaces.items():
            if kind not in NAMESPACES:
                raise ConfigError(f"unknown namespace type {kind!r}")
        if "user" in self.namespaces and not self.namespaces["user"] and not self.uid_mappings:
            raise ConfigError("a new user namespace needs uidMappings and gidMappings")
        if (self.uid_mappings or self.gid_mappings) and "user" not in self.namespaces:
            raise ConfigError("uidMappings/gidMappings need a user namespace")
        if self.sysctl and "network" not in self.namespaces:
            for key in self.sysctl:
                if key.startswith("net."):
                    raise ConfigError(f"sysctl {key} needs a private network namespace")
        if self.hostname and "uts" not in self.namespaces:
            raise ConfigError("hostname needs a private uts namespace")
        if not os.path.isdir(self.root_path):
            raise ConfigError(f"root.path {self.root_path} is not a directory")


def load(bundle: str) -> Spec:
    """Read and check BUNDLE/config.json."""
    bundle = os.path.abspath(bundle)
    path = os.path.join(bundle, "config.json")
    try:
        raw = jsonio.load_file(path)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a JSON object")
    try:
        return Spec(raw, bundle)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: bad or missing field {exc}") from None
