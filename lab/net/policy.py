"""The engineer's policy on the lab's firewall node: loaded as it is, traced, probed.

- ``load``: ``iptables-restore`` or ``nft -f`` inside the firewall node's namespace (the
  CSV's and YAML's translation is an nft file), then the lab's own additions: NAT when asked
  for and the policy has none (table ``ip icelab_nat``) and ``inet icelab_trace``, which
  marks every packet for ``nft monitor trace`` before any of the policy's chains sees it
  (priority -400, before raw).
- ``Trace``: ``nft monitor trace`` in the node's namespace while probes run: for every packet,
  which rule of which chain gave which verdict. iptables-nft rules are nft rules, so the same
  trace serves both; handles map back to the file's lines (lab.scenario.policy).
- ``serve_targets`` / ``send_batch``: the probe targets on the ``edge`` host (a UDP socket
  per address, so a reply leaves from the address the request went to, as TURN's does) and
  the probes from each agent, sent concurrently with lab/net/probe.py's ``send``.

``python -m lab.net.policy serve|send`` are the processes run inside the nodes.
"""

from __future__ import annotations

import argparse
import json
import re
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from lab.core.errors import LabError
from lab.net import probe

TRACE_TABLE = "icelab_trace"
NAT_TABLE = "icelab_nat"


class PolicyLoadError(LabError):
    """The kernel refused the policy in the lab (after the throwaway namespace took it)."""


def _run(pid: int, argv: list[str], stdin: str | None = None) -> str:
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", *argv], input=stdin, capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise PolicyLoadError(f"{' '.join(argv)} failed in the firewall node: {(r.stderr or r.stdout).strip()}")
    return r.stdout


def load(pid: int, loader: str, text: str, nat_outside: str | None) -> None:
    """Replace the node's whole ruleset with the policy, then add the lab's trace (and NAT)."""
    _run(pid, ["nft", "flush", "ruleset"])
    if loader == "iptables":
        _run(pid, ["iptables-restore"], stdin=text)
    else:
        _run(pid, ["nft", "-f", "-"], stdin=text)
    extra = [f"table inet {TRACE_TABLE} {{",
             "\tchain pre { type filter hook prerouting priority -400; policy accept; meta nftrace set 1; }", "}"]
    if nat_outside:
        extra += [f"table ip {NAT_TABLE} {{",
                  "\tchain post { type nat hook postrouting priority srcnat; policy accept; "
                  f'oifname "{nat_outside}" masquerade; }}', "}"]
    _run(pid, ["nft", "-f", "-"], stdin="\n".join(extra) + "\n")


def chain_hooks(pid: int) -> dict[tuple[str, str, str], tuple[str | None, str | None]]:
    """(family, table, chain) -> (hook, type) of every chain in the node's ruleset (user chains: None)."""
    data = json.loads(_run(pid, ["nft", "-j", "list", "ruleset"]) or '{"nftables": []}')
    out = {}
    for item in data.get("nftables", []):
        c = item.get("chain")
        if c:
            out[(c["family"], c["table"], c["name"])] = (c.get("hook"), c.get("type"))
    return out


def handles(pid: int) -> dict[tuple[str, str, str], list[int]]:
    """The handles of each chain's rules, in order (the file's order once loaded)."""
    data = json.loads(_run(pid, ["nft", "-j", "list", "ruleset"]) or '{"nftables": []}')
    out: dict[tuple[str, str, str], list[int]] = {}
    for item in data.get("nftables", []):
        r = item.get("rule")
        if r:
            out.setdefault((r["family"], r["table"], r["chain"]), []).append(r["handle"])
    return out


# -- the trace ----------------------------------------------------------------------------------

_LINE = re.compile(r"^trace id (\w+) (\w+) (\S+) (\S+) (packet|rule|policy|verdict) ?(.*)$")


@dataclass
class Step:
    table: tuple[str, str]
    chain: str
    handle: int | None          # None: the chain's policy
    verdict: str                # accept, drop, continue, jump X, return ...
    text: str = ""


@dataclass
class Packet:
    fields: dict[str, str]
    steps: list[Step] = field(default_factory=list)
    chains: set = field(default_factory=set)        # (family, table, chain) entered

    def tuple(self) -> tuple[str, str, str, int, int]:
        f = self.fields
        proto = "tcp" if "tcp sport" in f.get("_raw", "") else "udp" if "udp sport" in f.get("_raw", "") else ""
        return (proto, f.get("saddr", ""), f.get("daddr", ""), int(f.get("sport", 0) or 0), int(f.get("dport", 0) or 0))


def parse_trace(text: str) -> list[Packet]:
    packets: dict[str, Packet] = {}
    order: list[str] = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        tid, fam, table, chain, kind, rest = m.groups()
        if table == TRACE_TABLE:
            continue
        p = packets.get(tid)
        if kind == "packet":
            # a trace id comes from the packet's hash: the next packet of a flow may reuse it,
            # which shows as the same chain starting again
            if p is None or (fam, table, chain) in p.chains:
                tid = f"{tid}.{len(order)}"
                f = {"_raw": rest}
                for k, rx in (("saddr", r"ip saddr (\S+)"), ("daddr", r"ip daddr (\S+)"),
                              ("sport", r"(?:tcp|udp) sport (\d+)"), ("dport", r"(?:tcp|udp) dport (\d+)"),
                              ("iif", r'iif "([^"]+)"'), ("oif", r'oif "([^"]+)"')):
                    mm = re.search(rx, rest)
                    if mm:
                        f[k] = mm.group(1)
                packets[m.group(1)] = packets[tid] = Packet(f)
                order.append(tid)
            packets[m.group(1)].chains.add((fam, table, chain))
            continue
        if p is None:
            continue
        if kind == "rule":
            hm = re.search(r"# handle (\d+) \(verdict ([^)]+)\)", rest)
            text_ = re.sub(r"\s*# handle.*$", "", rest)
            p.steps.append(Step((fam, table), chain, int(hm.group(1)) if hm else None,
                                hm.group(2) if hm else "continue", text_))
        elif kind == "policy":
            p.steps.append(Step((fam, table), chain, None, rest.strip()))
    return [packets[t] for t in order]


