"""Rootless `hostrt run --rm busybox true` against rootless `podman run --rm`, side by side.

Run as root: the rootless commands run as USER (setpriv, no capabilities, the user's HOME and
XDG_RUNTIME_DIR), interleaved round-robin so the machine's drift hits every column alike; root
hostrt is the reference column. Prints median, minimum and the median of per-round ratios to
the first column. Both engines use their rootless default network (slirp4netns) unless the
`none` columns say otherwise; "no server" runs hostrt without its engine server (podman has none).

    python3 tests/bench/bench_rootless.py --user NAME --hostrt-bin DIR [--root-hostrt CMD] [-n 20]

USER needs /etc/subuid and /etc/subgid ranges, a hostrt in DIR that it can run (the rootless
tests' tests/rootless/user_env.py installs one) with the busybox image in its store, and
podman. The podman image is made here from Debian's busybox-static (`podman import`, no registry).
"""

from __future__ import annotations

import argparse
import io
import os
import pwd
import shlex
import statistics
import subprocess
import sys
import tarfile
import time

PODMAN_IMAGE = "localhost/busybox-static-bench:latest"


def as_user(user: pwd.struct_passwd, bin_dir: str, argv: list[str]) -> list[str]:
    env = {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
           "XDG_RUNTIME_DIR": f"/run/user/{user.pw_uid}", "LANG": "C.UTF-8",
           "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--reset-env", "--",
            "env", *(f"{k}={v}" for k, v in env.items()), *argv]


def busybox_tar() -> bytes:
    """A rootfs tar: /bin/busybox from busybox-static and one link per applet."""
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        for name in ("tmp", "proc", "sys", "dev", "etc", "root"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
    return buffer.getvalue()


def ensure_podman_image(user: pwd.struct_passwd, bin_dir: str) -> None:
    if subprocess.run(as_user(user, bin_dir, ["podman", "image", "exists", PODMAN_IMAGE]),
                      capture_output=True, cwd=user.pw_dir).returncode == 0:
        return
    subprocess.run(as_user(user, bin_dir, ["podman", "import", "--change", "CMD=/bin/sh", "-", PODMAN_IMAGE]),
                   input=busybox_tar(), capture_output=True, check=True, cwd=user.pw_dir)


def timed(argv: list[str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {shlex.join(argv)}\n{done.stderr.decode(errors='replace')[-400:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user", required=True)
    parser.add_argument("--hostrt-bin", required=True, help="directory holding the user's hostrt")
    parser.add_argument("--root-hostrt", default="", help="root's hostrt command for the reference column")
    parser.add_argument("-n", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    user = pwd.getpwnam(args.user)
    ensure_podman_image(user, args.hostrt_bin)
    columns = {
        "hostrt rootless": as_user(user, args.hostrt_bin, ["hostrt", "run", "--rm", "busybox", "true"]),
        "podman rootless": as_user(user, args.hostrt_bin, ["podman", "run", "--rm", PODMAN_IMAGE, "true"]),
        "hostrt rootless, no server": as_user(user, args.hostrt_bin, ["env", "HOSTRT_SERVER=0", "hostrt", "run", "--rm",
                                                                    "busybox", "true"]),
        "hostrt rootless, --network none": as_user(user, args.hostrt_bin,
                                                   ["hostrt", "run", "--rm", "--network", "none", "busybox", "true"]),
        "podman rootless, --network none": as_user(user, args.hostrt_bin,
                                                   ["podman", "run", "--rm", "--network", "none", PODMAN_IMAGE, "true"]),
    }
    if args.root_hostrt:
        columns["hostrt root (bridge)"] = [*shlex.split(args.root_hostrt), "run", "--rm", "busybox", "true"]
    times: dict[str, list[float]] = {label: [] for label in columns}
    for round_number in range(args.warmup + args.n):
        for label, argv in columns.items():
            elapsed = timed(argv, user.pw_dir if label != "hostrt root (bridge)" else "/")
            if round_number >= args.warmup:
                times[label].append(elapsed)
    first = next(iter(columns))
    print(f"{'command':34} {'median ms':>10} {'min ms':>8} {'ratio':>7}   ({args.n} interleaved rounds)")
    for label, values in times.items():
        ratio = statistics.median(v / f for v, f in zip(values, times[first]))
        print(f"{label:34} {statistics.median(values):10.1f} {min(values):8.1f} {ratio:7.2f}")


if __name__ == "__main__":
    main()
