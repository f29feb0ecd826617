"""Container IDs (64 hex, as docker) and generated names (adjective_noun)."""

from __future__ import annotations

import re
import secrets

_ADJECTIVES = (
    "agile", "bold", "brave", "calm", "clever", "eager", "fair", "gentle", "happy", "jolly", "keen", "kind",
    "lively", "lucid", "merry", "nimble", "proud", "quiet", "rapid", "sharp", "steady", "swift", "tidy", "witty",
)
_NOUNS = (
    "babbage", "bohr", "curie", "darwin", "dijkstra", "euler", "fermi", "gauss", "hopper", "kepler", "knuth",
    "lamport", "lovelace", "maxwell", "newton", "noether", "pascal", "ritchie", "shannon", "thompson", "turing",
    "volta", "wozniak", "yonath",
)
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")  # docker's rule for --name
ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def new_id() -> str:
    return secrets.token_hex(32)


def short(container_id: str) -> str:
    return container_id[:12]


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
