"""SSH key material for a machine: the client key hostrt logs in with and the guest's host key.

Both are ed25519, generated on the host at `machine init`. The host key's public half is
pinned: hostrt accepts no other key from the guest. Private keys are written 0600 from
the moment the file exists (never chmod after the fact).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; refuses to overwrite an existing key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def openssh_private(key: Ed25519PrivateKey) -> bytes:
    """The key in OpenSSH's private format (what paramiko and ssh -i read)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )


def openssh_public(key: Ed25519PrivateKey, comment: str = "") -> str:
    """`ssh-ed25519 AAAA... comment`, as authorized_keys and known_hosts hold it."""
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()
