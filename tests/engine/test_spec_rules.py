"""Docker's rules for what a container runs, as `hostrt.spec` applies them to an image config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostrt.engine.options import (
    RunOptions,
    normalise_capability,
    parse_cpus,
    parse_env,
    parse_memory,
    parse_security_opts,
    parse_volume,
)
from hostrt.errors import UsageError
from hostrt.spec import ContainerFiles, build_spec, capabilities, merged_env, process_args
from hostrt.spec_defaults import DEFAULT_CAPABILITIES
from hostrt.users import resolve_user

pytestmark = pytest.mark.portable

IMAGE = {"Entrypoint": ["/entry.sh"], "Cmd": ["serve", "--port", "80"], "Env": ["PATH=/opt/bin:/bin", "MODE=prod"],
         "WorkingDir": "/app", "User": "app"}
PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nwheel:x:10:app,other\napp:x:1000:\nstaff:x:50:app\n"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (RunOptions(), ["/entry.sh", "serve", "--port", "80"]),
        (RunOptions(command=["debug"]), ["/entry.sh", "debug"]),
        (RunOptions(entrypoint=["sh"]), ["sh"]),
        (RunOptions(entrypoint=["sh"], command=["-c", "id"]), ["sh", "-c", "id"]),
        (RunOptions(entrypoint=[], command=["true"]), ["true"]),
    ],
)
def test_entrypoint_and_cmd(options: RunOptions, expected: list[str]) -> None:
    assert process_args(IMAGE, options) == expected


def test_no_command_at_all_is_an_error() -> None:
    with pytest.raises(UsageError, match="no command specified"):
        process_args({}, RunOptions())


def test_env_layers_image_then_user() -> None:
    env = merged_env(IMAGE, RunOptions(env={"MODE": "dev", "EXTRA": "1"}, tty=True), "h0st", "/home/app")
    assert env == ["PATH=/opt/bin:/bin", "MODE=dev", "HOSTNAME=h0st", "HOME=/home/app", "TERM=xterm", "EXTRA=1"]


@pytest.mark.parametrize(
    ("spec", "uid", "gid", "extra"),
    [
        (None, 0, 0, ()),
        ("app", 1000, 1000, (10, 50)),
        ("1000", 1000, 1000, (10, 50)),
        ("app:staff", 1000, 50, (10,)),
        ("4242", 4242, 0, ()),
        ("4242:4343", 4242, 4343, ()),
        ("nobody", 65534, 65534, ()),
    ],
)
def test_user_resolved_from_the_image_files(rootfs: Path, spec: str | None, uid: int, gid: int, extra: tuple[int, ...]) -> None:
    user = resolve_user(spec, rootfs)
    assert (user.uid, user.gid, user.additional_gids) == (uid, gid, extra)


@pytest.mark.parametrize(("spec", "named"), [("ghost", "user ghost"), ("app:ghosts", "group ghosts")])
def test_unknown_user_or_group(rootfs: Path, spec: str, named: str) -> None:
    with pytest.raises(UsageError, match=f"unable to find {named}"):
        resolve_user(spec, rootfs)


def test_passwd_symlinked_out_of_the_rootfs_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "host-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").symlink_to(outside)
    with pytest.raises(UsageError, match="unable to find user evil"):
        resolve_user("evil", rootfs)


def test_etc_symlinked_out_of_the_rootfs_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "host-etc"
    outside.mkdir()
    (outside / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    (rootfs / "etc").symlink_to(outside)  # absolute: followed on the host, it leaves the rootfs
    with pytest.raises(UsageError, match="unable to find user evil"):
        resolve_user("evil", rootfs)


def test_capabilities_add_and_drop() -> None:
    assert capabilities(RunOptions()) == sorted(DEFAULT_CAPABILITIES)
    assert len(DEFAULT_CAPABILITIES) == 14
    caps = capabilities(RunOptions(cap_add=["CAP_NET_ADMIN"], cap_drop=["CAP_CHOWN"]))
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    assert capabilities(RunOptions(cap_drop=["ALL"], cap_add=["CAP_KILL"])) == ["CAP_KILL"]
    assert "CAP_SYS_ADMIN" in capabilities(RunOptions(cap_add=["ALL"]))


def test_spec_for_non_root_user_has_no_effective_capabilities(rootfs: Path) -> None:
    files = ContainerFiles(rootfs / "h", rootfs / "hosts", rootfs / "resolv")
    spec = build_spec(IMAGE, RunOptions(memory=64 << 20, cpus=0.5, pids_limit=20), rootfs, "f" * 64, files,
                      architecture="amd64")
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}
    assert spec["process"]["capabilities"]["effective"] == []
    assert spec["process"]["cwd"] == "/app"
    assert spec["hostname"] == "f" * 12
    resources = spec["linux"]["resources"]
    assert resources["memory"]["limit"] == 64 << 20
    assert resources["cpu"] == {"quota": 50_000, "period": 100_000}
    assert resources["pids"] == {"limit": 20}


@pytest.mark.parametrize(("text", "value"), [("512m", 512 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("8388608", 8 << 20), ("64mb", 64 << 20)])
def test_memory_values(text: str, value: int) -> None:
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["lots", "12x", "-5m", "1m"])
def test_bad_memory_values_name_the_flag(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --memory value"):
        parse_memory(text)


def test_other_flag_parsers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="--cpus"):
        parse_cpus("999")
    assert parse_cpus("0.5") == 0.5
    volume = parse_volume(f"{tmp_path}:/data:ro")
    assert (volume.source, volume.destination, volume.readonly) == (str(tmp_path), "/data", True)
    for bad in ("relative:/data", f"{tmp_path}:data", f"{tmp_path}:/data:rx", f"{tmp_path}/missing:/d"):
        with pytest.raises(UsageError, match="invalid -v value"):
            parse_volume(bad)
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nA=1\nB=from-file\n")
    monkeypatch.setenv("FROM_HOST", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert parse_env(["B=flag", "FROM_HOST", "NOT_SET"], [str(env_file)]) == {"A": "1", "B": "flag", "FROM_HOST": "yes"}
    with pytest.raises(UsageError, match="invalid -e value"):
        parse_env(["=x"])
    assert normalise_capability("net_admin", "--cap-add") == "CAP_NET_ADMIN"
    with pytest.raises(UsageError, match="unknown capability"):
        normalise_capability("fly", "--cap-add")
    assert parse_security_opts(["no-new-privileges", "seccomp=unconfined"]) == (True, "unconfined")
    with pytest.raises(UsageError, match="--security-opt"):
        parse_security_opts(["apparmor=x"])
