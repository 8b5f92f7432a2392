"""An engineer's own firewall policy, read in the format they keep it in (``icelab policy``).

Four formats, told apart by their content (``--format`` overrides):

- ``iptables``: ``iptables-save`` output, every table it holds. Not re-modelled: the file is
  loaded as it is with ``iptables-restore``; this module only finds each rule's line.
- ``nft``: ``nft list ruleset`` output or a file for ``nft -f``. Loaded as it is with
  ``nft -f``; this module finds each rule's line (block form and ``add rule`` form).
- ``csv``: a change request's rule table, one rule a row, in order. There is no loader for
  it, so it is translated to an nftables file (shown to the engineer) whose rules carry
  their row in a comment.
- ``yaml``: the lab's own firewall rules (``rules:`` as in a topology's firewall node),
  translated like the CSV.

Every problem is a ``Problem`` with file, line (row), field and hint; the check is then
refused as a whole (exit 2) before anything is built. The syntax of iptables and nft files
is checked by the real tools in a throwaway network namespace (as for a topology's own
nftables file), so what they refuse is refused here with their words and the file's line.
"""

from __future__ import annotations

import re
from pathlib import Path

from lab.core.errors import InputError, Problem, did_you_mean

from .base import FORMATS, Policy, PolicyRule, addresses_in, dry_run
from .native import parse_iptables, parse_nft
from .table import CsvPolicy, Row, fix_rows, insert_rows, parse_csv, parse_yaml_rules

__all__ = ["FORMATS", "Policy", "PolicyRule", "CsvPolicy", "Row", "addresses_in", "apply_fix", "detect", "dry_run",
           "fix_lines", "read"]


def detect(text: str) -> str | None:
    """The format of a policy file, from its content."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        return None
    if any(re.match(r"^\*(filter|nat|mangle|raw|security)\b", ln) for ln in lines) or \
            any(ln.startswith(("-A ", ":INPUT", ":FORWARD", ":OUTPUT")) for ln in lines):
        return "iptables"
    if any(re.match(r"^(table|flush ruleset|add (table|chain|rule)|define)\b", ln) for ln in lines):
        return "nft"
    if re.match(r"^(rules|mode|policy|sets|objects)\s*:", lines[0]) or lines[0].startswith("- "):
        return "yaml"
    if "," in lines[0] or ";" in lines[0]:
        return "csv"
    return None


def read(path: str, fmt: str | None = None, objects: str | None = None, mode: str = "stateful",
         interfaces: tuple[str, str] = ("inside", "outside"), check: bool = True) -> Policy:
    """Read and check a policy file; raise InputError with every problem found."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([Problem(path, "", "file not found", "give the path of the rules file")])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError([Problem(path, "", f"cannot read the file: {exc}", "export it as UTF-8 text")])
    if fmt is None:
        fmt = detect(text)
        if fmt is None:
            raise InputError([Problem(path, "", "cannot tell the format of this file",
                                      "give --format iptables|nft|csv|yaml", 1)])
    if fmt == "iptables":
        pol = parse_iptables(path, text)
        if check:
            dry_run(pol)
    elif fmt == "nft":
        pol = parse_nft(path, text)
        if check:
            dry_run(pol)
    elif fmt in ("csv", "yaml"):
        pol = (parse_csv(path, text, objects, mode, interfaces) if fmt == "csv"
               else parse_yaml_rules(path, text, mode, interfaces))
        if check:
            dry_run(pol)
    else:
        raise InputError([Problem(path, "", f"unknown format '{fmt}'", did_you_mean(fmt, FORMATS, "formats"))])
    return pol


# -- fixes: lines in the engineer's format, placed before the rule that shadows them -----------


def ports_word(lo: int, hi: int, style: str) -> str:
    if lo == hi:
        return str(lo)
    return f"{lo}:{hi}" if style == "iptables" else f"{lo}-{hi}"


def fix_lines(pol: Policy, need: dict, chain: tuple[str, str, str] | None) -> list[str]:
    """The rule lines that let ``need`` through: {proto, src, dst, sport, dport, iif, oif}
    where src/dst are prefix lists and ports (lo, hi) or None."""
    proto = need["proto"]
    if pol.format == "iptables":
        name = chain[2] if chain else "FORWARD"
        out = []
        for s in need["src"]:
            for d in need["dst"]:
                words = [f"-A {name}", f"-i {need['iif']}", f"-o {need['oif']}", f"-s {s}", f"-d {d}", f"-p {proto}",
                         f"-m {proto}"]
                if need.get("sport"):
                    words.append(f"--sport {ports_word(*need['sport'], 'iptables')}")
                if need.get("dport"):
                    words.append(f"--dport {ports_word(*need['dport'], 'iptables')}")
                words.append("-j ACCEPT")
                out.append(" ".join(words))
        return out
    if pol.format == "nft":
        def addrs(xs):
            return xs[0] if len(xs) == 1 else "{ " + ", ".join(xs) + " }"
        words = [f'iifname "{need["iif"]}"', f'oifname "{need["oif"]}"', f"ip saddr {addrs(need['src'])}",
                 f"ip daddr {addrs(need['dst'])}"]
        if need.get("sport"):
            words.append(f"{proto} sport {ports_word(*need['sport'], 'nft')}")
        if need.get("dport"):
            words.append(f"{proto} dport {ports_word(*need['dport'], 'nft')}")
        words += ["counter", "accept"]
        return [" ".join(words)]
    return fix_rows(pol, need)


def apply_fix(pol: Policy, lines: list[str], before: PolicyRule | None,
              chain: tuple[str, str, str] | None) -> str:
    """The engineer's file with ``lines`` inserted before ``before`` (or at the end of
    ``chain`` when the chain's policy decided)."""
    src = pol.text.splitlines()
    if pol.format == "csv":
        return insert_rows(pol, lines, before)
    if before is not None:
        at = before.line - 1
        indent = re.match(r"^\s*", src[at]).group(0)
        if pol.format == "nft" and re.match(r"^\s*(add|insert)\s+rule", src[at]):
            fam, tab, ch = before.chain
            # 'add rule' lines load in file order: one placed before the shadowing one goes first
            new = [f"{indent}add rule {fam} {tab} {ch} {ln}" for ln in lines]
        else:
            new = [indent + ln for ln in lines]
        return "\n".join(src[:at] + new + src[at:]) + "\n"
    # the chain's policy decided: add at the end of the chain
    if pol.format == "iptables":
        table = chain[1] if chain else "filter"
        t_at = next(i for i, ln in enumerate(src) if ln.strip() == f"*{table}")
        commit = next(i for i in range(t_at, len(src)) if src[i].strip() == "COMMIT")
        return "\n".join(src[:commit] + lines + src[commit:]) + "\n"
    fam, tab, ch = chain
    last = [r for r in pol.rules if r.chain == chain]
    pol_line = pol.policies.get(chain, (None, None))[1]
    if last and re.match(r"^\s*(add|insert)\s+rule", src[last[-1].line - 1]):
        at = last[-1].line
        return "\n".join(src[:at] + [f"add rule {fam} {tab} {ch} {ln}" for ln in lines] + src[at:]) + "\n"
    # block form: before the chain's closing brace
    start = (last[-1].line if last else pol_line) or 1
    depth, at = 0, None
    for i in range(start - 1, len(src)):
        depth += src[i].count("{") - src[i].count("}")
        if depth < 0:
            at = i
            break
    if at is None:
        at = len(src)
    indent = re.match(r"^\s*", src[start - 1]).group(0)
    return "\n".join(src[:at] + [indent + ln for ln in lines] + src[at:]) + "\n"


