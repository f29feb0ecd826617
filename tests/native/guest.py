"""The native runtime's test fixtures (Runtime, bundles) inside the cgroup v2 lightvm guest:
the same hostrt-runtime, shipped there by the machine, driven over SSH, with the same
interface as tests/native/conftest.py's, so a test body runs unchanged in either place."""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import time
from pathlib import PurePosixPath

from backends.linux_native.default_spec import default_spec
from tests.cgroup_envs import V2Guest

WORK = "/tmp/hostrt-v2-tests"
_serial = itertools.count()


def guest_rootfs_template(guest: V2Guest) -> str:
    """A busybox root file system in the guest (its own static busybox), built once per boot."""
    template = f"{WORK}/busybox-rootfs"
    guest.ok(
        f"test -d {template} && exit 0; set -e; t={template}.tmp; rm -rf $t; "
        "for d in bin proc sys dev tmp etc root var usr; do mkdir -p $t/$d; done; "
        "cp /usr/bin/busybox $t/bin/busybox; "
        "for a in $(busybox --list); do [ $a = busybox ] || ln -s busybox $t/bin/$a; done; "
        "ln -s bin $t/sbin; ln -s ../bin $t/usr/bin; chmod 1777 $t/tmp; "
        "printf 'root:x:0:0:root:/root:/bin/sh\\nnobody:x:65534:65534:nobody:/:/bin/false\\n' > $t/etc/passwd; "
        "printf 'root:x:0:\\nnogroup:x:65534:\\n' > $t/etc/group; "
        f"mv $t {template}")
    return template


class Spawned:
    """A runtime command left running in the guest, shaped like the bits of Popen tests use."""

    def __init__(self, channel) -> None:  # noqa: ANN001 - a paramiko Channel
        self.channel = channel
        self.returncode: int | None = None

    def communicate(self, timeout: float) -> tuple[str, str]:
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while not (self.channel.exit_status_ready() and not self.channel.recv_ready() and not self.channel.recv_stderr_ready()):
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("guest command", timeout)
            if self.channel.recv_ready():
                out += self.channel.recv(65536)
            elif self.channel.recv_stderr_ready():
                err += self.channel.recv_stderr(65536)
            else:
                time.sleep(0.02)
        self.returncode = self.channel.recv_exit_status()
        return out.decode(errors="replace"), err.decode(errors="replace")

    def kill(self) -> None:
        self.channel.close()


class GuestRuntime:
    """hostrt-runtime in the guest with a private --root and --log (as Runtime on the host)."""

    where = "v2-guest"

    def __init__(self, guest: V2Guest) -> None:
        self.guest = guest
        self.dir = f"{WORK}/t{next(_serial)}"
        self.root = PurePosixPath(self.dir) / "state"
        self.log = f"{self.dir}/runtime.log"
        self.output = f"{self.dir}/container.out"
        guest.ok(f"rm -rf {self.dir}; mkdir -p {self.dir}")

    def command(self, *args: str, log: bool = True) -> str:
        logging = ["--log", self.log, "--log-format", "json"] if log else []
        return " ".join(shlex.quote(a) for a in [f"{self.guest.code}/hostrt-runtime", "--root", str(self.root),
                                                  *logging, *args])

    def __call__(self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None,
                 **_kwargs: object) -> subprocess.CompletedProcess:
        command = self.command(*args)
        detached = args[0] == "create" or (args[0] in ("run", "exec") and ("-d" in args or "--detach" in args))
        if detached:  # a detached container keeps the runtime's stdio: give it a file, not the channel
            code, _, _ = self.guest.run(f"{command} </dev/null >>{self.output} 2>&1", timeout=timeout)
            out = err = self.out()
        else:
            code, out, err = self.guest.run(command, stdin=input.encode() if input is not None else b"", timeout=timeout)
        proc = subprocess.CompletedProcess(list(args), code, out, err)
        if check and code != 0:
            raise AssertionError(f"{' '.join(args)} -> {code} (guest)\nstdout: {out}\nstderr: {err}")
        return proc

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def ids(self) -> list[str]:
        return self("list", "-q").stdout.split()

    def saved(self, cid: str) -> dict:
        return json.loads(self.read(f"{self.root}/{cid}/state.json"))

    def out(self) -> str:
        code, out, _ = self.guest.run(f"cat {self.output} 2>/dev/null")
        return out

    def read(self, path: str) -> str:
        return self.guest.read(path)

    def exists(self, path: str) -> bool:
        return self.guest.exists(path)

    def write(self, path: str, text: str) -> None:
        self.guest.ok(f"cat > {shlex.quote(path)}", stdin=text.encode())

    def listdir(self, path: str) -> list[str]:
        return self.guest.ok(f"ls -A {shlex.quote(path)}").split()

    def spawn(self, *args: str) -> Spawned:
        return Spawned(self.guest.spawn(self.command(*args, log=False)))

    def program_exists(self, prog_id: int) -> bool:
        """Whether the guest's kernel still holds the BPF program with this id."""
        snippet = ("import os,sys; from backends.linux_native import syscalls; a=bytearray(12); "
                   "a[0:4]=int(sys.argv[1]).to_bytes(4,'little')\ntry: os.close(syscalls.bpf(13, a)); print(1)\n"
                   "except FileNotFoundError: print(0)")
        out = self.guest.ok(f"PYTHONPATH={self.guest.code} python3 -S -c {shlex.quote(snippet)} {prog_id}")
        return out.strip() == "1"

    def attached(self, path: str) -> list[int]:
        """Ids of the BPF programs attached to a cgroup2 directory (the runtime's own query)."""
        snippet = ("import os,sys; from backends.linux_native.cgroups import bpf_prog; "
                   "fd=os.open(sys.argv[1], os.O_RDONLY|os.O_DIRECTORY); print(bpf_prog.attached(fd))")
        out = self.guest.ok(f"PYTHONPATH={self.guest.code} python3 -S -c {shlex.quote(snippet)} {shlex.quote(path)}")
        return json.loads(out)

    def cleanup(self) -> None:
        """Delete what the test left; assert no cgroup stays behind; remove the directory."""
        leftovers = self.ids() if self.exists(str(self.root)) else []
        cgroups = []
        for cid in leftovers:
            data = self.saved(cid)
            cg = data.get("cgroup") or {}
            cgroups.extend([cg["path"]] if cg.get("path") else (cg.get("paths") or {}).values())
            self("delete", "--force", cid, check=False)
        self.guest.run(f"rm -rf {self.dir}")
        for path in cgroups:
            assert not self.exists(path), f"cgroup {path} left behind in the guest"


class GuestBundleFactory:
    """Bundles in the guest: the rootfs template hard-linked, config.json written from here."""

    def __init__(self, rt: GuestRuntime, template: str) -> None:
        self.rt = rt
        self.template = template
        self.count = 0

    def __call__(self, *args: str, readonly: bool = True, copy: bool = False, edit=None, base=None) -> str:  # noqa: ANN001
        self.count += 1
        bundle = f"{self.rt.dir}/bundle{self.count}"
        config = default_spec(list(args) or ["true"])
        config["root"]["readonly"] = readonly
        config["hostname"] = "hostrt-test"
        if edit:
            edit(config)
        self.rt.guest.ok(f"mkdir -p {bundle} && cp -a{'' if copy else 'l'} {self.template} {bundle}/rootfs "
                         f"&& cat > {bundle}/config.json", stdin=json.dumps(config, indent=1).encode())
        return bundle
