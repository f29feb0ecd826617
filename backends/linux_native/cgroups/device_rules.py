"""The device rules a container gets, in the order they are evaluated: the spec's
linux.resources.devices, an allow for each node linux.devices asks the runtime to create,
then the default allow list (tables.DEFAULT_DEVICE_RULES), with nothing allowed before the
first rule (runc's start: deny all, whatever the spec says or omits).

A rule is (allow, type, major, minor, access): type "a" (any), "b" or "c"; major and minor
-1 for any (OCI: absent); access a bit set of the kernel's MKNOD, READ, WRITE. An absent or
empty access matches nothing, as in runc and crun."""

from __future__ import annotations

from backends.linux_native.errors import ConfigError
from backends.linux_native.tables import DEFAULT_DEVICE_RULES

Rule = tuple[bool, str, int, int, int]

MKNOD, READ, WRITE = 1, 2, 4
ALL_ACCESS = MKNOD | READ | WRITE
_ACCESS_BITS = {"m": MKNOD, "r": READ, "w": WRITE}
_NUMBER_LIMIT = 1 << 31  # the program compares 32-bit immediates (majors are 12 bits, minors 20)


def access_bits(text: str) -> int:
    bits = 0
    for letter in text:
        if letter not in _ACCESS_BITS:
            raise ConfigError(f"device rule access {text!r}: only r, w and m are allowed")
        bits |= _ACCESS_BITS[letter]
    return bits


def _number(value, what: str) -> int:
    if value is None or value == -1:
        return -1
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _NUMBER_LIMIT:
        raise ConfigError(f"device rule {what} {value!r} is not a device number")
    return value


def parse(raw: dict) -> Rule:
    """One linux.resources.devices entry."""
    kind = raw.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ConfigError(f"device rule type {kind!r} is not a, b or c")
    return (bool(raw.get("allow")), kind, _number(raw.get("major"), "major"), _number(raw.get("minor"), "minor"),
            access_bits(raw.get("access") or ""))


DEFAULTS: tuple[Rule, ...] = tuple((True, kind, major, minor, access_bits(access))
                                   for kind, major, minor, access in DEFAULT_DEVICE_RULES)


def node_allows(nodes: list[tuple[str, int, int]]) -> list[dict]:
    """linux.resources.devices entries that allow the nodes linux.devices creates (type,
    major, minor): what the spec asks to put in the container is usable there. FIFOs are
    not subject to device rules; "u" is an unbuffered character device."""
    return [{"allow": True, "type": "c" if kind == "u" else kind, "major": major, "minor": minor, "access": "rwm"}
            for kind, major, minor in nodes if kind in ("c", "u", "b")]


def container_rules(spec_rules: list[dict] | None) -> tuple[Rule, ...]:
    """The spec's rules (node allows already appended by the caller) then the defaults."""
    return tuple(parse(r) for r in spec_rules or ()) + DEFAULTS
