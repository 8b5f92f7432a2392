"""Firewall nodes rendered to nftables, and read back: counters, run-time rules, conntrack.

One table per node, ``inet icelab``, loaded atomically with ``nft -f`` inside the node's
namespace (never the root namespace's ruleset). Layout:

- ``forward`` (hook forward): traffic from an inside interface to an outside one jumps to
  ``outbound``, the other way to ``inbound``; inside-to-inside and outside-to-outside
  traffic is not the firewall's business and passes.
- ``outbound`` / ``inbound``: the numbered rules of the model in order, each with its own
  counter and a comment ``rN: name``, ending with the default policy as a counted rule, so
  "rule 9 (default drop, inbound) dropped 36 packets" can be read off directly.
- stateless mode: ``notrack`` in raw prerouting/output, so conntrack never sees a packet
  and ``ct state`` cannot help; every direction needs its own rule (as on a router ACL).

A user's own ruleset file is loaded verbatim after the icelab variables ($inside,
$outside, $if_<neighbour>, $addr_<node>), through ``include``.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field

from lab.core.errors import LabError
from lab.model.firewall import FirewallPolicy, Rule, nft_variable, render_defines, rule_from_spec

TABLE = "icelab"


def _ports(ranges: list[tuple[int, int]]) -> str:
    words = [str(a) if a == b else f"{a}-{b}" for a, b in ranges]
    return words[0] if len(words) == 1 else "{ " + ", ".join(words) + " }"


def _addrs(words: list[str]) -> str:
    if len(words) == 1:
        return words[0]
    return "{ " + ", ".join(words) + " }"


def rule_text(node: str, r: Rule) -> str:
    """One nft rule: matches, a counter, an optional log, the verdict, the comment."""
    parts = []
    if r.match:
        parts.append(r.match)
    if r.proto == "icmp":
        parts.append("meta l4proto icmp")
    elif r.proto in ("tcp", "udp"):
        parts.append(f"meta l4proto {r.proto}")
    if r.src:
        parts.append(f"ip saddr {_addrs(r.src)}")
    if r.dst:
        parts.append(f"ip daddr {_addrs(r.dst)}")
    if r.sport:
        parts.append(f"{r.proto} sport {_ports(r.sport)}")
    if r.dport:
        parts.append(f"{r.proto} dport {_ports(r.dport)}")
    if r.action in ("drop", "reject"):
        # remember who was refused (remote address, protocol, remote port) with a counter each
        key = "ip saddr . meta l4proto . th sport" if r.direction == "inbound" else "ip daddr . meta l4proto . th dport"
        parts.append(f"update @{peers_set(r)} {{ {key} }}")
    parts.append("counter")
    if r.log:
        parts.append(f'log prefix "icelab {node} r{r.number}: "')
    parts.append(r.action)
    comment = f"r{r.number}: {r.name}".replace('"', "'")
    parts.append(f'comment "{comment}"')
    return " ".join(parts)


def peers_set(r: Rule) -> str:
    return f"refused_r{r.number}"


def _peers_block(r: Rule) -> list[str]:
    key = "ip saddr . meta l4proto . th sport" if r.direction == "inbound" else "ip daddr . meta l4proto . th dport"
    return [f"\tset {peers_set(r)} {{", f"\t\ttypeof {key}", "\t\tflags dynamic", "\t\tsize 4096",
            "\t\tcounter", "\t}"]


def _set_block(name: str, prefixes: list[str]) -> list[str]:
    lines = [f"\tset {name} {{", "\t\ttype ipv4_addr", "\t\tflags interval"]
    if prefixes:
        lines.append("\t\telements = { " + ", ".join(prefixes) + " }")
    lines.append("\t}")
    return lines


def ruleset(node: str, p: FirewallPolicy) -> str:
    """The node's whole nftables input (for ``nft -f``)."""
    if p.ruleset is not None:
        return (f"# icelab variables for {node}; then your file, verbatim\n" + render_defines(p.defines)
                + f'include "{p.ruleset}"\n')
    ins = "{ " + ", ".join(f'"{i}"' for i in p.inside) + " }"
    outs = "{ " + ", ".join(f'"{i}"' for i in p.outside) + " }"
    lines = [f"# icelab firewall '{node}' ({p.mode}): inside {', '.join(p.inside)}; outside {', '.join(p.outside)}",
             f"table inet {TABLE} {{"]
    for name, prefixes in p.sets.items():
        lines += _set_block(nft_variable(name), prefixes)
    for r in p.rules:
        if r.action in ("drop", "reject"):
            lines += _peers_block(r)
    if p.mode == "stateless":
        # no connection tracking at all: ct state is always 'untracked'
        lines += ["\tchain notrack_in {", "\t\ttype filter hook prerouting priority raw; policy accept;",
                  "\t\tnotrack", "\t}",
                  "\tchain notrack_out {", "\t\ttype filter hook output priority raw; policy accept;",
                  "\t\tnotrack", "\t}"]
    lines += ["\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;",
              f"\t\tiifname {ins} oifname {outs} jump outbound",
              f"\t\tiifname {outs} oifname {ins} jump inbound", "\t}"]
    for d in ("outbound", "inbound"):
        lines.append(f"\tchain {d} {{")
        lines += ["\t\t" + rule_text(node, r) for r in p.rules if r.direction == d]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def script_lines(node) -> list[str]:
    """Lines for the node's setup script (render.py): load the table atomically."""
    return ["nft -f - <<'NFT'", ruleset(node.name, node.policy).rstrip("\n"), "NFT"]


