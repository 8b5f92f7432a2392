"""NAT behaviour discovery from a host behind the NAT (RFC 5780 section 4), declared vs measured.

The client side of RFC 5780, run with sockets made inside the host's namespace, against the
responder of ``lab/services/stun5780.py`` (the lab's TURN server, STUN only) run with
sockets inside a server's namespace (a host with two addresses; the first host outside
that has two is chosen). Messages are encoded and parsed by ``lab.core.stun``.

- Mapping (section 4.3): test I to A:P gives mapping M1; test II to B:P gives M2; M1 == M2
  means endpoint-independent mapping; otherwise test III to B:Q gives M3: M3 == M2 means
  address-dependent, else address-and-port-dependent.
- Filtering (section 4.4), from a fresh socket: test I to A:P; test II asks for an answer
  from B:Q (change IP and port): it arriving means endpoint-independent filtering;
  otherwise test III asks for one from A:Q (change port): arriving means
  address-dependent, else address-and-port-dependent.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from lab.core import stun
from lab.core.errors import LabError
from lab.model.firewall import NAT_BEHAVIOUR
from lab.services.stun5780 import PRIMARY_PORT, Responder

from .netns import run_in

TIMEOUT = 0.4       # per attempt; the lab's RTTs are well under a millisecond
ATTEMPTS = 2
READY_TIMEOUT = 5.0  # the responder binding its four sockets; it takes milliseconds


class NatCheckError(LabError, RuntimeError):
    """The RFC 5780 tests could not run: no responder host, no answer, ports taken.
    (A RuntimeError too, for callers written when these were plain RuntimeErrors.)"""


@dataclass
class Result:
    host: str
    server: tuple[str, str]
    mapping: str
    filtering: str
    mapped: list[str]
    declared_type: str | None = None
    nat: str | None = None

    @property
    def declared(self) -> tuple[str, str] | None:
        return NAT_BEHAVIOUR.get(self.declared_type) if self.declared_type else None

    @property
    def ok(self) -> bool | None:
        return None if self.declared is None else self.declared == (self.mapping, self.filtering)

    def to_dict(self) -> dict:
        d = self.declared
        return {"host": self.host, "server": list(self.server), "nat": self.nat, "type": self.declared_type,
                "declared": {"mapping": d[0], "filtering": d[1]} if d else None,
                "measured": {"mapping": self.mapping, "filtering": self.filtering},
                "mapped_addresses": self.mapped, "ok": self.ok}


@dataclass
class Answer:
    """What a Binding response says (RFC 5780 section 7): None for what it did not carry."""
    mapped: tuple[str, int] | None                  # XOR-MAPPED-ADDRESS
    other: tuple[str, int] | None = None            # OTHER-ADDRESS
    origin: tuple[str, int] | None = None           # RESPONSE-ORIGIN


def _decode(msg: stun.Message) -> Answer:
    xor, other, origin = msg.get(stun.XOR_MAPPED_ADDRESS), msg.get(stun.OTHER_ADDRESS), msg.get(stun.RESPONSE_ORIGIN)
    return Answer(stun.parse_xor_address(xor, msg.tid) if xor is not None else None,
                  stun.parse_address(other) if other is not None else None,
                  stun.parse_address(origin) if origin is not None else None)


def binding(sock: socket.socket, dest: tuple[str, int], change: int = 0) -> Answer | None:
    """One Binding transaction (retransmitted): what the response says, or None."""
    tid = os.urandom(12)
    data = stun.encode(stun.BINDING, stun.REQUEST, tid, [(stun.CHANGE_REQUEST, stun.u32(change))] if change else [])
    sock.settimeout(TIMEOUT)
    for _ in range(ATTEMPTS):
        sock.sendto(data, dest)
        try:
            while True:
                raw, _src = sock.recvfrom(2048)
                try:
                    resp = stun.parse(raw)
                    if resp.tid == tid and resp.cls in (stun.SUCCESS, stun.ERROR):
                        return _decode(resp)
                except stun.ParseError:
                    continue
        except socket.timeout:
            continue
    return None


def discover(a: str, port: int = PRIMARY_PORT) -> tuple[str, str, list[str]]:
    """RFC 5780 tests from the calling thread's namespace: (mapping, filtering, mapped addresses)."""
    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", 0))
        return s

    s = udp()
    try:
        r1 = binding(s, (a, port))
        if r1 is None:
            raise NatCheckError(f"no answer from the STUN responder at {a}:{port}")
        other = r1.other
        if not other:
            raise NatCheckError("the responder sent no OTHER-ADDRESS: not an RFC 5780 server")
        m1 = r1.mapped
        if m1 is None:
            raise NatCheckError(f"the STUN responder at {a}:{port} sent no XOR-MAPPED-ADDRESS")
        r2 = binding(s, (other[0], port))
        m2 = r2.mapped if r2 else None
        mapped = [f"{m1[0]}:{m1[1]}"] + ([f"{m2[0]}:{m2[1]}"] if m2 else [])
        if m2 == m1:
            mapping = "endpoint-independent"
        else:
            r3 = binding(s, other)
            m3 = r3.mapped if r3 else None
            if m3:
                mapped.append(f"{m3[0]}:{m3[1]}")
            mapping = "address-dependent" if m3 == m2 else "address-and-port-dependent"
    finally:
        s.close()
    s = udp()
    try:
        if binding(s, (a, port)) is None:
            raise NatCheckError(f"no answer from the STUN responder at {a}:{port}")
        if binding(s, (a, port), stun.CHANGE_IP | stun.CHANGE_PORT) is not None:
            filtering = "endpoint-independent"
        elif binding(s, (a, port), stun.CHANGE_PORT) is not None:
            filtering = "address-dependent"
        else:
            filtering = "address-and-port-dependent"
    finally:
        s.close()
    return mapping, filtering, mapped


