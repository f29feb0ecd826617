"""The sync pipes between the runtime process and its children (intermediate, init, exec
process): one line per message child -> parent, one line per answer parent -> child.
Both ends are close-on-exec, so a successful execve shows up as EOF."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)

from backends.linux_native.errors import RuntimeFailure


class Channel:
    def __init__(self) -> None:
        self.up_r, self.up_w = os.pipe()
        self.down_r, self.down_w = os.pipe()
        self._buf = b""  # parent side: read past the last full line
        self._down_buf = b""  # child side: the same, for answers sent back to back

    # --- child side ---
    def child_side(self) -> None:
        os.close(self.up_r)
        os.close(self.down_w)

    def send(self, kind: str, payload: str = "") -> None:
        line = f"{kind} {payload}".replace("\n", " ")[:3800] + "\n"
        os.write(self.up_w, line.encode())

    def wait(self) -> str:
        """Block for the parent's next answer line; exit quietly if the parent is gone."""
        while b"\n" not in self._down_buf:
            chunk = os.read(self.down_r, 65536)
            if not chunk:
                os._exit(1)
            self._down_buf += chunk
        line, _, self._down_buf = self._down_buf.partition(b"\n")
        return line.decode()

    # --- parent side ---
    def parent_side(self) -> None:
        os.close(self.up_w)
        os.close(self.down_r)

    def recv(self) -> tuple[str, str]:
        """Next (kind, payload); ("eof", "") once every child end is closed."""
        while b"\n" not in self._buf:
            chunk = os.read(self.up_r, 65536)
            if not chunk:
                return "eof", ""
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        kind, _, payload = line.decode().partition(" ")
        return kind, payload

    def answer(self, payload: str = "ok") -> None:
        os.write(self.down_w, payload.encode() + b"\n")

    def expect(self, *kinds: str) -> tuple[str, str]:
        kind, payload = self.recv()
        if kind == "error":
            raise RuntimeFailure(payload)
        if kind not in kinds:
            raise RuntimeFailure(f"container process exited during setup (expected {'/'.join(kinds)}, got {kind})")
        return kind, payload

    def close(self) -> None:
        for fd in (self.up_r, self.down_w):
            try:
                os.close(fd)
            except OSError:
                pass