# -- reading back and changing at run time ------------------------------------------------


@dataclass
class RuleCounter:
    number: int | None      # rN from the comment; None for rules of a user's file without it
    name: str
    table: str
    chain: str
    handle: int
    packets: int
    bytes: int
    action: str = ""
    peers: list[tuple[str, str, int, int]] = field(default_factory=list)   # (address, proto, port, packets)

    def to_dict(self) -> dict:
        return {"number": self.number, "name": self.name, "table": self.table, "chain": self.chain,
                "handle": self.handle, "packets": self.packets, "bytes": self.bytes,
                "refused": [{"address": a, "proto": pr, "port": po, "packets": n} for a, pr, po, n in self.peers]}

    def remote(self, i: int = 0) -> str:
        a, proto, port, _n = self.peers[i]
        return a if proto not in ("tcp", "udp") else f"{a}:{port}/{proto}"

    def sentence(self) -> str:
        """'rule 10 (default drop, inbound) dropped 36 packets from 203.0.113.10:3478/udp (36)'."""
        verb = {"drop": "dropped", "reject": "rejected", "accept": "accepted"}.get(self.action, "matched")
        text = f"rule {self.number} ({self.name}) {verb} {self.packets} packets"
        if self.peers:
            word = "from" if self.chain == "inbound" else "to"
            text += f" {word} " + ", ".join(f"{self.remote(i)} ({self.peers[i][3]})" for i in range(min(3, len(self.peers))))
        return text


class FirewallError(LabError, RuntimeError):
    """nft refused a change, or the rule asked for is not in the live table. Also a
    RuntimeError for the scenario runner, which still catches that."""


def nft(pid: int, *args: str, stdin: str | None = None) -> str:
    """Run nft inside the namespace of ``pid``; raise FirewallError with nft's message."""
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "nft", *args], input=stdin,
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise FirewallError(f"nft {' '.join(args)} failed in the namespace of pid {pid}: {r.stderr.strip()}")
    return r.stdout


