"""`hostrt info`: the host facts and backend usability, gathered once and rendered as text or JSON."""

from __future__ import annotations

from pydantic import BaseModel

from hostrt import __version__
from hostrt.accelerator import cached_probe
from hostrt.machine_costs import MachineCost, all_machine_costs, describe
from hostrt.paths import Paths
from hostrt.rootless.report import gather as gather_rootless
from hostrt.platform import BackendStatus, HostInfo, detect_host, lightvm_status, native_status


class InfoReport(BaseModel):
    """Everything `hostrt info` shows."""

    version: str
    host: HostInfo
    root: str
    run_root: str
    backends: list[BackendStatus]
    machines: list[MachineCost] = []  # each machine's state and measured start costs
    rootless: dict[str, str] | None = None  # an ordinary user's mode (hostrt/rootless/report.py)


def gather_info(paths: Paths | None = None) -> InfoReport:
    """Read the host (using the cached accelerator verdict, never booting a probe) and judge backends."""
    import platform as stdlib_platform

    paths = paths or Paths.default()
    host = detect_host(probe=cached_probe(paths.cache, stdlib_platform.release()))
    return InfoReport(
        version=__version__,
        host=host,
        root=str(paths.root),
        run_root=str(paths.run),
        backends=[native_status(host), lightvm_status(host)],
        machines=all_machine_costs(paths.machines),
        rootless=gather_rootless(),
    )


def render_text(report: InfoReport) -> str:
    """A human layout in the spirit of `docker info`."""
    host = report.host
    accel = host.accelerator
    candidate = f" (candidate: {accel.candidate})" if accel.candidate else ""
    lines = [
        f"hostrt version {report.version}",
        "Host:",
        f"  OS/Arch:          {host.platform}",
        f"  Kernel:           {host.kernel}",
        f"  Cgroups:          {host.cgroup}",
        f"  User namespaces:  {'yes' if host.user_namespaces else 'no'}",
        f"  Accelerator:      {accel.accelerator}{candidate}",
        f"                    {accel.reason}",
        f"  Root:             {report.root}",
        f"  Run root:         {report.run_root}",
    ]
    if report.rootless is not None:
        lines.append("Rootless:         yes (a user namespace of this user's own, hostrt/rootless)")
        lines.extend(f"  {label + ':':<16} {value}" for label, value in report.rootless.items())
    lines.append("Backends:")
    for backend in report.backends:
        lines.append(f"  {backend.name}: {'usable' if backend.usable else 'NOT usable'}")
        lines.extend(f"    - {reason}" for reason in backend.reasons)
    lines.append("Machines:" if report.machines else "Machines:         none yet (created on the first VM run)")
    for machine in report.machines:
        state, starts = describe(machine)
        lines.append(f"  {machine.name} ({machine.arch or '?'}): {state}")
        lines.append(f"    expected start: {starts}")
    return "\n".join(lines)
