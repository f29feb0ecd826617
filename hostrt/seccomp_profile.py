"""Docker-style seccomp profiles, resolved into the runtime-spec `linux.seccomp` of one container.

A Docker profile is not yet a filter: a rule may apply only `when` the container has some
capabilities, runs on some architectures or a new enough kernel, or `unless` it does (Docker's
`includes` and `excludes`), and an architecture map says which architectures a filter covers on
each machine (x86_64 with its 32-bit ABIs x86 and x32, aarch64 with arm). Docker resolves a
profile when it creates a container, and so does `resolve`; the runtime then sees a plain OCI
section. `parse` reads a profile file given with `--security-opt seccomp=FILE`, in Docker's format
or already in the runtime-spec's.
"""

from __future__ import annotations

from typing import Any

from hostrt.errors import UsageError

# An image's (OCI) architecture -> libseccomp's name for it, which `when`/`unless` arches use,
# and its SCMP_ARCH_ token, which architectures and the architecture map use.
ARCHITECTURE_NAMES: dict[str, tuple[str, str]] = {
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "386": ("x86", "SCMP_ARCH_X86"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm": ("arm", "SCMP_ARCH_ARM"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loong64": ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "mips64le": ("mipsel64", "SCMP_ARCH_MIPSEL64"),
}

# Docker's architecture map: a machine's architecture and the other ABIs its kernel runs, which
# a filter must cover too (or a 32-bit binary's calls would meet the bad-architecture action).
ARCHITECTURE_MAP: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPS64N32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "SCMP_ARCH_MIPSEL64N32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "SCMP_ARCH_RISCV64": (),
    "SCMP_ARCH_LOONGARCH64": (),
}

# Fields of a profile that pass to the runtime unchanged.
_PASSED_ON = ("flags", "listenerPath", "listenerMetadata")


# Plain classes, not dataclasses: this module is imported by every `hostrt run`, and generating a
# dataclass's methods costs more than resolving the whole profile.
class Arg:
    """One comparison of a syscall argument (`value_two` is the MASKED_EQ operand)."""

    __slots__ = ("index", "value", "value_two", "op")

    def __init__(self, index: int, value: int, value_two: int = 0, op: str = "SCMP_CMP_EQ") -> None:
        self.index, self.value, self.value_two, self.op = index, value, value_two, op


class When:
    """A condition on the container: all of its parts must hold for `when`, any for `unless`.
    Arches are libseccomp's names: amd64, x86, x32, arm64, arm, s390x, ..."""

    __slots__ = ("caps", "arches", "min_kernel")

    def __init__(self, caps: tuple[str, ...] = (), arches: tuple[str, ...] = (),
                 min_kernel: tuple[int, int] | None = None) -> None:
        self.caps, self.arches, self.min_kernel = caps, arches, min_kernel


class Rule:
    __slots__ = ("names", "action", "errno", "args", "when", "unless")

    def __init__(self, names: tuple[str, ...], action: str = "SCMP_ACT_ALLOW", errno: int | None = None,
                 args: tuple[Arg, ...] = (), when: When | None = None, unless: When | None = None) -> None:
        self.names, self.action, self.errno, self.args, self.when, self.unless = names, action, errno, args, when, unless


class Profile:
    """A whole profile; `architectures` as given, else taken from `architecture_map`."""

    __slots__ = ("default_action", "default_errno", "rules", "architectures", "architecture_map", "passed_on")

    def __init__(self, default_action: str, default_errno: int | None = None, rules: tuple[Rule, ...] = (),
                 architectures: tuple[str, ...] | None = None,
                 architecture_map: dict[str, tuple[str, ...]] | None = None,
                 passed_on: dict[str, Any] | None = None) -> None:
        self.default_action, self.default_errno, self.rules = default_action, default_errno, rules
        self.architectures = architectures
        self.architecture_map = ARCHITECTURE_MAP if architecture_map is None else architecture_map
        self.passed_on = passed_on or {}


class Container:
    """What a profile's conditions look at; `kernel` None when not known here (taken as new enough)."""

    __slots__ = ("caps", "arch", "kernel")

    def __init__(self, caps: frozenset[str], arch: str, kernel: tuple[int, int] | None) -> None:
        self.caps, self.arch, self.kernel = caps, arch, kernel


