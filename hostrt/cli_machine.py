"""`hostrt machine ...`: create, boot, reach and remove the Linux VMs of the lightvm backend.

Everything VM-specific (libvirt, paramiko, the guest image builder) is imported inside the
commands, so the rest of the CLI never pays for it.
"""

from __future__ import annotations

import json
import os
import platform as stdlib_platform
import shutil
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from hostrt.paths import Paths
from hostrt.platform import ImagePlatform, detect_host

machine_app = typer.Typer(rich_markup_mode=None, help="Manage the Linux VMs that run containers the host cannot run natively.", no_args_is_help=True)

DEFAULT_NAME = "default"


@machine_app.command("init")
def init(
    name: Annotated[str, typer.Argument(help="Machine name.")] = DEFAULT_NAME,
    arch: Annotated[str, typer.Option("--arch", help="Guest architecture: amd64 or arm64 (default: the host's).")] = "",
    cpus: Annotated[int, typer.Option("--cpus", help="Virtual CPUs.")] = 2,
    memory: Annotated[int, typer.Option("--memory", help="Memory in MiB.")] = 1024,
    share: Annotated[Optional[list[str]], typer.Option("--share", help="Host directory for -v (repeatable; default: $HOME and /tmp).")] = None,
    image: Annotated[Optional[str], typer.Option("--image", help="Pull the guest image from a registry instead of building it (default: $HOSTRT_GUEST_IMAGE).")] = None,
    idle_timeout: Annotated[int, typer.Option("--idle-timeout", help="Stop the machine after this many idle seconds (0: never).")] = 1800,
    driver: Annotated[Optional[str], typer.Option("--driver", help="What runs the VM: libvirt or qemu (default: libvirt where a libvirtd is reachable, else qemu; $HOSTRT_MACHINE_DRIVER).")] = None,
) -> None:
    """Create a machine: build (or reuse) the guest image, generate its SSH keys, pin its host key."""
    from pydantic import ValidationError

    from backends.lightvm.drivers import choose_driver
    from backends.lightvm.guest_source import guest_for
    from backends.lightvm.machines import init_machine
    from backends.lightvm.settings import MachineSettings, default_shares
    from hostrt import host_paths
    from hostrt.errors import UsageError

    guest_arch = ImagePlatform.parse(f"linux/{arch}").architecture if arch else detect_host().architecture
    chosen, _why = choose_driver(driver)
    try:
        shares = [host_paths.resolved(s) for s in share] if share else default_shares()
        settings = MachineSettings(name=name, arch=guest_arch, cpus=cpus, memory_mib=memory, shares=shares,  # type: ignore[arg-type]
                                   idle_timeout_s=idle_timeout, driver=chosen)
    except ValidationError as err:
        raise UsageError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
    guest = guest_for(Paths.default(), settings.arch, image)
    machine = init_machine(Paths.default().machines, settings, guest)
    typer.echo(f"machine {settings.name} created ({settings.arch}, {settings.cpus} CPUs, {settings.memory_mib} MiB, "
               f"driver {settings.driver}) in {machine.path}")


@machine_app.command("start")
def start(name: Annotated[str, typer.Argument()] = DEFAULT_NAME) -> None:
    """Boot the machine and wait until its guest accepts SSH."""
    from backends.lightvm.machines import existing, start_machine
    from backends.lightvm.probe import resolve_virt_type

    paths = Paths.default()
    machine = existing(paths.machines, name)
    host = detect_host()
    kernel = Path(machine.boot().kernel)
    virt_type = resolve_virt_type(host.os, host.architecture, machine.settings().arch, kernel, paths.cache,
                                  stdlib_platform.release())
    from backends.lightvm.hostagent import start_agent, stop_agent

    stop_agent(machine.path)
    machine, client = start_machine(paths.machines, name, virt_type)  # type: ignore[arg-type]
    client.close()
    start_agent(machine.path)
    record = machine.run_record()
    assert record is not None
    typer.echo(f"machine {name} running ({record.virt_type}, driver {record.driver}), SSH ready in {record.ready_seconds:.1f} s on 127.0.0.1:{record.ssh_port}")


@machine_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument()] = DEFAULT_NAME,
    poweroff: Annotated[bool, typer.Option("--poweroff", help="Power off instead of saving the idle guest's state.")] = False,
) -> None:
    """Stop the machine and release its memory: an idle guest is saved to disk (the next start
    restores it in seconds), a busy one is powered off."""
    from backends.lightvm.machine_dir import MachineDir
    from backends.lightvm.machines import stop_machine

    was_running = stop_machine(Paths.default().machines, name, save_state=not poweroff)
    saved = MachineDir(Paths.default().machines / name).saved_file.exists()
    typer.echo((f"machine {name} stopped" + (" (state saved)" if saved else "")) if was_running
               else f"machine {name} was not running")