def counters(pid: int) -> list[RuleCounter]:
    """Every rule with a counter in the node's ruleset, in rule-number order (then chain order)."""
    data = json.loads(nft(pid, "-j", "list", "ruleset") or '{"nftables": []}')
    out = []
    for item in data.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        c = next((e["counter"] for e in rule.get("expr", []) if isinstance(e, dict) and "counter" in e), None)
        if c is None:
            continue
        comment = rule.get("comment", "")
        number, name = None, comment
        if comment.startswith("r") and ":" in comment and comment[1:comment.index(":")].isdigit():
            number = int(comment[1:comment.index(":")])
            name = comment[comment.index(":") + 1:].strip()
        action = next((k for e in rule.get("expr", []) if isinstance(e, dict)
                       for k in ("accept", "drop", "reject", "jump", "masquerade", "snat", "dnat") if k in e), "")
        out.append(RuleCounter(number, name or f"{rule['chain']} #{rule['handle']}", rule["table"], rule["chain"],
                               rule["handle"], c.get("packets", 0), c.get("bytes", 0), action=action))
    refused = {}
    for item in data.get("nftables", []):
        st = item.get("set")
        if st and st.get("table") == TABLE and st["name"].startswith("refused_r"):
            rows = []
            for e in st.get("elem", []):
                e = e.get("elem", e)
                val = e.get("val", {}).get("concat") if isinstance(e, dict) else None
                if val and len(val) == 3:
                    rows.append((str(val[0]), str(val[1]), int(val[2]) if str(val[2]).isdigit() else 0,
                                 e.get("counter", {}).get("packets", 0)))
            refused[(st["name"][len("refused_r"):])] = sorted(rows, key=lambda r: -r[3])
    for c in out:
        if c.table == TABLE and c.number is not None:
            c.peers = refused.get(str(c.number), [])
    out.sort(key=lambda r: (r.number is None, r.number or 0))
    return out


def add_rule(pid: int, node: str, policy: FirewallPolicy, rule: Rule, before: int | None = None) -> Rule:
    """Add a rule at run time, just before the default rule of its direction (or before rule
    number ``before``, of the same direction); it gets the next free number.
    ``rule.src``/``dst`` are nft words (addresses, prefixes, @set)."""
    existing = counters(pid)
    rule.number = max((c.number or 0 for c in existing), default=0) + 1
    default = next((c for c in existing if c.table == TABLE and c.chain == rule.direction
                    and (c.number == before if before is not None else c.name.startswith("default "))), None)
    if before is not None and default is None:
        raise FirewallError(f"no rule {before} in the {rule.direction} chain of '{node}': "
                            f"'icelab fw show' lists the rules and their numbers")
    where = ["position", str(default.handle)] if default else []
    verb = "insert" if default else "add"
    text = ""
    if rule.action in ("drop", "reject"):
        text += f"add set inet {TABLE} {peers_set(rule)} {{ " + "; ".join(x.strip() for x in _peers_block(rule)[1:-1]) + "; }\n"
    text += f"{verb} rule inet {TABLE} {rule.direction} {' '.join(where)} {rule_text(node, rule)}\n"
    nft(pid, "-f", "-", stdin=text)
    policy.rules.append(rule)
    return rule


def add(network, node: str, spec: dict, before: int | None = None) -> Rule:
    """Add a rule written like the YAML ones to a running lab's firewall, e.g.
    ``add(net, "fw", {"name": "linux return", "direction": "inbound", "action": "accept",
    "proto": "udp", "src": "connect", "sport": 3478, "port": "32768-61000"})``.
    Raises ValueError for a rule that would not validate."""
    rule = rule_from_spec(network.topo, node, spec)
    return add_rule(network.node(node).pid, node, network.topo.nodes[node].policy, rule, before)


def delete_rule(pid: int, policy: FirewallPolicy, which: int | str) -> RuleCounter:
    """Delete one rule of the node's icelab table by number or name, in place (every other
    rule keeps its counter); return its last counter."""
    found = [c for c in counters(pid) if c.table == TABLE and c.number is not None
             and (c.number == which if isinstance(which, int) else c.name == which)]
    if len(found) != 1:
        raise FirewallError(f"no single rule {which!r} in the live table ({len(found)} found): "
                            f"give the rule's number or its exact name")
    c = found[0]
    nft(pid, "delete", "rule", "inet", TABLE, c.chain, "handle", str(c.handle))
    policy.rules[:] = [r for r in policy.rules if r.number != c.number]
    return c
