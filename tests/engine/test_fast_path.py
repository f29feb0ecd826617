"""The fast `run` path (hostrt/cli_fast.py): taken without typer or pydantic, falls back to the
typer CLI for anything else, and behaves the same either way (exit codes, one-line errors,
records that validate against the pydantic models)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hostrt.cli_fast import _BOOL_FLAGS, _VALUE_FLAGS, FastRun, parse_run
from hostrt.engine.options import RunOptions
from hostrt.engine.plain_records import PlainOptions, PlainRecord, PlainRecordStore, PlainVolume
from hostrt.engine.records import ContainerRecord
from tests.engine.conftest import Hostrt

HEAVY = ("typer", "click", "pydantic", "rich", "requests")


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "expected"), [
    (["busybox"], FastRun("busybox", [])),
    (["--rm", "busybox", "echo", "-d", "--rm"], FastRun("busybox", ["echo", "-d", "--rm"], rm=True)),
    (["-d", "--name", "web", "-e", "A=1", "--env=B=2", "-w", "/tmp", "-u", "1:1", "-h", "box", "--network=none",
      "--pull", "never", "-i", "--read-only", "busybox", "sleep", "9"],
     FastRun("busybox", ["sleep", "9"], detach=True, rm=False, interactive=True, read_only=True, name="web",
             workdir="/tmp", user="1:1", hostname="box", network="none", pull="never", env=["A=1", "B=2"])),
    (["--name", "-odd", "busybox"], FastRun("busybox", [], name="-odd")),  # a value is taken as it comes, like click
])
def test_supported_runs_parse_like_the_cli(args: list[str], expected: FastRun) -> None:
    assert parse_run(args) == expected


@pytest.mark.parametrize("args", [
    [], ["--rm"], ["--name"], ["-t", "busybox"], ["-it", "busybox"], ["-p", "80:80", "busybox"], ["--help"],
    ["--", "busybox"], ["-v", "/a:/b", "busybox"], ["--pull", "always", "busybox"], ["--network", "mynet", "busybox"],
    ["--explain", "busybox"], ["--detach=true", "busybox"], ["--platform", "linux/arm64", "busybox"],
])
def test_anything_else_falls_back(args: list[str]) -> None:
    assert parse_run(args) is None


def test_fast_flags_are_flags_of_the_typer_run_command() -> None:
    """The typer command stays the definition: every fast flag must exist there, for the same value."""
    import typer.main

    from hostrt.cli import app

    run = typer.main.get_command(app).commands["run"]
    by_flag = {opt: param for param in run.params for opt in param.opts}
    for flag, field in {**_BOOL_FLAGS, **_VALUE_FLAGS}.items():
        assert flag in by_flag, f"{flag} is not a flag of `hostrt run`"
        assert by_flag[flag].name == field, f"{flag} sets {by_flag[flag].name} in the CLI, {field} in the fast path"
        assert by_flag[flag].is_flag == (flag in _BOOL_FLAGS)


# -- records ------------------------------------------------------------------------------
def test_plain_mirrors_have_the_models_fields_and_defaults() -> None:
    assert [f for f in PlainOptions.__dataclass_fields__] == list(RunOptions.model_fields)
    assert [f for f in PlainRecord.__dataclass_fields__] == list(ContainerRecord.model_fields)
    assert json.loads(json.dumps(PlainOptions().__dict__)) == RunOptions().model_dump(mode="json")
    plain = json.loads(PlainRecord(id="a" * 64, name="n", image="i", created_at=1.5).to_json())
    assert plain == ContainerRecord(id="a" * 64, name="n", image="i", created_at=1.5).model_dump(mode="json")


@pytest.mark.parametrize("record", [
    PlainRecord(id="b" * 64, name="plain", image="busybox:latest"),
    PlainRecord(id="c" * 64, name="full", image="busybox:latest", image_digest="sha256:" + "d" * 64,
                platform="linux/amd64", options=PlainOptions(
                    name="full", command=["sh", "-c", "echo ü"], entrypoint=[], env={"A": "1", "B": ""},
                    workdir="/tmp", user="1:2", volumes=[PlainVolume("/src", "/dst", True)], read_only=True,
                    memory=64 << 20, cpus=0.5, pids_limit=10, hostname="h", network="none", interactive=True),
                args=["sh"], auto_remove=True, status="exited", pid=42, exit_code=3, started_at=2.25, finished_at=3.0),
])
def test_plain_records_validate_and_round_trip(record: PlainRecord, tmp_path: Path) -> None:
    text = record.to_json()
    model = ContainerRecord.model_validate_json(text)
    assert model.model_dump(mode="json") == json.loads(text)
    assert json.loads(model.model_dump_json(indent=1)) == json.loads(text)
    # and back: what the pydantic store writes, the plain store reads to the same values
    store = PlainRecordStore(tmp_path)
    assert store._parse(model.model_dump_json(indent=1)) == record


# -- end to end ---------------------------------------------------------------------------
def _run_in_process(hostrt: Hostrt, *args: str) -> subprocess.CompletedProcess[str]:
    """`hostrt run ARGS` through the entry point, reporting which heavy modules it imported."""
    code = ("import sys\nfrom hostrt.__main__ import main\nrc = main(sys.argv[1:])\n"
            f"print('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\nsys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, "run", *args], env=hostrt.env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.root
def test_a_seen_image_runs_without_typer_or_pydantic(hostrt: Hostrt) -> None:
    hostrt.ok("run", "--rm", "busybox", "true")  # resolves the image once (the full path)
    done = _run_in_process(hostrt, "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; exit 4")
    assert (done.returncode, done.stdout) == (4, "out\n")
    assert done.stderr.strip().splitlines()[-1] == "loaded:", done.stderr
    fallback = _run_in_process(hostrt, "--rm", "-p", "8080:80", "--network", "none", "busybox", "true")
    assert fallback.returncode == 125 and "loaded:typer,pydantic" in fallback.stderr


@pytest.mark.root
def test_a_retagged_image_is_resolved_again(hostrt: Hostrt) -> None:
    hostrt.ok("run", "--rm", "busybox", "true")
    hostrt.ok("tag", "busybox", "fastpath-tag:1")
    try:
        # a new index.json: the cached resolution is stale, the full path runs (and caches again)
        assert "loaded:typer" in _run_in_process(hostrt, "--rm", "busybox", "true").stderr
        assert _run_in_process(hostrt, "--rm", "busybox", "true").stderr.strip() == "loaded:"
    finally:
        hostrt("rmi", "fastpath-tag:1")


CASES = [
    (["--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"], 3),
    (["--rm", "--network", "none", "busybox", "nosuch"], 127),
    (["--rm", "busybox", "/etc/passwd"], 126),
    (["--rm", "-e", "bad key=1", "busybox", "true"], 125),
    (["--rm", "--name", "bad/name", "busybox", "true"], 125),
    (["--rm", "--pull", "never", "nosuchimage"], 125),
    (["--rm", "--pull", "sometimes", "busybox", "true"], 125),
    (["--rm", "-w", "/nonexistent/dir", "busybox", "true"], None),  # whatever it is, the same both ways
]


@pytest.mark.root
@pytest.mark.parametrize(("args", "code"), CASES)
def test_both_paths_give_the_same_result(hostrt: Hostrt, args: list[str], code: int | None) -> None:
    hostrt.ok("run", "--rm", "busybox", "true")
    fast = hostrt("run", *args)
    full = subprocess.run([sys.executable, "-m", "hostrt", "run", *args], env={**hostrt.env, "HOSTRT_NO_FAST_PATH": "1"},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert (fast.returncode, fast.stdout, fast.stderr) == (full.returncode, full.stdout, full.stderr)
    if code is not None:
        assert fast.returncode == code
    if fast.returncode >= 125:
        assert fast.stderr.startswith("hostrt: error: ") and fast.stderr.count("\n") == 1


@pytest.mark.root
def test_both_paths_write_the_same_record(hostrt: Hostrt) -> None:
    hostrt.ok("run", "--rm", "busybox", "true")
    flags = ["-d", "-e", "A=1", "-w", "/tmp", "-u", "1", "--hostname", "h", "--network", "none", "--read-only"]
    fast_id = hostrt.ok("run", *flags, "--name", "fastrec", "busybox", "sleep", "100").strip()
    full = subprocess.run([sys.executable, "-m", "hostrt", "run", *flags, "--name", "fullrec", "busybox", "sleep", "100"],
                          env={**hostrt.env, "HOSTRT_NO_FAST_PATH": "1"}, capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr
    try:
        records = []
        for container_id in (fast_id, full.stdout.strip()):
            text = (hostrt.root / "containers" / container_id / "record.json").read_text()
            records.append(ContainerRecord.model_validate_json(text).model_dump(mode="json"))
        for record in records:
            for key in ("id", "name", "created_at", "started_at", "pid"):
                record.pop(key)
            record["options"].pop("name")
        assert records[0] == records[1]
        assert records[0]["status"] == "running" and records[0]["options"]["env"] == {"A": "1"}
    finally:
        hostrt("rm", "-f", "fastrec", "fullrec")


# -- the cached image resolution ------------------------------------------------------------
def test_a_cached_resolution_holds_only_while_the_index_and_layers_do(tmp_path: Path) -> None:
    import os

    from hostrt.engine import run_cache
    from hostrt.paths import Paths

    paths = Paths(root=tmp_path, run=tmp_path / "run")
    paths.store.mkdir()
    index = paths.store / "index.json"
    index.write_text("{}")
    layer = tmp_path / "layers" / "abc"
    layer.mkdir(parents=True)
    fields = {"image": "busybox:latest", "image_digest": "sha256:1", "platform": "linux/amd64", "stop_signal": "SIGTERM",
              "name": "ignored"}
    run_cache.remember(paths, run_cache.index_stamp(paths), "busybox", fields, {"Cmd": ["sh"]}, [layer])
    hit = run_cache.lookup(paths, "busybox")
    assert hit is not None and hit.config == {"Cmd": ["sh"]} and hit.lower_dirs == [layer]
    assert hit.fields == {k: v for k, v in fields.items() if k != "name"}
    assert run_cache.lookup(paths, "busybox:latest") is None  # another spelling: resolved by the full path
    layer.rmdir()
    assert run_cache.lookup(paths, "busybox") is None  # a pruned layer
    layer.mkdir()
    tmp = paths.store / ".index.tmp"
    tmp.write_text("{}")
    os.replace(tmp, index)  # how the store writes index.json: any tag, pull or rmi
    assert run_cache.lookup(paths, "busybox") is None
    run_cache.remember(paths, None, "busybox", fields, {}, [layer])  # no index when resolving: nothing kept
    assert run_cache.lookup(paths, "busybox") is None