@machine_app.command("rm")
def rm(names: Annotated[list[str], typer.Argument(help="Machines to remove.")]) -> None:
    """Destroy and delete machines (also orphaned domains a killed hostrt left behind)."""
    from backends.lightvm.machines import remove_machine

    for name in names:
        remove_machine(Paths.default().machines, name)
        typer.echo(name)


@machine_app.command("ls")
def ls(
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List machines with their state, SSH port and accelerator."""
    from dataclasses import asdict

    from backends.lightvm.machines import list_machines

    found = list_machines(Paths.default().machines)
    if output == "json":
        typer.echo(json.dumps([asdict(m) for m in found], indent=2))
        return
    typer.echo(f"{'NAME':<16}{'ARCH':<8}{'STATE':<10}{'DRIVER':<9}{'ACCEL':<7}SSH")
    for m in found:
        ssh_port = f"127.0.0.1:{m.ssh_port}" if m.ssh_port else "-"
        typer.echo(f"{m.name:<16}{m.arch or '-':<8}{m.state:<10}{m.driver or '-':<9}{m.virt_type or '-':<7}{ssh_port}")


@machine_app.command("inspect")
def inspect(name: Annotated[str, typer.Argument()] = DEFAULT_NAME) -> None:
    """Show a machine's settings, boot files, run record and saved state as JSON."""
    from backends.lightvm.machines import driver_of, existing
    from backends.lightvm.suspend import describe

    machine = existing(Paths.default().machines, name)
    record = machine.run_record()
    hypervisor = driver_of(machine).describe(machine)
    typer.echo(json.dumps({
        "name": name,
        "driver": hypervisor.pop("driver"),
        "domain": hypervisor.pop("domain"),  # QEMU's -name guest=, a libvirt domain's name
        "hypervisor": hypervisor,
        "path": str(machine.path),
        "settings": machine.settings().model_dump(mode="json"),
        "boot": machine.boot().model_dump(mode="json"),
        "running": record.model_dump(mode="json") if record else None,
        "saved": describe(machine),
        "host_key": machine.host_key_pub.read_text().strip(),
    }, indent=2))


@machine_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()] = DEFAULT_NAME,
) -> None:
    """Run a command in the guest (`machine ssh NAME -- CMD`), or open a shell there without one."""
    from backends.lightvm.machines import existing, guest_exec, ssh_target

    command = list(ctx.args)
    machine = existing(Paths.default().machines, name)
    if command:
        code, out, err = guest_exec(Paths.default().machines, name, " ".join(command))
        sys.stdout.buffer.write(out)
        sys.stderr.buffer.write(err)
        raise typer.Exit(code)
    target = ssh_target(machine)
    ssh_client = shutil.which("ssh")
    if ssh_client is None:
        from hostrt.errors import BackendUnavailableError

        raise BackendUnavailableError("an interactive shell needs an ssh client on PATH; pass a command instead")
    known_hosts = machine.path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{target.port} {target.host_key_line}\n")
    argv = ["ssh", "-i", str(target.client_key), "-p", str(target.port), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1"]
    if sys.platform == "win32":  # exec there starts a new process and returns to the shell at once
        import subprocess

        raise typer.Exit(subprocess.call([ssh_client, *argv[1:]]))
    os.execv(ssh_client, argv)


image_app = typer.Typer(rich_markup_mode=None, help="The guest VM image as an OCI image (to push to and pull from registries).",
                        no_args_is_help=True)
machine_app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    arch: Annotated[Optional[list[str]], typer.Option("--arch", help="amd64 and/or arm64 (default: both).")] = None,
    tag: Annotated[str, typer.Option("--tag", "-t", help="Name in the local store.")] = "hostrt/guest:latest",
) -> None:
    """Build the guest image(s) from images/guest and store them as one multi-platform image;
    then `hostrt push TAG REGISTRY/REPO:TAG` publishes it for `machine init --image`."""
    from backends.lightvm.guest_image import build_guest_image
    from backends.lightvm.guest_oci import store_guest_images
    from hostrt.images.local import LocalImages

    arches = arch or ["amd64", "arm64"]
    guests = [build_guest_image(a, Paths.default().cache / "guest") for a in arches]
    typer.echo(store_guest_images(LocalImages.open(), tag, guests))