def _holds(cond: When, ctr: Container, every: bool) -> bool:
    """Whether all (`every`) or any of the condition's parts hold; an empty part is left out."""
    parts = []
    if cond.caps:
        parts.append(all(c in ctr.caps for c in cond.caps) if every else any(c in ctr.caps for c in cond.caps))
    if cond.arches:
        parts.append(ctr.arch in cond.arches)
    if cond.min_kernel is not None:
        parts.append(ctr.kernel is None or ctr.kernel >= cond.min_kernel)
    return all(parts) if every else any(parts)


def applies(rule: Rule, ctr: Container) -> bool:
    if rule.when is not None and not _holds(rule.when, ctr, every=True):
        return False
    return rule.unless is None or not _holds(rule.unless, ctr, every=False)


def resolve(profile: Profile, caps: list[str], architecture: str, kernel: tuple[int, int] | None = None) -> dict[str, Any]:
    """The `linux.seccomp` section for a container with these (bounding) capabilities, on a
    machine of this OCI architecture (`amd64`, `arm64`, ...) running this kernel version."""
    arch_name, scmp_arch = ARCHITECTURE_NAMES.get(architecture, (architecture, ""))
    ctr = Container(frozenset(caps), arch_name, kernel)
    section: dict[str, Any] = {"defaultAction": profile.default_action}
    if profile.default_errno is not None:
        section["defaultErrnoRet"] = profile.default_errno
    if profile.architectures is not None:
        section["architectures"] = list(profile.architectures)
    elif scmp_arch in profile.architecture_map:
        section["architectures"] = [scmp_arch, *profile.architecture_map[scmp_arch]]
    section.update(profile.passed_on)
    syscalls = []
    for rule in profile.rules:
        if not applies(rule, ctr):
            continue
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno is not None:
            entry["errnoRet"] = rule.errno
        if rule.args:
            entry["args"] = [{"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op} for a in rule.args]
        syscalls.append(entry)
    section["syscalls"] = syscalls
    return section


def parse(data: Any, source: str) -> Profile | None:
    """A profile from its JSON document (Docker's format or the runtime-spec's); None when it
    confines nothing (no default action and no rules), as Docker reads such a file."""
    def bad(why: str) -> UsageError:
        return UsageError(f"invalid seccomp profile {source}: {why}")

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    if not data.get("defaultAction") and not data.get("syscalls"):
        return None
    if data.get("architectures") and data.get("archMap"):
        raise bad("both 'architectures' and 'archMap' are given; use one")
    try:
        rules = tuple(_rule(item) for item in data.get("syscalls") or ())
        arch_map = {entry["architecture"]: tuple(entry.get("subArchitectures") or ())
                    for entry in data.get("archMap") or ()}
        return Profile(
            default_action=str(data.get("defaultAction") or "SCMP_ACT_ALLOW"),
            default_errno=_int_or_none(data.get("defaultErrnoRet")),
            rules=rules,
            architectures=tuple(data["architectures"]) if data.get("architectures") else None,
            architecture_map=arch_map,
            passed_on={key: data[key] for key in _PASSED_ON if data.get(key)},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise bad(f"{err.__class__.__name__}: {err}") from None


def _rule(item: dict[str, Any]) -> Rule:
    if item.get("name") and item.get("names"):
        raise ValueError("a rule gives both 'name' and 'names'")
    names = tuple(item["names"]) if item.get("names") else (str(item["name"]),)
    args = tuple(Arg(int(a["index"]), int(a.get("value", 0)), int(a.get("valueTwo", 0)), str(a["op"]))
                 for a in item.get("args") or ())
    return Rule(names, str(item["action"]), _int_or_none(item.get("errnoRet")), args,
                _condition(item.get("includes")), _condition(item.get("excludes")))


def _condition(raw: dict[str, Any] | None) -> When | None:
    if not raw:
        return None
    kernel = raw.get("minKernel")
    min_kernel = None
    if kernel:
        major, _, minor = str(kernel).partition(".")
        min_kernel = (int(major), int(minor.partition(".")[0] or 0))
    return When(tuple(raw.get("caps") or ()), tuple(raw.get("arches") or ()), min_kernel)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def kernel_version(release: str) -> tuple[int, int] | None:
    """(major, minor) of a `uname -r` string such as `6.1.0-18-amd64`; None if it is not one."""
    major, _, rest = release.partition(".")
    minor = ""
    for char in rest:
        if not char.isdigit():
            break
        minor += char
    return (int(major), int(minor)) if major.isdigit() and minor else None
