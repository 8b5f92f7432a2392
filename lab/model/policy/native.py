"""Formats with a real loader: iptables-save output and nftables files. Not re-modelled:
only each rule's chain, position and line are read, for the verdicts and the fixes."""

from __future__ import annotations

import re

from lab.core.errors import InputError, Problem, did_you_mean

from .base import Policy, PolicyRule

# -- iptables-save ---------------------------------------------------------------------------

BUILTIN = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
           "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
           "raw": ("PREROUTING", "OUTPUT"), "security": ("INPUT", "FORWARD", "OUTPUT")}


# iptables' own targets (extensions); any other word after -j names a chain
TARGETS = {"ACCEPT", "DROP", "REJECT", "RETURN", "LOG", "NFLOG", "MASQUERADE", "SNAT", "DNAT", "REDIRECT", "MARK",
           "CONNMARK", "TRACE", "NOTRACK", "CT", "TCPMSS", "QUEUE", "NFQUEUE", "CLASSIFY", "DSCP", "TOS", "TTL",
           "AUDIT", "CHECKSUM", "SET", "TEE", "NETMAP", "TPROXY", "HMARK", "SECMARK", "CONNSECMARK", "IDLETIMER",
           "LED", "RATEEST", "SYNPROXY", "TCPOPTSTRIP", "ULOG"}


def parse_iptables(path: str, text: str) -> Policy:
    pol = Policy(path, "iptables", text, load_text=text)
    problems: list[Problem] = []
    table: str | None = None
    chains: set[str] = set()
    counts: dict[tuple[str, str, str], int] = {}
    open_line = 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            if table is not None:
                problems.append(Problem(path, "", f"table '{line[1:]}' starts before table '{table}' ends",
                                        f"add COMMIT after the rules of *{table}", n))
            table, chains, open_line = line[1:], set(BUILTIN.get(line[1:], ())), n
            if table not in BUILTIN:
                problems.append(Problem(path, "table", f"unknown table '{table}'",
                                        did_you_mean(table, BUILTIN, "tables"), n))
            if table == "nat":
                pol.has_nat = True
            continue
        if table is None:
            problems.append(Problem(path, "", f"'{line[:40]}' is outside any table",
                                    "iptables-save files start each table with a line '*filter' (or *nat ...)", n))
            continue
        if line == "COMMIT":
            table = None
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if len(parts) < 2:
                problems.append(Problem(path, "chain", f"'{line}' is not a chain line",
                                        "write ':NAME POLICY [0:0]' (POLICY is ACCEPT, DROP or - for user chains)", n))
                continue
            chains.add(parts[0])
            if parts[1] != "-":
                if parts[1] not in ("ACCEPT", "DROP"):
                    problems.append(Problem(path, f"{parts[0]}.policy", f"policy '{parts[1]}' is not ACCEPT or DROP",
                                            "a built-in chain's policy is ACCEPT or DROP", n))
                pol.policies[("ip", table, parts[0])] = (parts[1].lower(), n)
            continue
        m = re.match(r"^(?:\[\d+:\d+\]\s+)?-A\s+(\S+)(.*)$", line)
        if not m:
            problems.append(Problem(path, "", f"'{line[:60]}' is not a rule this format holds",
                                    "iptables-save files hold '-A CHAIN ...' rules only (no -I, -D or iptables commands)", n))
            continue
        chain = m.group(1)
        if chain not in chains:
            problems.append(Problem(path, "chain", f"rule for chain '{chain}', which is not declared in *{table}",
                                    did_you_mean(chain, chains, "chains") or f"declare it: ':{chain} - [0:0]'", n))
            continue
        j = re.search(r"\s-j\s+(\S+)", m.group(2))
        if j and j.group(1) not in chains and j.group(1) not in TARGETS:
            problems.append(Problem(path, "target", f"jump to chain '{j.group(1)}', which is not declared in *{table}",
                                    did_you_mean(j.group(1), chains, "chains"), n))
        key = ("ip", table, chain)
        pol.rules.append(PolicyRule(n, re.sub(r"^\[\d+:\d+\]\s+", "", line), key, counts.get(key, 0)))
        counts[key] = counts.get(key, 0) + 1
    if table is not None:
        problems.append(Problem(path, "", f"table '{table}' has no COMMIT", "end every table with a line COMMIT",
                                open_line))
    if problems:
        raise InputError(problems)
    if not pol.rules and not pol.policies:
        raise InputError([Problem(path, "", "no tables in this file", "give the output of iptables-save", 1)])
    return pol


# -- nftables -----------------------------------------------------------------------------

_NOT_RULES = re.compile(r"^(type\s|policy\s|comment\s|devices\s|flags\s|counter\s*$|}\s*$)")


