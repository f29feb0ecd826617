"""`features` (runtime-spec features.json) and `spec` (a default config.json)."""

from __future__ import annotations

from backends.linux_native import fastos as os  # os without its import cost (fastos.py)
import sys

from backends.linux_native import OCI_VERSION, jsonio
from backends.linux_native.seccomp import FLAGS as SECCOMP_FLAGS
from backends.linux_native.tables import CAPABILITIES, MOUNT_FLAGS, NAMESPACES, PROPAGATION, RECURSIVE_MOUNT_ATTRS


def features() -> dict:
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": sorted([*MOUNT_FLAGS, *PROPAGATION, *RECURSIVE_MOUNT_ATTRS]),
        "linux": {
            "namespaces": sorted(NAMESPACES),
            "capabilities": sorted(CAPABILITIES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": {
                "enabled": True,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
                ],
                "archs": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
                "knownFlags": sorted(SECCOMP_FLAGS),
                "supportedFlags": sorted(SECCOMP_FLAGS),
            },
            "apparmor": {"enabled": os.path.exists("/sys/kernel/security/apparmor")},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.hostrt.runtime.language": "python"},
    }


def main(command: str, glob, opts) -> int:
    if command == "features":
        sys.stdout.write(jsonio.dumps(features()) + "\n")
        return 0
    from backends.linux_native.default_spec import default_spec

    path = os.path.join(opts.bundle or ".", "config.json")
    if os.path.exists(path):
        sys.stderr.write(f"File {path} exists. Remove it first\n")
        return 1
    with open(path, "w") as f:
        f.write(jsonio.dumps(default_spec()))
    return 0
