"""Rule tables without a loader of their own: a change request's CSV and the lab's YAML rules.

Both become rows (``Row``), and rows become one nftables file: table ``inet csv_rules``, chain
``forward``, default drop, one rule a row in order, each rule's comment naming its row. The
translation is shown to the engineer (``icelab policy check --show-translation``); the verdicts
name rows, never the translation's lines.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass, field

from lab.core.errors import InputError, Problem, did_you_mean

from ..loader import load_yaml
from .base import Policy, PolicyRule

TABLE = ("inet", "csv_rules", "forward")

ALIASES = {
    "name": ("name", "rule", "rule name", "rule_name", "id", "description", "desc", "comment"),
    "direction": ("direction", "dir"),
    "src_zone": ("source zone", "src zone", "src_zone", "source_zone", "from zone", "from_zone", "from"),
    "dst_zone": ("destination zone", "dst zone", "dst_zone", "destination_zone", "to zone", "to_zone", "to"),
    "source": ("source", "src", "source address", "src address", "source ip", "src ip", "source_address",
               "sources", "src_ip", "source addresses"),
    "destination": ("destination", "dst", "dest", "destination address", "dst address", "destination ip",
                    "dst ip", "destination_address", "destinations", "dst_ip", "destination addresses"),
    "protocol": ("protocol", "proto", "ip protocol"),
    "dport": ("destination port", "destination ports", "dport", "dports", "dst port", "dst ports", "port", "ports",
              "dst_port", "destination_port", "service port", "service ports", "dest port", "dest ports"),
    "sport": ("source port", "source ports", "sport", "sports", "src port", "src ports", "src_port", "source_port"),
    "action": ("action", "verdict", "decision"),
}
INSIDE = ("inside", "trust", "trusted", "lan", "internal", "private", "agents", "office", "corp")
OUTSIDE = ("outside", "untrust", "untrusted", "wan", "internet", "external", "public", "cloud")
ACTIONS = {"accept": "accept", "allow": "accept", "permit": "accept", "pass": "accept",
           "drop": "drop", "deny": "drop", "block": "drop", "discard": "drop", "reject": "reject"}
PROTOS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "any": "any", "ip": "any", "all": "any", "*": "any"}


@dataclass
class Row:
    row: int                              # CSV row (header = 1) or YAML line
    name: str
    direction: str                        # outbound / inbound
    src: list[str]                        # prefixes; [] = any
    dst: list[str]
    proto: str
    dport: list[tuple[int, int]]
    sport: list[tuple[int, int]]
    action: str
    raw: str = ""
    cells: list[str] = field(default_factory=list)     # CSV: the row's cells as written


@dataclass
class CsvPolicy:
    rows: list[Row] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    columns: dict[str, int] = field(default_factory=dict)     # field -> column index
    delimiter: str = ","
    mode: str = "stateful"
    interfaces: tuple[str, str] = ("inside", "outside")
    objects: dict[str, list[str]] = field(default_factory=dict)


def _words(value: str) -> list[str]:
    return [w for w in re.split(r"[;|\s,]+", value.strip()) if w]


def parse_ports(value: str, err) -> list[tuple[int, int]] | None:
    if value.strip().lower() in ("", "any", "*", "all"):
        return []
    out = []
    for w in _words(value):
        m = re.match(r"^(\d+)(?:[-:](\d+))?$", w)
        if not m:
            err(f"'{w}' is not a port or a range", "write 3478, 49152-65535 or a list: 443;3478")
            return None
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not (0 < lo <= hi <= 65535):
            err(f"'{w}' is not a port range between 1 and 65535 (low first)", "write e.g. 49152-65535")
            return None
        out.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(out):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def parse_addresses(value: str, objects: dict[str, list[str]], err) -> list[str] | None:
    if value.strip().lower() in ("", "any", "*", "all", "0.0.0.0/0"):
        return []
    out: list[str] = []
    for w in _words(value):
        if w in objects:
            out += objects[w]
            continue
        m = re.match(r"^(\d+\.\d+\.\d+\.\d+)-(\d+\.\d+\.\d+\.\d+)$", w)
        try:
            if m:
                a, b = ipaddress.ip_address(m.group(1)), ipaddress.ip_address(m.group(2))
                out += [str(n) for n in ipaddress.summarize_address_range(a, b)]
            else:
                out.append(str(ipaddress.ip_network(w, strict=False)))
        except (ValueError, TypeError):
            err(f"'{w}' is not an address, a prefix, a range or a known object",
                did_you_mean(w, objects, "objects") if objects else "give --objects FILE for named addresses")
            return None
    return [str(n) for n in ipaddress.collapse_addresses(ipaddress.ip_network(x) for x in out)]


def read_objects(path: str) -> dict[str, list[str]]:
    """Named address objects: a CSV with columns name and address(es) (one a row, or a list;
    a name given on several rows collects them; members may name other objects)."""
    try:
        text = open(path, encoding="utf-8-sig").read()
    except OSError as exc:
        raise InputError([Problem(path, "", f"cannot read the objects file: {exc}", "give --objects FILE (a CSV)")])
    rows = list(csv.reader(io.StringIO(text), delimiter=";" if text.count(";") > text.count(",") else ","))
    if not rows:
        raise InputError([Problem(path, "", "the objects file is empty", "columns: name, address", 1)])
    head = [h.strip().lower() for h in rows[0]]
    ni = next((i for i, h in enumerate(head) if h in ("name", "object", "object name")), None)
    ai = next((i for i, h in enumerate(head) if h in ("address", "addresses", "value", "members", "ip", "prefix",
                                                       "network", "member")), None)
    if ni is None or ai is None:
        raise InputError([Problem(path, "header", f"columns {rows[0]} have no name and address",
                                  "the header must name a 'name' column and an 'address' (or members) column", 1)])
    raw: dict[str, list[tuple[int, str]]] = {}
    for n, r in enumerate(rows[1:], 2):
        if not any(c.strip() for c in r):
            continue
        if len(r) <= max(ni, ai):
            raise InputError([Problem(path, f"row {n}", "too few columns", "each row: name, address", n)])
        raw.setdefault(r[ni].strip(), []).extend((n, w) for w in _words(r[ai]))
    out: dict[str, list[str]] = {}
    problems: list[Problem] = []

    def resolve(name: str, seen: tuple[str, ...]) -> list[str]:
        if name in out:
            return out[name]
        got: list[str] = []
        for n, w in raw[name]:
            if w in raw:
                if w in seen:
                    problems.append(Problem(path, name, f"object '{w}' contains itself", "remove the loop", n))
                    continue
                got += resolve(w, seen + (w,))
                continue
            try:
                got.append(str(ipaddress.ip_network(w, strict=False)))
            except ValueError:
                problems.append(Problem(path, f"{name}.address", f"'{w}' is not an address, a prefix or an object",
                                        did_you_mean(w, raw, "objects"), n))
        out[name] = got
        return got

    for name in raw:
        resolve(name, (name,))
    if problems:
        raise InputError(problems)
    return out


def _direction(value: str | None, src_zone: str | None, dst_zone: str | None, err) -> str | None:
    if value:
        v = value.strip().lower()
        if v in ("outbound", "out", "egress", "outgoing"):
            return "outbound"
        if v in ("inbound", "in", "ingress", "incoming"):
            return "inbound"
        err(f"direction '{value}' is not outbound or inbound", "write outbound or inbound (or give zones)")
        return None
    zs, zd = (src_zone or "").strip().lower(), (dst_zone or "").strip().lower()
    if zs in INSIDE and zd in OUTSIDE:
        return "outbound"
    if zs in OUTSIDE and zd in INSIDE:
        return "inbound"
    err(f"zones '{src_zone}' -> '{dst_zone}' are not inside -> outside or outside -> inside",
        f"inside zones: {', '.join(INSIDE)}; outside zones: {', '.join(OUTSIDE)}")
    return None


def parse_csv(path: str, text: str, objects_path: str | None, mode: str,
              interfaces: tuple[str, str]) -> Policy:
    objects = read_objects(objects_path) if objects_path else {}
    text = text.lstrip("\ufeff")
    delim = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    head = [h.strip().lower() for h in rows[0]]
    cols: dict[str, int] = {}
    problems: list[Problem] = []
    for i, h in enumerate(head):
        f = next((k for k, names in ALIASES.items() if h in names), None)
        if f is None:
            problems.append(Problem(path, f"header column {i + 1}", f"unknown column '{rows[0][i]}'",
                                    did_you_mean(h, [n for v in ALIASES.values() for n in v], "columns"), 1))
        elif f in cols:
            problems.append(Problem(path, f"header column {i + 1}", f"'{rows[0][i]}' repeats column '{f}'",
                                    "keep one of them", 1))
        else:
            cols[f] = i
    for need in ("source", "destination", "action"):
        if need not in cols:
            problems.append(Problem(path, "header", f"no '{need}' column", f"name a column {ALIASES[need][0]!r}", 1))
    if "direction" not in cols and not ("src_zone" in cols and "dst_zone" in cols):
        problems.append(Problem(path, "header", "no direction column and no source/destination zone columns",
                                "add a column 'direction' (outbound/inbound) or 'source zone' and 'destination zone'", 1))
    if problems:
        raise InputError(problems)
    cp = CsvPolicy(header=rows[0], columns=cols, delimiter=delim, mode=mode, interfaces=interfaces, objects=objects)
    raw_lines = text.splitlines()
    for n, r in enumerate(rows[1:], 2):
        if not any(c.strip() for c in r) or r[0].strip().startswith("#"):
            continue

        def get(f):
            return r[cols[f]].strip() if f in cols and cols[f] < len(r) else ""

        def err(message, hint=None, f="row"):
            problems.append(Problem(path, f"row {n}.{f}", message, hint, n))

        direction = _direction(get("direction") or None, get("src_zone"), get("dst_zone"),
                               lambda m, h: err(m, h, "direction"))
        src = parse_addresses(get("source"), objects, lambda m, h: err(m, h, "source"))
        dst = parse_addresses(get("destination"), objects, lambda m, h: err(m, h, "destination"))
        proto = PROTOS.get((get("protocol") or "any").lower())
        if proto is None:
            err(f"protocol '{get('protocol')}' is not tcp, udp, icmp or any", "write tcp, udp, icmp or any", "protocol")
        dport = parse_ports(get("dport"), lambda m, h: err(m, h, "dport"))
        sport = parse_ports(get("sport"), lambda m, h: err(m, h, "sport"))
        action = ACTIONS.get(get("action").lower())
        if action is None:
            err(f"action '{get('action')}' is not allow or deny", "write allow/accept/permit or deny/drop, or reject",
                "action")
        if proto is not None and proto not in ("tcp", "udp") and (dport or sport):
            err(f"ports need protocol tcp or udp, not {get('protocol') or 'any'}", "set the protocol", "protocol")
            continue
        if None in (direction, src, dst, proto, dport, sport, action):
            continue
        cp.rows.append(Row(n, get("name") or f"row {n}", direction, src, dst, proto, dport, sport, action,
                           raw_lines[n - 1] if n - 1 < len(raw_lines) else delim.join(r), list(r)))
    if problems:
        raise InputError(problems)
    if not cp.rows:
        raise InputError([Problem(path, "", "no rule rows", "one rule a row under the header", 2)])
    return _translated(path, "csv", text, cp)


def parse_yaml_rules(path: str, text: str, mode: str, interfaces: tuple[str, str]) -> Policy:
    """The lab's own rules: ``rules:`` as in a firewall node (direction, action, proto, src,
    dst, port, sport, name), optional ``mode``, ``policy`` is default drop, ``sets`` of addresses."""
    doc = load_yaml(path, text)
    data = doc.data if isinstance(doc.data, dict) else {"rules": doc.data}
    problems: list[Problem] = []
    sets = {}
    for k, v in (data.get("sets") or {}).items():
        addrs = v.get("addresses", []) if isinstance(v, dict) else v
        sets[k] = parse_addresses(" ".join(addrs if isinstance(addrs, list) else [str(addrs)]), {},
                                  lambda m, h, k=k: problems.append(doc.problem(("sets", k), m, h))) or []
    for k in data:
        if k not in ("rules", "mode", "sets", "name", "description"):
            problems.append(doc.problem((k,), f"unknown key '{k}'", "keys: rules, mode, sets"))
    mode = data.get("mode", mode)
    cp = CsvPolicy(mode=mode, interfaces=interfaces, objects=sets)
    for j, r in enumerate(data.get("rules") or []):
        at = ("rules", j)
        line = doc.line(at) or 0
        if not isinstance(r, dict):
            problems.append(doc.problem(at, "a rule is a mapping", "{direction, action, proto, src, dst, port}"))
            continue

        def err(m, h=None, f=None, at=at):
            problems.append(doc.problem(at + ((f,) if f else ()), m, h))

        for k in r:
            if k not in ("name", "direction", "action", "proto", "src", "dst", "port", "sport", "log"):
                err(f"unknown field '{k}'", did_you_mean(k, ("name", "direction", "action", "proto", "src", "dst",
                                                             "port", "sport"), "fields"), k)

        def text_of(v):
            return " ".join(map(str, v)) if isinstance(v, list) else str(v if v is not None else "")
        direction = _direction(str(r.get("direction", "")) or None, None, None, lambda m, h: err(m, h, "direction"))
        src = parse_addresses(text_of(r.get("src")), sets, lambda m, h: err(m, h, "src"))
        dst = parse_addresses(text_of(r.get("dst")), sets, lambda m, h: err(m, h, "dst"))
        proto = PROTOS.get(str(r.get("proto", "any")).lower())
        if proto is None:
            err(f"proto '{r.get('proto')}' is not tcp, udp, icmp or any", "write tcp, udp, icmp or any", "proto")
        dport = parse_ports(text_of(r.get("port")), lambda m, h: err(m, h, "port"))
        sport = parse_ports(text_of(r.get("sport")), lambda m, h: err(m, h, "sport"))
        action = ACTIONS.get(str(r.get("action", "")).lower())
        if action is None:
            err(f"action '{r.get('action')}' is not accept, drop or reject", "write accept, drop or reject", "action")
        if None in (direction, src, dst, proto, dport, sport, action):
            continue
        cp.rows.append(Row(line, str(r.get("name") or f"rules[{j}]"), direction, src, dst, proto, dport, sport,
                           action, text.splitlines()[line - 1].strip() if line else ""))
    if problems:
        raise InputError(problems)
    return _translated(path, "yaml", text, cp)


def _set(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else "{ " + ", ".join(xs) + " }"


def _ports(ps: list[tuple[int, int]]) -> str:
    return _set([str(a) if a == b else f"{a}-{b}" for a, b in ps])


def nft_rule(row: Row, interfaces: tuple[str, str]) -> str:
    ins, outs = interfaces
    iif, oif = (ins, outs) if row.direction == "outbound" else (outs, ins)
    words = [f'iifname "{iif}"', f'oifname "{oif}"']
    if row.src:
        words.append(f"ip saddr {_set(row.src)}")
    if row.dst:
        words.append(f"ip daddr {_set(row.dst)}")
    if row.proto != "any":
        words.append(f"meta l4proto {row.proto}")
    if row.sport:
        words.append(f"{row.proto} sport {_ports(row.sport)}")
    if row.dport:
        words.append(f"{row.proto} dport {_ports(row.dport)}")
    words += ["counter", row.action]
    label = f"row {row.row}: {row.name}".replace('"', "'")
    words.append(f'comment "{label}"')
    return " ".join(words)


def _translated(path: str, fmt: str, text: str, cp: CsvPolicy) -> Policy:
    what = "row" if fmt == "csv" else "line"
    head = [f"# {path} ({fmt.upper()}, {cp.mode}) translated by icelab: each rule's comment names its {what}",
            "table inet csv_rules {", "\tchain forward {",
            "\t\ttype filter hook forward priority filter; policy drop;"]
    if cp.mode == "stateful":
        head.append('\t\tct state established,related accept comment "stateful mode: replies of allowed flows"')
    pol = Policy(path, fmt, text, csv=cp)
    lines = list(head)
    for i, row in enumerate(cp.rows):
        lines.append("\t\t" + nft_rule(row, cp.interfaces))
        pol.rules.append(PolicyRule(row.row, row.raw, TABLE, i + (1 if cp.mode == "stateful" else 0), row=row.row))
    lines += ["\t}", "}"]
    pol.load_text = "\n".join(lines) + "\n"
    # the translation's line of each row's rule: the tools' errors name it
    for i, r in enumerate(pol.rules):
        r.line, r.row = r.row, r.row
    pol.policies[TABLE] = ("drop", None)
    return pol


def fix_rows(pol: Policy, need: dict) -> list[str]:
    """Rows (CSV) or rule lines (YAML) for ``need``, in the file's own columns."""
    cp = pol.csv
    direction = "outbound" if need["iif"] == cp.interfaces[0] else "inbound"
    ports = (lambda p: "" if not p else (str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}"))
    name = need.get("name", "softphone")
    if pol.format == "yaml":
        parts = [f"name: {name}", f"direction: {direction}", "action: accept", f"proto: {need['proto']}",
                 f"src: [{', '.join(need['src'])}]", f"dst: [{', '.join(need['dst'])}]"]
        if need.get("sport"):
            parts.append(f"sport: '{ports(need['sport'])}'")
        if need.get("dport"):
            parts.append(f"port: '{ports(need['dport'])}'")
        return ["- {" + ", ".join(parts) + "}"]
    values = {"name": name, "direction": direction, "src_zone": "inside" if direction == "outbound" else "outside",
              "dst_zone": "outside" if direction == "outbound" else "inside",
              "source": _named(cp, need["src"], need.get("src_scope")),
              "destination": _named(cp, need["dst"], need.get("dst_scope")), "protocol": need["proto"],
              "dport": ports(need.get("dport")), "sport": ports(need.get("sport")), "action": "allow"}
    values.update(_style(cp, direction, need["proto"], values))
    cells = [""] * len(cp.header)
    for f, i in cp.columns.items():
        cells[i] = values.get(f, "")
    buf = io.StringIO()
    csv.writer(buf, delimiter=cp.delimiter, lineterminator="").writerow(cells)
    return [buf.getvalue()]


def _named(cp: CsvPolicy, prefixes: list[str], scope: list[str] | None) -> str:
    """The addresses as the engineer's objects name them: the object holding exactly these,
    else the smallest one holding them all that stays inside ``scope`` (the agents' subnet, the
    region's Connect ranges: an object reaching beyond them would widen the fix), else each
    prefix by its own object or as written."""
    want = set(ipaddress.collapse_addresses(ipaddress.ip_network(p) for p in prefixes))
    nets = {k: list(ipaddress.collapse_addresses(ipaddress.ip_network(a) for a in v))
            for k, v in cp.objects.items() if v}

    def inside(ns, outer) -> bool:
        return all(any(n.subnet_of(o) for o in outer) for n in ns)

    exact = [k for k, ns in nets.items() if set(ns) == want]
    if exact:
        return exact[0]
    limit = [ipaddress.ip_network(p) for p in scope] if scope else None
    covering = [k for k, ns in nets.items() if inside(want, ns) and limit is not None and inside(ns, limit)]
    if covering:
        return min(covering, key=lambda k: (sum(n.num_addresses for n in nets[k]), k))
    words = []
    for p in sorted(want):
        words.append(next((k for k, ns in nets.items() if ns == [p]), str(p)))
    return _joiner(cp).join(words)


def _joiner(cp: CsvPolicy) -> str:
    """How the file lists several values in one cell (its own rows show it; a space if none do)."""
    for r in cp.rows:
        for c in r.cells:
            for sep in (";", "|", " "):
                if sep in c.strip() and sep != cp.delimiter:
                    return sep
    return " "


def _style(cp: CsvPolicy, direction: str, proto: str, values: dict) -> dict:
    """The file's own words: zone names, direction and action words, 'any', the protocol's case,
    taken from its rows that allow traffic the same way."""
    out = {}
    same = [r for r in cp.rows if r.direction == direction and r.action == "accept" and r.cells]
    other = [r for r in cp.rows if r.direction != direction and r.cells]

    def cell(rows, f):
        i = cp.columns.get(f)
        return next((r.cells[i].strip() for r in rows if i is not None and i < len(r.cells) and r.cells[i].strip()),
                    None)

    for f in ("src_zone", "dst_zone", "direction", "action"):
        got = cell(same, f)
        if got is None and f in ("src_zone", "dst_zone"):
            # no row goes this way yet: the zones of the other way, swapped
            got = cell(other, "dst_zone" if f == "src_zone" else "src_zone")
        if got is None and f == "action":
            got = cell([r for r in cp.rows if r.action == "accept"], f)
        if got:
            out[f] = got
    i = cp.columns.get("protocol")
    seen = [r.cells[i].strip() for r in cp.rows if i is not None and i < len(r.cells) and r.cells[i].strip()]
    if any(c.isupper() for c in seen if c.lower() in PROTOS):
        out["protocol"] = proto.upper()
    anys = [r.cells[cp.columns[f]].strip() for r in cp.rows for f in ("source", "destination", "dport", "sport")
            if f in cp.columns and cp.columns[f] < len(r.cells)
            and r.cells[cp.columns[f]].strip().lower() in ("any", "*", "all")]
    any_word = anys[0] if anys else "any"
    for f in ("dport", "sport", "source", "destination"):
        if not values.get(f):
            out[f] = any_word
    return out


def insert_rows(pol: Policy, rows: list[str], before) -> str:
    src = pol.text.splitlines()
    if pol.format == "yaml":
        if before is not None:
            at = before.line - 1
            indent = re.match(r"^\s*", src[at]).group(0)
            return "\n".join(src[:at] + [indent + r for r in rows] + src[at:]) + "\n"
        last = max(r.line for r in pol.rules) if pol.rules else len(src)
        indent = re.match(r"^\s*", src[last - 1]).group(0) if pol.rules else "  "
        return "\n".join(src[:last] + [indent + r for r in rows] + src[last:]) + "\n"
    at = (before.row - 1) if before is not None else len(src)
    while before is None and at > 1 and not src[at - 1].strip():
        at -= 1
    return "\n".join(src[:at] + rows + src[at:]) + "\n"
