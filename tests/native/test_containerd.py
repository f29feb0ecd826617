"""containerd as a client: Debian's containerd started by hand with a private config (CRI
off, everything under a temp dir) drives hostrt-runtime through its runc shim, as
Kubernetes would. Proof that an existing engine can use the runtime as it uses runc."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import BUSYBOX, RUNTIME

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("containerd") is None or shutil.which("ctr") is None,
                       reason="needs containerd and ctr (apt-get install containerd)"),
    pytest.mark.skipif(shutil.which("containerd-shim-runc-v2") is None,
                       reason="needs containerd-shim-runc-v2 (Debian's containerd package)"),
]

IMAGE = "docker.io/hostrt/busybox:test"
NAMESPACE = "hostrt-test"


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return "sha256:" + digest


def _layer() -> bytes:
    """One uncompressed layer: busybox plus a symlink per applet."""
    buf = io.BytesIO()
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def build_image_archive(path: Path) -> None:
    """An OCI image layout tar that `ctr image import` accepts."""
    layout = path.with_suffix(".d")
    (layout / "blobs" / "sha256").mkdir(parents=True)
    layer = _layer()
    layer_digest = _blob(layout, layer)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    config = {
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _blob(layout, config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _blob(layout, manifest_bytes),
            "size": len(manifest_bytes),
            "annotations": {"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "test"},
        }],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    with tarfile.open(path, "w") as tar:
        for entry in sorted(layout.iterdir()):
            tar.add(entry, entry.name)


def _umount_under(path: str) -> None:
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(path)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


@pytest.fixture(scope="module")
def containerd():
    base = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    sock = base / "containerd.sock"
    config = base / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
    )
    log = open(base / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("containerd did not start: " + (base / "containerd.log").read_text()[-2000:])
        archive = base / "image.tar"
        build_image_archive(archive)
        ctr = Ctr(sock)
        ctr("images", "import", str(archive))
        yield ctr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        _umount_under(str(base))
        shutil.rmtree(base, ignore_errors=True)
        # the shim names cgroups /<namespace>/<id>; remove the emptied parent
        for controller in os.listdir("/sys/fs/cgroup"):
            try:
                os.rmdir(f"/sys/fs/cgroup/{controller}/{NAMESPACE}")
            except OSError:
                pass


class Ctr:
    def __init__(self, sock: Path) -> None:
        self.sock = sock

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(["ctr", "--address", str(self.sock), "--namespace", NAMESPACE, *args],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def task_status(self, cid: str) -> str:
        for line in self("task", "ls").stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == cid:
                return fields[-1]
        return ""


def _runtime_binary() -> str:
    path = RUNTIME[0]
    if not os.access(path, os.X_OK) or path.endswith("python3"):
        pytest.skip("needs the installed hostrt-runtime script (pip install -e .)")
    return path


def test_ctr_run_rm_echo(containerd):
    out = containerd("run", "--rm", "--runc-binary", _runtime_binary(), IMAGE, "hostrt-echo", "echo", "hi")
    assert out.stdout.strip() == "hi"


def test_ctr_exit_code(containerd):
    proc = containerd("run", "--rm", "--runc-binary", _runtime_binary(), IMAGE, "hostrt-exit", "sh", "-c", "exit 7", check=False)
    assert proc.returncode == 7


def test_ctr_task_lifecycle(containerd):
    cid = "hostrt-life"
    containerd("run", "-d", "--runc-binary", _runtime_binary(), IMAGE, cid, "sleep", "100")
    try:
        assert containerd.task_status(cid) == "RUNNING"
        # the shim really drove hostrt-runtime: its state record, not runc's, is there
        record = json.loads(Path(f"/run/containerd/runc/{NAMESPACE}/{cid}/state.json").read_text())
        assert "pid_start" in record and record["bundle"]
        exec_out = containerd("task", "exec", "--exec-id", "e1", cid, "sh", "-c", "echo exec-ok; cat /proc/1/cmdline")
        assert exec_out.stdout.startswith("exec-ok") and "sleep" in exec_out.stdout
        ps = containerd("task", "ps", cid).stdout
        assert len(ps.splitlines()) >= 2
        containerd("task", "pause", cid)
        assert containerd.task_status(cid) == "PAUSED"
        containerd("task", "resume", cid)
        assert containerd.task_status(cid) == "RUNNING"
        containerd("task", "kill", "--signal", "SIGKILL", cid)
        for _ in range(100):
            if containerd.task_status(cid) == "STOPPED":
                break
            time.sleep(0.05)
        assert containerd.task_status(cid) == "STOPPED"
    finally:
        containerd("task", "delete", "--force", cid, check=False)
        containerd("container", "delete", cid, check=False)
    assert containerd.task_status(cid) == ""
