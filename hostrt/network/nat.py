"""Outbound NAT: one MASQUERADE rule per network, tagged with a comment so it can be found again.

Traffic from the subnet leaving through any other interface gets the host's address, as
docker does for its bridges. Without iptables the rule is skipped: containers still reach
each other and the host.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

from hostrt.network.networks import Network


def _rule(network: Network) -> list[str]:
    return ["POSTROUTING", "-s", network.subnet, "!", "-o", network.bridge,
            "-m", "comment", "--comment", f"hostrt:{network.bridge}", "-j", "MASQUERADE"]


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", "nat", *args], capture_output=True, text=True)


def available() -> bool:
    return shutil.which("iptables") is not None


def install(network: Network) -> None:
    if available() and _iptables("-C", *_rule(network)).returncode != 0:
        _iptables("-A", *_rule(network))


def remove(bridge: str) -> None:
    """Every rule tagged for `bridge`, whatever subnet it was made for."""
    for rule in installed_for(bridge):
        _iptables("-D", *shlex.split(rule)[1:])


def installed_for(bridge: str) -> list[str]:
    """The NAT rules hostrt tagged for `bridge` (what tests and prune look for)."""
    if not available():
        return []
    rules = _iptables("-S", "POSTROUTING").stdout.splitlines()
    return [rule for rule in rules if _comment(rule) == f"hostrt:{bridge}"]


def _comment(rule: str) -> str:
    """The rule's comment, whole: `hostrt:hrtt12` must not select the rule of `hrtt123`."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return ""
    return next((words[i + 1] for i, word in enumerate(words[:-1]) if word == "--comment"), "")
