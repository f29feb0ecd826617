"""Device rules (cgroups/device_rules.py) -> a BPF_PROG_TYPE_CGROUP_DEVICE program, as the
bytes of its instructions: what cgroup v2 has in place of v1's devices controller.

The kernel calls the program with struct bpf_cgroup_dev_ctx {u32 access_type, major,
minor}, access_type being (access << 16) | type (type: BLOCK 1, CHAR 2; access: MKNOD 1,
READ 2, WRITE 4, several at once for an open(O_RDWR)), and lets the access through when it
returns 1.

Rules are evaluated in order and the last one that matches wins, bit by bit of access: a
requested bit is allowed or denied by the last rule whose type, major and minor match and
whose access holds that bit, and the request passes only if each of its bits was allowed.
Nothing is allowed before the first rule. This gives what cgroup v1's devices controller
(and runc's emulation of it) answers for the rules v1 accepts — split access on one device
(`c 1:3 r`, then `c 1:3 w`) allows an open for read and write, a later `deny w` takes the
write back out of an earlier `rwm` — and, where v1 and runc refuse a rule (a hole punched
in a wildcard), the answer the order of the rules gives.

The program walks the rules from the last to the first, keeping the requested bits no rule
has decided yet in R3:
    deny rule that matches and holds an undecided bit   -> return 0
    allow rule that matches                             -> drop its bits; none left -> return 1
    no rule left                                        -> return 0
A rule that matches everything (type a, any major and minor, rwm) ends the walk: the rules
before it are never reached. Duplicates are kept once, at their last place."""

from __future__ import annotations

from backends.linux_native.cgroups.device_rules import ALL_ACCESS, Rule

# struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm}, little-endian
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

_R0, _R1, _R2, _R3, _R4, _R5 = range(6)
_TYPE = {"b": 1, "c": 2}
_NEXT = None  # the offset of a jump to the next rule, known once the rule's block is complete

INSTRUCTION_SIZE = 8


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (code | (dst | src << 4) << 8 | (off & 0xFFFF) << 16 | (imm & 0xFFFFFFFF) << 32).to_bytes(8, "little")


# type -> R2, access -> R3 (the undecided bits), major -> R4, minor -> R5
_PROLOGUE = b"".join((
    _insn(_LDX_W, _R2, _R1, 0), _insn(_AND32_K, _R2, imm=0xFFFF),
    _insn(_LDX_W, _R3, _R1, 0), _insn(_RSH32_K, _R3, imm=16),
    _insn(_LDX_W, _R4, _R1, 4),
    _insn(_LDX_W, _R5, _R1, 8),
))


def _return(value: int) -> list[tuple]:
    return [(_MOV64_K, _R0, 0, 0, value), (_EXIT, 0, 0, 0, 0)]


def _block(rule: Rule) -> list[tuple]:
    """The instructions of one rule, jumps to the next rule with offset _NEXT."""
    allow, kind, major, minor, access = rule
    block: list[tuple] = []
    if kind != "a":
        block.append((_JNE_K, _R2, 0, _NEXT, _TYPE[kind]))
    if major >= 0:
        block.append((_JNE_K, _R4, 0, _NEXT, major))
    if minor >= 0:
        block.append((_JNE_K, _R5, 0, _NEXT, minor))
    if not allow:
        if access != ALL_ACCESS:  # rwm holds every undecided bit: no test
            block += [(_MOV32_X, _R1, _R3, 0, 0), (_AND32_K, _R1, 0, 0, access), (_JEQ_K, _R1, 0, _NEXT, 0)]
        return block + _return(0)
    if access != ALL_ACCESS:
        block += [(_AND32_K, _R3, 0, 0, ALL_ACCESS & ~access), (_JNE_K, _R3, 0, _NEXT, 0)]
    return block + _return(1)


def _last_of_each(rules: tuple[Rule, ...]) -> list[Rule]:
    """The rules from the last to the first, each kept at its last place only (an earlier
    copy decides nothing the later one has not), without those that match no access."""
    seen: set[Rule] = set()
    walk = []
    for rule in reversed(rules):
        if rule not in seen and rule[4]:
            seen.add(rule)
            walk.append(rule)
    return walk


def assemble(rules: tuple[Rule, ...]) -> bytes:
    """The program for RULES (device_rules.container_rules), as instruction bytes."""
    out = [_PROLOGUE]
    for rule in _last_of_each(rules):
        block = _block(rule)
        end = len(block)
        out += [_insn(code, dst, src, end - i - 1 if off is _NEXT else off, imm)
                for i, (code, dst, src, off, imm) in enumerate(block)]
        if rule[1] == "a" and rule[2] < 0 and rule[3] < 0 and rule[4] == ALL_ACCESS:
            return b"".join(out)  # it matched everything: nothing before it is reached
    out += [_insn(code, dst, src, off, imm) for code, dst, src, off, imm in _return(0)]
    return b"".join(out)


_PROGRAMS: dict[tuple[Rule, ...], bytes] = {}


def program(rules: tuple[Rule, ...]) -> bytes:
    """assemble(RULES), kept per rule list: a process that creates many containers (the
    engine's) assembles its usual list once."""
    found = _PROGRAMS.get(rules)
    if found is None:
        found = _PROGRAMS[rules] = assemble(rules)
    return found


def install(cgroup_dir: str, rules: tuple[Rule, ...]) -> None:
    """RULES' program on CGROUP_DIR, in place of the one there (bpf_prog.install)."""
    from backends.linux_native.cgroups import bpf_prog

    bpf_prog.install(cgroup_dir, program(rules))
