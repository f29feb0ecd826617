"""Pull and push against a real docker-registry: platforms, digests, auth, corruption, interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostrt.images import oci
from hostrt.images.auth import Credentials, save_credentials
from hostrt.images.errors import AuthError, DigestMismatchError, ImageNotFoundError, RegistryError
from hostrt.images.local import LocalImages, details
from hostrt.images.pull import pull
from hostrt.images.push import push
from hostrt.images.registry import Registry
from hostrt.paths import Paths
from hostrt.platform import ImagePlatform

from .conftest import make_image, tar_bytes


def fresh(tmp_path: Path, name: str = "fresh") -> LocalImages:
    return LocalImages.open(Paths(root=tmp_path / name, run=tmp_path / name / "run"))


def test_push_index_then_pull_each_platform_by_tag_and_digest(busybox_root: Path, registry, tmp_path: Path) -> None:
    local = LocalImages.open()
    target = f"{registry.host}/hostrt/busybox:1"
    pushed = push(local, "busybox", target)
    _, built = local.store.names()[0]
    assert pushed.digest == built.digest
    index = oci.parse_index(local.store.read(built.digest))
    by_arch = {d.platform.architecture: d.digest for d in index.manifests}
    assert set(by_arch) == {"amd64", "arm64"}

    for arch, spelled in (("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8"), ("arm64", "linux/arm64")):
        other = fresh(tmp_path, f"pull-{spelled.replace('/', '-')}")
        result = pull(other, target, ImagePlatform.parse(spelled))
        assert (result.digest, result.manifest_digest) == (built.digest, by_arch[arch])
        info = details(other.store, target, ImagePlatform.parse(spelled))
        assert info.platform.startswith(f"linux/{arch}")
        assert info.layers[0].digest == details(local.store, "busybox", ImagePlatform.parse(spelled)).layers[0].digest

    by_digest = fresh(tmp_path, "by-digest")
    result = pull(by_digest, f"{registry.host}/hostrt/busybox@{built.digest}", ImagePlatform.parse("linux/arm64"))
    assert result.manifest_digest == by_arch["arm64"]
    assert by_digest.store.names()[0][0] == f"{registry.host}/hostrt/busybox@{built.digest}"
    single = fresh(tmp_path, "single")
    assert pull(single, f"{registry.host}/hostrt/busybox@{by_arch['amd64']}").manifest_digest == by_arch["amd64"]


def test_second_push_uploads_nothing_and_chunked_push_works(busybox_root: Path, registry) -> None:
    local = LocalImages.open()
    first = push(local, "busybox", f"{registry.host}/chunked/busybox", chunk_size=300_000)
    assert first.uploaded == 4  # two configs, two layers
    again = push(local, "busybox", f"{registry.host}/chunked/busybox")
    assert (again.uploaded, again.skipped) == (0, 4)


def test_pull_of_missing_platform_names_what_is_offered(busybox_root: Path, registry, tmp_path: Path) -> None:
    push(LocalImages.open(), "busybox", f"{registry.host}/busybox")
    with pytest.raises(ImageNotFoundError, match=r"no linux/s390x image \(it offers: linux/amd64, linux/arm64\)"):
        pull(fresh(tmp_path), f"{registry.host}/busybox", ImagePlatform.parse("linux/s390x"))
    with pytest.raises(ImageNotFoundError, match="not found"):
        pull(fresh(tmp_path), f"{registry.host}/nothing-here")


def test_corrupted_blob_on_the_registry_is_refused_and_not_stored(store_root_image, registry, tmp_path: Path) -> None:
    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/corrupt")
    blob = registry.blob_file("corrupt", layer)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    other = fresh(tmp_path, "other")
    before = other.store.blob_digests()
    with pytest.raises(DigestMismatchError, match=f"blob {layer} failed verification"):
        pull(other, f"{registry.host}/corrupt:latest")
    assert other.store.blob_digests() == before == set()
    assert other.store.names() == []
    assert not (other.store.ingest_dir / f"{layer.split(':')[1]}.partial").exists()
    data[len(data) // 2] ^= 0xFF  # repaired: the same pull now succeeds
    blob.write_bytes(bytes(data))
    assert pull(other, f"{registry.host}/corrupt:latest").manifest_digest == digest


@pytest.fixture
def store_root_image(hostrt_root: Path):  # noqa: ANN201
    """An image with one 24 MB incompressible layer and a small one, in the HOSTRT_ROOT store."""
    local = LocalImages.open()
    big = tar_bytes([{"name": "data/blob.bin", "data": os.urandom(24 << 20)}])
    small = tar_bytes([{"name": "etc/hello", "data": b"hello"}])
    digest = make_image(local.store, "big:1", [big, small])
    layer = oci.parse_manifest(local.store.read(digest)).layers[0].digest
    return local, digest, layer


def test_killed_pull_leaves_no_partial_blob_and_next_pull_completes(store_root_image, registry, tmp_path: Path) -> None:
    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/big")
    other = tmp_path / "killed"
    env = {**os.environ, "HOSTRT_ROOT": str(other)}
    cmd = [sys.executable, "-m", "hostrt", "pull", "-q", f"{registry.host}/big"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = other / "store" / "ingest" / f"{layer.split(':')[1]}.partial"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the pull finished before it could be killed"
    store = LocalImages.open(Paths(root=other, run=other / "run")).store
    assert not store.has(layer)
    assert store.names() == []
    kept = partial.stat().st_size
    assert 0 < kept < (24 << 20)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert store.has(layer) and not partial.exists()
    assert store.lookup(f"{registry.host}/big:latest").digest == digest


def test_two_concurrent_pulls_of_the_same_image(store_root_image, registry, tmp_path: Path) -> None:
    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/twice")
    root = tmp_path / "shared"
    env = {**os.environ, "HOSTRT_ROOT": str(root)}
    cmd = [sys.executable, "-m", "hostrt", "pull", "-q", f"{registry.host}/twice"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    store = LocalImages.open(Paths(root=root, run=root / "run")).store
    assert store.lookup(f"{registry.host}/twice:latest").digest == digest
    assert len(store.names()) == 1
    assert store.blob_path(layer).stat().st_nlink == 1
    assert sum("0 blobs fetched" in out for out, _ in outs) <= 1


def test_basic_auth(busybox_root: Path, basic_registry, tmp_path: Path) -> None:
    local = LocalImages.open()
    host = basic_registry.host
    with pytest.raises(AuthError, match=f"{host} requires a login"):
        push(local, "busybox", f"{host}/busybox")
    with pytest.raises(AuthError, match="unauthorized"):
        Registry(host, Credentials("alice", "wrong")).ping()
    Registry(host, Credentials("alice", "s3cret")).ping()
    save_credentials(host, Credentials("alice", "s3cret"))
    assert (busybox_root / "auth.json").stat().st_mode & 0o777 == 0o600
    push(local, "busybox", f"{host}/busybox")
    pull(local, f"{host}/busybox", ImagePlatform.parse("linux/arm64"))


def test_docker_config_credentials_are_used(busybox_root: Path, basic_registry, tmp_path: Path, monkeypatch) -> None:
    import base64
    import json

    config = tmp_path / "docker"
    config.mkdir()
    auth = base64.b64encode(b"alice:s3cret").decode()
    (config / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    push(LocalImages.open(), "busybox", f"{basic_registry.host}/busybox")


def test_token_auth_anonymous_pull_and_authenticated_push(busybox_root: Path, token_registry, tmp_path: Path) -> None:
    local = LocalImages.open()
    host = token_registry.host
    with pytest.raises(AuthError):
        push(local, "busybox", f"{host}/team/busybox")  # anonymous tokens carry pull only
    save_credentials(host, Credentials("bob", "hunter2"))
    push(local, "busybox", f"{host}/team/busybox")
    assert any(r["user"] == "bob" and "repository:team/busybox:pull,push" in r["scopes"] for r in token_registry.issuer.requests)
    os.unlink(busybox_root / "auth.json")
    anonymous = fresh(tmp_path, "anon")
    result = pull(anonymous, f"{host}/team/busybox", ImagePlatform.parse("linux/arm64"))
    assert result.platform == "linux/arm64"
    assert token_registry.issuer.requests[-1]["user"] is None
    with pytest.raises(AuthError, match="refused access as bob"):
        Registry(host, Credentials("bob", "wrong")).get_manifest("team/busybox", "latest")


def test_plain_http_only_for_loopback_or_insecure() -> None:
    assert Registry("127.0.0.1:5000").scheme == "http"
    assert Registry("localhost:5000").scheme == "http"
    assert Registry("registry.example.com").scheme == "https"
    assert Registry("registry.example.com", insecure=["registry.example.com"]).scheme == "http"


def test_unreachable_registry_is_one_clear_error(tmp_path: Path) -> None:
    from .registry_server import free_port

    with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1"):
        pull(fresh(tmp_path), f"127.0.0.1:{free_port()}/busybox")


def test_pull_resumes_from_a_kept_partial_and_survives_a_bad_one(store_root_image, registry, tmp_path: Path) -> None:
    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/resume")
    blob = local.store.blob_path(layer).read_bytes()
    other = fresh(tmp_path, "resume")
    partial = other.store.ingest_dir / f"{layer.split(':')[1]}.partial"
    third = len(blob) // 3
    partial.write_bytes(blob[:third])
    # Spoil the registry's copy before the resume point only: a pull that downloads from zero
    # fails verification; one that resumes with Range from the kept third succeeds.
    registry.blob_file("resume", layer).write_bytes(b"\0" * third + blob[third:])
    assert pull(other, f"{registry.host}/resume").manifest_digest == digest
    assert other.store.has(layer) and not partial.exists()
    from hostrt.images.local import remove

    remove(other, f"{registry.host}/resume")
    registry.blob_file("resume", layer).write_bytes(blob)
    partial.write_bytes(b"\xff" * (len(blob) // 2))  # a bad partial: detected, then fetched from zero
    assert pull(other, f"{registry.host}/resume").manifest_digest == digest
    assert other.store.has(layer) and not partial.exists()


def test_login_command_checks_and_stores_credentials(busybox_root: Path, basic_registry) -> None:
    host = basic_registry.host
    cmd = [sys.executable, "-m", "hostrt", "login", "-u", "alice", "--password-stdin", host]
    bad = subprocess.run(cmd, input="nope\n", capture_output=True, text=True, env=os.environ)
    assert bad.returncode == 125 and "unauthorized" in bad.stderr and not (busybox_root / "auth.json").exists()
    good = subprocess.run(cmd, input="s3cret\n", capture_output=True, text=True, env=os.environ)
    assert good.returncode == 0, good.stderr
    assert (busybox_root / "auth.json").stat().st_mode & 0o777 == 0o600
    out = subprocess.run([sys.executable, "-m", "hostrt", "push", "-q", f"{host}/busybox"], capture_output=True, text=True, env=os.environ)
    assert out.returncode == 0, out.stderr
    subprocess.run([sys.executable, "-m", "hostrt", "logout", host], check=True, env=os.environ, capture_output=True)
    with pytest.raises(AuthError):
        pull(LocalImages.open(), f"{host}/busybox")


def test_oversized_manifest_is_refused(busybox_root: Path, registry, tmp_path: Path, monkeypatch) -> None:
    from hostrt.images import registry as registry_module

    push(LocalImages.open(), "busybox", f"{registry.host}/busybox")
    monkeypatch.setattr(registry_module, "MAX_MANIFEST", 100)  # the real limit is 4 MiB; the index is ~500 bytes
    with pytest.raises(RegistryError, match="larger than 100 bytes"):
        pull(fresh(tmp_path), f"{registry.host}/busybox")


def test_pull_of_a_single_manifest_for_another_platform_adds_nothing(store_root_image, registry, tmp_path: Path) -> None:
    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/amd64-only")
    other = fresh(tmp_path, "wrong-platform")
    with pytest.raises(ImageNotFoundError, match="is a linux/amd64 image, not linux/arm64"):
        pull(other, f"{registry.host}/amd64-only", ImagePlatform.parse("linux/arm64"))
    assert other.store.blob_digests() == set() and other.store.names() == []
    assert not list(other.store.ingest_dir.glob("*.partial"))


def test_dropped_connection_mid_blob_resumes_with_range(store_root_image, registry, tmp_path: Path) -> None:
    from .registry_server import CuttingProxy

    local, digest, layer = store_root_image
    push(local, "big:1", f"{registry.host}/flaky")
    proxy = CuttingProxy(registry.host, cut_after=5 << 20)
    try:
        result = pull(fresh(tmp_path, "flaky"), f"{proxy.host}/flaky")
    finally:
        proxy.stop()
    assert result.manifest_digest == digest
    assert proxy.cuts == 1
    assert any(b"Range: bytes=" in r and layer.encode() in r for r in proxy.requests)


def test_docker_schema2_manifest_list_round_trip(hostrt_root: Path, registry, tmp_path: Path) -> None:
    local = LocalImages.open()
    store = local.store
    children = []
    for arch, content in (("amd64", b"x86"), ("arm64", b"arm")):
        d = make_image(store, f"tmp-{arch}:1", [tar_bytes([{"name": "arch", "data": content}])], arch=arch, docker=True)
        children.append(oci.Descriptor(mediaType=oci.DOCKER_MANIFEST, digest=d, size=store.size(d),
                                       platform=oci.Platform(os="linux", architecture=arch)))
    listing = oci.dump(oci.Index(mediaType=oci.DOCKER_LIST, manifests=children))
    store.set_name("multi:1", oci.Descriptor(mediaType=oci.DOCKER_LIST, digest=store.put_bytes(listing), size=len(listing)))
    pushed = push(local, "multi:1", f"{registry.host}/docker/multi:1")
    for arch, content in (("amd64", b"x86"), ("arm64", b"arm")):
        other = fresh(tmp_path, f"docker-{arch}")
        result = pull(other, f"{registry.host}/docker/multi:1", ImagePlatform.parse(f"linux/{arch}"))
        assert result.digest == pushed.digest and other.store.lookup(result.name).mediaType == oci.DOCKER_LIST
        from hostrt.images.local import unpacked_layers

        (layer,) = unpacked_layers(other, result.name, ImagePlatform.parse(f"linux/{arch}"))
        assert (layer / "arch").read_bytes() == content


@pytest.mark.parametrize("auth", ["none", "token"])
def test_push_to_another_repository_of_the_same_registry_mounts_blobs(busybox_root: Path, request, auth: str) -> None:
    reg = request.getfixturevalue("registry" if auth == "none" else "token_registry")
    if auth == "token":
        save_credentials(reg.host, Credentials("bob", "hunter2"))
    local = LocalImages.open()
    push(local, "busybox", f"{reg.host}/team-a/busybox")
    pull(local, f"{reg.host}/team-a/busybox", ImagePlatform.parse("linux/amd64"))
    result = push(local, f"{reg.host}/team-a/busybox", f"{reg.host}/team-b/busybox")
    assert (result.mounted, result.uploaded, result.skipped) == (4, 0, 0)  # 2 platforms x (config + layer)
