"""The one place that knows a container's saved state: ROOT/ID/state.json plus the
exec.fifo that holds `create` and `start` apart. Status is derived, not stored: a
process that died is "stopped" whatever the file says."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import time

from backends.linux_native import OCI_VERSION, jsonio
from backends.linux_native.errors import ContainerNotFound, UsageError

FIFO = "exec.fifo"
STATE = "state.json"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")


def check_id(container_id: str) -> str:
    if not container_id or container_id in (".", "..") or not set(container_id) <= _ID_CHARS:
        raise UsageError(f"invalid container id: {container_id!r}")
    return container_id


def process_start_time(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of PID, None if it does not exist; the
    start time tells a recycled PID from our container's init."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


class Container:
    """A container's saved record plus the derived status."""

    def __init__(self, root: str, container_id: str, data: dict) -> None:
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data

    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    @property
    def bundle(self) -> str:
        return self.data.get("bundle", "")

    @property
    def config(self) -> dict:
        return self.data.get("config") or {}

    def alive(self) -> bool:
        if not self.pid:
            return False
        found = process_start_time(self.pid)
        return found is not None and found[0] not in "ZX" and found[1] == self.data.get("pid_start")

    def status(self) -> str:
        if not self.alive():
            return "stopped" if self.pid else "creating"
        if os.path.exists(os.path.join(self.dir, FIFO)):
            return "created"
        from backends.linux_native.cgroups import manager_for

        if manager_for(self.data.get("cgroup") or {}).is_frozen():
            return "paused"
        return "running"

    def oci_state(self) -> dict:
        """The runtime-spec state object (plus runc's rootfs/created/owner)."""
        status = self.status()
        state = {
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": self.pid if status != "stopped" else 0,
            "bundle": self.bundle,
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": "",
        }
        if self.data.get("annotations"):
            state["annotations"] = self.data["annotations"]
        return state

    def save(self) -> None:
        jsonio.write_atomic(os.path.join(self.dir, STATE), self.data)


def load(root: str, container_id: str) -> Container:
    check_id(container_id)
    try:
        data = jsonio.load_file(os.path.join(root, container_id, STATE))
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.isdir(os.path.join(root, container_id)):
            raise ContainerNotFound(container_id) from None
        data = {"id": container_id}  # a create killed before it saved: as below
    except ValueError:
        # A create that died half-way; treat as an empty, stopped record so delete can clean it.
        data = {"id": container_id}
    return Container(root, container_id, data)  # type: ignore[arg-type]


def new(root: str, container_id: str) -> Container:
    """Reserve ROOT/ID atomically (mkdir), so two creates of one id cannot both win."""
    from backends.linux_native.errors import ContainerExists

    check_id(container_id)
    os.makedirs(root, mode=0o700, exist_ok=True)  # as runc: only its owner may reach the state
    path = os.path.join(root, container_id)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        raise ContainerExists(container_id) from None
    return Container(root, container_id, {"id": container_id, "created": now_rfc3339()})


def list_ids(root: str) -> list[str]:
    try:
        return sorted(e for e in os.listdir(root) if os.path.isfile(os.path.join(root, e, STATE)))
    except FileNotFoundError:
        return []


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
