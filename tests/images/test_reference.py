"""References normalise like docker's and bad ones are refused with the reason."""

from __future__ import annotations

import pytest

from hostrt.images.errors import InvalidReferenceError
from hostrt.images.reference import parse

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest"),
        ("localhost/team/app:dev", "localhost/team/app:dev", "localhost/team/app:dev"),
        ("ghcr.io/o/r/deep_name-x.y:t_1", "ghcr.io/o/r/deep_name-x.y:t_1", "ghcr.io/o/r/deep_name-x.y:t_1"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
        (f"host:5000/app:tag@{D}", f"host:5000/app@{D}", f"host:5000/app@{D}"),
    ],
)
def test_normalisation(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert (str(ref), ref.familiar()) == (full, familiar)
    assert parse(ref.familiar()) == ref


def test_docker_hub_api_host() -> None:
    assert parse("busybox").registry_host == "registry-1.docker.io"
    assert parse("quay.io/x/y").registry_host == "quay.io"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Busybox", "must be lowercase"),
        ("busybox:", "invalid tag ''"),
        ("busybox:-x", "invalid tag '-x'"),
        ("a//b", "invalid name component ''"),
        ("busybox@sha256:1234", "malformed digest"),
        ("busybox@md5:" + "a" * 32, "only sha256"),
        (":latest", "no repository name"),
        ("host:port/x", "invalid registry 'host:port'"),
        ("a/" + "b" * 260, "longer than 255"),
        (" busybox", "spaces"),
    ],
)
def test_invalid_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError, match=reason):
        parse(text)