class Trace:
    """``nft monitor trace`` in a node's namespace, from start() to stop()."""

    def __init__(self, pid: int):
        self.pid = pid
        self.proc = None
        self.out: list[str] = []

    def start(self) -> "Trace":
        self.out = []
        self.proc = subprocess.Popen(["nsenter", "-t", str(self.pid), "-n", "nft", "-a", "monitor", "trace"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True)
        self._reader.start()
        time.sleep(0.15)        # nft subscribes to the trace group before the first probe leaves
        return self

    def stop(self) -> list[Packet]:
        time.sleep(0.1)
        self.proc.terminate()
        self.proc.wait(5)
        self._reader.join(2)
        return parse_trace("".join(self.out))


# -- probe targets and probes --------------------------------------------------------------------


def serve(addresses: list[str], udp_port: int, tcp_ports: list[int], log_path: str) -> None:
    """STUN on ``udp_port`` at each address (a socket each: replies leave from the address the
    request reached) and TCP listeners; every request logged before it is answered."""
    log = open(log_path, "a", buffering=1)
    socks = []
    for a in addresses:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((a, udp_port))
        socks.append(s)
    for port in tcp_ports:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(("0.0.0.0", port))
        t.listen(256)
        socks.append(t)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            if s.type == socket.SOCK_STREAM:
                conn, peer = s.accept()
                log.write(json.dumps({"t": time.time(), "proto": "tcp", "dst": conn.getsockname()[0],
                                      "dport": conn.getsockname()[1], "src": peer[0], "sport": peer[1]}) + "\n")
                conn.close()
                continue
            data, peer = s.recvfrom(2048)
            answer = probe.stun_answer(data, peer)
            if answer is None:
                continue
            log.write(json.dumps({"t": time.time(), "proto": "udp", "dst": s.getsockname()[0],
                                  "dport": udp_port, "src": peer[0], "sport": peer[1]}) + "\n")
            s.sendto(answer, peer)


def received(log_path: str) -> list[dict]:
    out = []
    try:
        with open(log_path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def _udp(sport: int, rows: list[tuple[int, dict]], run: str) -> None:
    """STUN Binding requests from one source port to every target (a probe's requests, one
    socket: several sockets cannot share a port); replies told apart by transaction ID."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.setblocking(False)
    want = {}
    count = max(p.get("count", 1) for _, p in rows)
    timeout = max(p.get("timeout", 1.0) for _, p in rows)
    for k in range(count):
        for i, p in rows:
            seq = i * 8 + k
            want[seq] = p
            try:
                s.sendto(probe.stun_request(run, seq), (p["to"], p["port"]))
                p["sent"] = p.get("sent", 0) + 1
            except OSError as exc:
                p.setdefault("errors", []).append(exc.strerror)
        time.sleep(0.05)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        try:
            data, _peer = s.recvfrom(2048)
        except OSError:
            continue
        n = probe.stun_seq(data, run)
        if n in want:
            want[n]["replies"] = want[n].get("replies", 0) + 1
        if all(p.get("replies", 0) >= p.get("count", 1) for _, p in rows):
            break
    s.close()


def _tcp(p: dict) -> None:
    """One handshake from a fixed source port (SO_REUSEADDR: the port is shared by the
    connections to the other targets, each its own 4-tuple)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(p.get("timeout", 1.0))
    p["sent"] = 1
    try:
        s.bind(("0.0.0.0", p["sport"]))
        s.connect((p["to"], p["port"]))
        p["replies"] = 1
    except OSError as exc:
        p.setdefault("errors", []).append(str(exc.strerror or exc))
    finally:
        s.close()


def send_batch(plan: list[dict], run: str) -> list[dict]:
    """Every probe of ``plan`` ({proto: stun|tcp, to, port, sport, count, timeout}) at once."""
    for p in plan:
        p.update(sent=0, replies=0, errors=[])
    by_port: dict[int, list[tuple[int, dict]]] = {}
    for i, p in enumerate(plan):
        if p["proto"] != "tcp":
            by_port.setdefault(p["sport"], []).append((i, p))
    jobs = [threading.Thread(target=_udp, args=(sp, rows, run)) for sp, rows in by_port.items()]
    jobs += [threading.Thread(target=_tcp, args=(p,)) for p in plan if p["proto"] == "tcp"]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    return plan


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.net.policy")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--addresses", required=True)
    s.add_argument("--udp-port", type=int, default=3478)
    s.add_argument("--tcp-ports", default="443")
    s.add_argument("--log", required=True)
    s = sub.add_parser("send")
    s.add_argument("--run", required=True)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        try:
            serve(a.addresses.split(","), a.udp_port, [int(x) for x in a.tcp_ports.split(",") if x], a.log)
        except OSError as exc:
            print(f"error: cannot listen: {exc}", flush=True)
            return 1
        return 0
    plan = json.loads(sys.stdin.read())
    print(json.dumps(send_batch(plan, a.run)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
