"""The policy as read: its rules, each with its line, and the real tools' own check."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field

from lab.core.errors import InputError, Problem

FORMATS = ("iptables", "nft", "csv", "yaml")


@dataclass
class PolicyRule:
    """One rule of the engineer's file and where it is. ``chain`` is (family, table, chain)
    as the kernel names it once loaded; ``index`` its position in that chain."""

    line: int
    text: str
    chain: tuple[str, str, str]
    index: int
    row: int | None = None            # CSV: the row number (the header is row 1)


@dataclass
class Policy:
    file: str
    format: str
    text: str                             # the engineer's file
    rules: list[PolicyRule] = field(default_factory=list)
    load_text: str = ""                   # what is loaded (the file itself, or the CSV's translation)
    policies: dict[tuple[str, str, str], tuple[str, int]] = field(default_factory=dict)   # base chain -> (policy, line)
    has_nat: bool = False
    csv: object = None                      # table.CsvPolicy for csv and yaml

    @property
    def loader(self) -> str:
        return "iptables" if self.format == "iptables" else "nft"

    def rule_at(self, chain: tuple[str, str, str], index: int) -> PolicyRule | None:
        return next((r for r in self.rules if r.chain == chain and r.index == index), None)


# -- the real tools' own check -----------------------------------------------------------------


def dry_run(pol: Policy, text: str | None = None) -> None:
    """Load the policy in a throwaway network namespace (the tools' own check); raise
    InputError with their message at the file's line. Skipped where the tools are missing."""
    text = pol.load_text if text is None else text
    tool = "iptables-restore" if pol.loader == "iptables" else "nft"
    if shutil.which("unshare") is None or shutil.which(tool) is None or os.geteuid() != 0:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False) as f:
        f.write(text)
        tmp = f.name
    try:
        # a real load, not only a parse: nft -c and iptables-restore --test miss errors the
        # kernel finds (a jump to a missing chain, an unknown match)
        argv = ["unshare", "-n", "iptables-restore", tmp] if tool == "iptables-restore" \
            else ["unshare", "-n", "sh", "-c", f"ip link add inside type dummy 2>/dev/null; nft -f {tmp}"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    finally:
        os.unlink(tmp)
    if r.returncode == 0:
        return
    msg = (r.stderr or r.stdout).strip().replace(tmp, pol.file)
    line = None
    m = re.search(r"line:? (\d+)", msg) or re.search(re.escape(pol.file) + r":(\d+):", msg)
    if m:
        line = int(m.group(1))
        if pol.format in ("csv", "yaml"):
            rule = next((ru for ru in pol.rules if ru.line == line), None)
            line = rule.row if rule else None
    first = next((ln for ln in msg.splitlines() if ln.strip()), msg)
    raise InputError([Problem(pol.file, "", f"{tool} refuses it: {first.strip()}",
                              "the whole message: " + " / ".join(ln.strip() for ln in msg.splitlines()[1:4] if ln.strip())
                              if len(msg.splitlines()) > 1 else "fix the rule on this line", line)])


def addresses_in(prefixes: list[str], per_prefix: int = 3) -> list[str]:
    """Addresses spanning prefixes: first and last usable, and one in the middle, of each."""
    out: list[str] = []
    for p in prefixes:
        net = ipaddress.ip_network(p)
        if net.num_addresses <= 2:
            picks = [net.network_address, net.broadcast_address]
        else:
            first, last = net.network_address + 1, net.broadcast_address - 1
            picks = [first, net.network_address + net.num_addresses // 2 + 1, last][:per_prefix]
        for a in picks:
            if str(a) not in out:
                out.append(str(a))
    return out
