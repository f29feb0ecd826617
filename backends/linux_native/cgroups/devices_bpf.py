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
A rule that matches everything (any major and minor, rwm) ends the walk: the rules before
it are never reached. Duplicates are kept once, at their last place.

The verifier's time grows with the paths through the program, and it is the largest cost
of a device program on `create` (for the default list here: 0.36 ms for the 62
instructions of one test-and-return block per rule, 0.15 ms for the 34 of this encoding),
so the encoding is compact: the type is tested once,
then the character rules and the block rules each have a section (a rule of type a goes in
both); a rule jumps to one shared `return 1` or `return 0` when its last test holds instead
of ending in a return of its own."""

from __future__ import annotations

from backends.linux_native.cgroups.device_rules import ALL_ACCESS, Rule

# struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm}, little-endian
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JA = 0x05  # BPF_JMP | BPF_JA
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

_R0, _R1, _R2, _R3, _R4, _R5 = range(6)
_CHAR = 2  # BPF_DEVCG_DEV_CHAR (BLOCK is 1)

# Jump targets, resolved once every instruction is placed: a section's or a rule's end, or
# the shared returns.
_ALLOW, _DENY = "allow", "deny"


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (code | (dst | src << 4) << 8 | (off & 0xFFFF) << 16 | (imm & 0xFFFFFFFF) << 32).to_bytes(8, "little")


class _Program:
    """Instructions whose jumps name a label; `bytes()` resolves them."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, int, int, object, int]] = []
        self.labels: dict[object, int] = {}

    def add(self, code: int, dst: int = 0, src: int = 0, target: object = 0, imm: int = 0) -> None:
        self.insns.append((code, dst, src, target, imm))

    def label(self, name: object) -> None:
        self.labels[name] = len(self.insns)

    def bytes(self) -> bytes:
        out = []
        for i, (code, dst, src, target, imm) in enumerate(self.insns):
            off = self.labels[target] - i - 1 if isinstance(target, (str, tuple)) else target
            out.append(_insn(code, dst, src, off, imm))  # type: ignore[arg-type]
        return b"".join(out)


def _rule(prog: _Program, rule: Rule, next_rule: object) -> bool:
    """One rule of a section (its type already tested); True if it matches every device
    of the section, which ends it."""
    allow, _kind, major, minor, access = rule
    tests = [(_R4, major)] * (major >= 0) + [(_R5, minor)] * (minor >= 0)
    verdict = _ALLOW if allow else _DENY
    if access == ALL_ACCESS:
        # every test but the last skips to the next rule; the last one jumps to the verdict
        for reg, value in tests[:-1]:
            prog.add(_JNE_K, reg, 0, next_rule, value)
        if tests:
            prog.add(_JEQ_K, tests[-1][0], 0, verdict, tests[-1][1])
            return False
        prog.add(_JA, 0, 0, verdict)
        return True
    for reg, value in tests:
        prog.add(_JNE_K, reg, 0, next_rule, value)
    if allow:  # these bits are decided; none left to decide: allowed
        prog.add(_AND32_K, _R3, 0, 0, ALL_ACCESS & ~access)
        prog.add(_JEQ_K, _R3, 0, _ALLOW, 0)
    else:  # an undecided bit denied: denied
        prog.add(_MOV32_X, _R1, _R3)
        prog.add(_AND32_K, _R1, 0, 0, access)
        prog.add(_JNE_K, _R1, 0, _DENY, 0)
    return False


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
    walk = _last_of_each(rules)
    prog = _Program()
    # type -> R2, access -> R3 (the undecided bits), major -> R4, minor -> R5
    prog.add(_LDX_W, _R2, _R1, 0)
    prog.add(_AND32_K, _R2, 0, 0, 0xFFFF)
    prog.add(_LDX_W, _R3, _R1, 0)
    prog.add(_RSH32_K, _R3, 0, 0, 16)
    prog.add(_LDX_W, _R4, _R1, 4)
    prog.add(_LDX_W, _R5, _R1, 8)
    prog.add(_JNE_K, _R2, 0, "block", _CHAR)
    for kind, section in (("c", "char"), ("b", "block")):
        prog.label(section)
        ended = False
        for index, rule in enumerate(walk):
            if rule[1] in (kind, "a"):
                ended = _rule(prog, rule, (section, index))
                prog.label((section, index))
                if ended:
                    break
        if not ended:
            prog.add(_JA, 0, 0, _DENY)
    for verdict, value in ((_DENY, 0), (_ALLOW, 1)):
        if any(target == verdict for _, _, _, target, _ in prog.insns):  # the verifier refuses dead code
            prog.label(verdict)
            prog.add(_MOV64_K, _R0, 0, 0, value)
            prog.add(_EXIT)
    return prog.bytes()


_PROGRAMS: dict[tuple[Rule, ...], bytes] = {}


def program(rules: tuple[Rule, ...]) -> bytes:
    """assemble(RULES), kept per rule list: a process that creates many containers (the
    engine's) assembles its usual list once."""
    found = _PROGRAMS.get(rules)
    if found is None:
        found = _PROGRAMS[rules] = assemble(rules)
    return found


def preload() -> None:
    """Assemble now, in a long-lived process whose forks create containers, the program of
    the rules most containers have: deny all (what dockerd and the engine write), then the
    defaults."""
    from backends.linux_native.cgroups.device_rules import container_rules

    program(container_rules([{"allow": False, "access": "rwm"}]))


def install(cgroup_dir: str, rules: tuple[Rule, ...]) -> None:
    """RULES' program on CGROUP_DIR, in place of the one there (bpf_prog.install)."""
    from backends.linux_native.cgroups import bpf_prog

    bpf_prog.install(cgroup_dir, program(rules))