def parse_nft(path: str, text: str) -> Policy:
    """Rules of an nft file in both of nft's forms: ``table ... { chain ... { rule } }`` and
    ``add rule FAMILY TABLE CHAIN rule``. Sets, maps, defines and comments are not rules."""
    pol = Policy(path, "nft", text, load_text=text)
    problems: list[Problem] = []
    counts: dict[tuple[str, str, str], int] = {}
    table: tuple[str, str] | None = None
    chain: str | None = None
    depth = 0                   # brace depth inside a table
    block = None                # a set/map/flowtable/counter block being skipped: its depth
    pending: tuple[int, str] | None = None      # a rule spanning lines
    lines = text.splitlines()

    def add(n: int, rule_text: str, key):
        if "nat" in rule_text.split() or re.search(r"\b(snat|dnat|masquerade)\b", rule_text):
            pol.has_nat = True
        pol.rules.append(PolicyRule(n, rule_text.strip(), key, counts.get(key, 0)))
        counts[key] = counts.get(key, 0) + 1

    for n, raw in enumerate(lines, 1):
        line = re.sub(r"\s+#.*$|^#.*$", "", raw).strip()
        if not line:
            continue
        if pending is not None:
            pending = (pending[0], pending[1] + " " + line.rstrip("\\"))
            if pending[1].count("{") <= pending[1].count("}") and not line.endswith("\\"):
                add(pending[0], pending[1], (table[0], table[1], chain))
                pending = None
            continue
        m = re.match(r"^(add|insert)\s+rule\s+(\w+)\s+(\S+)\s+(\S+)\s+(.*)$", line)
        if m and table is None:
            add(n, m.group(5), (m.group(2), m.group(3), m.group(4)))
            continue
        m = re.match(r"^(?:add\s+)?chain\s+(\w+)\s+(\S+)\s+(\S+)\s*\{(.*)\}\s*$", line)
        if m and table is None:
            pm = re.search(r"policy\s+(\w+)", m.group(4))
            if pm and "hook" in m.group(4):
                pol.policies[(m.group(1), m.group(2), m.group(3))] = (pm.group(1), n)
            if "type nat" in m.group(4):
                pol.has_nat = True
            continue
        m = re.match(r"^table\s+(\w+)\s+(\S+)\s*\{$", line) or re.match(r"^table\s+(\S+)\s*\{$", line)
        if m and table is None:
            table = (m.group(1), m.group(2)) if m.lastindex == 2 else ("ip", m.group(1))
            if table[0] not in ("ip", "ip6", "inet", "arp", "bridge", "netdev"):
                problems.append(Problem(path, "table", f"unknown family '{table[0]}'",
                                        "families: ip, ip6, inet, arp, bridge, netdev", n))
            depth = 1
            continue
        if table is None:
            if re.match(r"^(flush|add|delete|define|include|destroy|create|list)\b", line):
                continue
            problems.append(Problem(path, "", f"'{line[:60]}' is outside any table",
                                    "rules go inside 'table FAMILY NAME { chain NAME { ... } }' or 'add rule ...'", n))
            continue
        if block is not None:
            depth += line.count("{") - line.count("}")
            if depth < block:
                block = None
            continue
        if chain is None:
            m = re.match(r"^chain\s+(\S+)\s*\{$", line)
            if m:
                chain, depth = m.group(1), depth + 1
                continue
            if re.match(r"^(set|map|flowtable|counter|quota|ct|limit|secmark|synproxy)\s+\S+.*\{", line):
                block = depth + 1
                depth += line.count("{") - line.count("}")
                if depth < block:
                    block = None
                continue
            if line == "}":
                table, depth = None, 0
                continue
            if re.match(r"^(flags|comment)\b", line):
                continue
            problems.append(Problem(path, "", f"'{line[:60]}' is not a chain, set or map of table {table[1]}",
                                    "a table holds 'chain NAME { ... }', 'set NAME { ... }' and 'map NAME { ... }'", n))
            continue
        # inside a chain
        if line == "}":
            chain, depth = None, depth - 1
            continue
        if line.startswith("type "):
            if "type nat" in line:
                pol.has_nat = True
            pm = re.search(r"policy\s+(\w+)", line)
            if pm:
                pol.policies[(table[0], table[1], chain)] = (pm.group(1), n)
            continue
        if line.startswith("policy "):
            pol.policies[(table[0], table[1], chain)] = (line.split()[1].rstrip(";"), n)
            continue
        if _NOT_RULES.match(line):
            continue
        if line.count("{") > line.count("}") or line.endswith("\\"):
            pending = (n, line.rstrip("\\"))
            continue
        add(n, line, (table[0], table[1], chain))
    if table is not None:
        problems.append(Problem(path, "", f"table {table[1]} is not closed", "add the missing '}'", len(lines)))
    if problems:
        raise InputError(problems)
    if not pol.rules and not pol.policies:
        raise InputError([Problem(path, "", "no rules in this file", "give the output of 'nft list ruleset'", 1)])
    return pol