def pick_server(topo: dict, host: str) -> tuple[str, str, str] | None:
    """(node, A, B): a host (not ``host``) with two addresses, from a topology dict."""
    for name, n in topo.get("nodes", {}).items():
        addrs = [i["address"].split("/")[0] for i in n.get("interfaces", []) if i.get("address")]
        if n.get("kind") == "host" and name != host and len(addrs) >= 2:
            return name, addrs[0], addrs[1]
    return None


def declared_nat(topo: dict, host: str) -> tuple[str | None, str | None]:
    """(nat node, type) that the host sits behind: the first nat reached from the host
    through one of the nat's inside interfaces, without crossing another nat."""
    nodes = topo.get("nodes", {})
    seen, todo = {host}, [host]
    while todo:
        here = todo.pop(0)
        for itf in nodes.get(here, {}).get("interfaces", []):
            peer = itf["peer"]
            if peer in seen:
                continue
            seen.add(peer)
            spec = nodes.get(peer, {})
            if spec.get("kind") == "nat":
                towards = next((i["name"] for i in spec.get("interfaces", []) if i["peer"] == here), None)
                if towards in spec.get("nat", {}).get("inside", []):
                    return peer, spec["nat"]["type"]
                continue
            todo.append(peer)
    return None, None


def _serve_in(pid: int, responder: Responder) -> None:
    """The responder, in the namespace of ``pid``; what stops it from starting (no such
    namespace) is handed to the thread that waits for it."""
    try:
        run_in(pid, responder.run)
    except Exception as exc:
        responder.error = exc
        responder.ready.set()


def check(topo: dict, pids: dict[str, int], host: str, server: str | None = None) -> Result:
    """Run the responder in the server's namespace and the tests in the host's."""
    if server is None:
        found = pick_server(topo, host)
        if found is None:
            raise NatCheckError("no host with two addresses to run the RFC 5780 responder on "
                              "(give a server host two links, as in topologies/office-nat.yaml)")
        server, a, b = found
    else:
        addrs = [i["address"].split("/")[0] for i in topo["nodes"][server]["interfaces"] if i.get("address")]
        if len(addrs) < 2:
            raise NatCheckError(f"'{server}' has {len(addrs)} address(es); the responder needs two")
        a, b = addrs[:2]
    responder = Responder(a, b)
    t = threading.Thread(target=_serve_in, args=(pids[server], responder), name="stun5780", daemon=True)
    t.start()
    try:
        if not responder.ready.wait(READY_TIMEOUT):
            raise NatCheckError(f"the STUN responder on {server} did not start within {READY_TIMEOUT:g} s")
        if responder.error is not None:
            raise responder.error
        mapping, filtering, mapped = run_in(pids[host], lambda: discover(a))
    finally:
        responder.stop()
        t.join()
    nat, typ = declared_nat(topo, host)
    return Result(host, (a, b), mapping, filtering, mapped, typ, nat)
