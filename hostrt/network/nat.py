"""A network's iptables rules, each tagged with the comment `hostrt:<bridge>` so it can be found again.

- nat POSTROUTING: one MASQUERADE rule; traffic from the subnet leaving through any other
  interface gets the host's address, as Docker does for its bridges.
- filter HOSTRT-FORWARD (jumped to from FORWARD): accept what the bridge's containers send
  and the replies to it. Docker sets FORWARD's policy to DROP when it turns forwarding on,
  and with br_netfilter that drops even traffic between two containers of one bridge;
  Podman's CNI-FORWARD answers the same way. The jump is appended, after Docker's
  DOCKER-USER and isolation chains, so their rules keep the first word; hostrt never
  changes a policy, flushes or touches a chain it did not make.

Without iptables the rules are skipped: containers still reach each other (unless the
host's FORWARD policy drops) and the host.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess

from hostrt.network.networks import Network

CHAIN = "HOSTRT-FORWARD"
_JUMP = ["FORWARD", "-m", "comment", "--comment", "hostrt", "-j", CHAIN]


def _tag(bridge: str) -> list[str]:
    return ["-m", "comment", "--comment", f"hostrt:{bridge}"]


def _rules(network: Network) -> list[tuple[str, list[str]]]:
    bridge, tag = network.bridge, _tag(network.bridge)
    return [("nat", ["POSTROUTING", "-s", network.subnet, "!", "-o", bridge, *tag, "-j", "MASQUERADE"]),
            ("filter", [CHAIN, "-i", bridge, *tag, "-j", "ACCEPT"]),
            ("filter", [CHAIN, "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag,
                        "-j", "ACCEPT"])]


def _iptables(table: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "-t", table, *args], capture_output=True, text=True)


def available() -> bool:
    return shutil.which("iptables") is not None


def install(network: Network) -> None:
    if not available():
        return
    if _iptables("filter", "-C", *_JUMP).returncode != 0:
        _iptables("filter", "-N", CHAIN)  # fails harmlessly when it exists
        if _iptables("filter", "-C", *_JUMP).returncode != 0:
            _iptables("filter", "-A", *_JUMP)
    for table, rule in _rules(network):
        if _iptables(table, "-C", *rule).returncode != 0:
            _iptables(table, "-A", *rule)


def remove(bridge: str) -> None:
    """Every rule tagged for `bridge`, whatever subnet it was made for (the chain and its jump stay)."""
    for table, rule in _installed(bridge):
        _iptables(table, "-D", *shlex.split(rule)[1:])


def installed_for(bridge: str) -> list[str]:
    """The rules hostrt tagged for `bridge` (what tests and prune look for)."""
    return [rule for _, rule in _installed(bridge)]


def _installed(bridge: str) -> list[tuple[str, str]]:
    if not available():
        return []
    found = [("nat", rule) for rule in _iptables("nat", "-S", "POSTROUTING").stdout.splitlines()]
    found += [("filter", rule) for rule in _iptables("filter", "-S", CHAIN).stdout.splitlines()]
    return [(table, rule) for table, rule in found if _comment(rule) == f"hostrt:{bridge}"]


def _comment(rule: str) -> str:
    """The rule's comment, whole: `hostrt:hrtt12` must not select the rule of `hrtt123`."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return ""
    return next((words[i + 1] for i, word in enumerate(words[:-1]) if word == "--comment"), "")
