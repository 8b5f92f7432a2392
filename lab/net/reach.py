"""Who reaches whom: measured with ping inside the lab, predicted from the model."""

from __future__ import annotations

from dataclasses import dataclass

from lab.model.routing import reachable
from lab.model.topology import Topology


@dataclass
class Probe:
    src: str
    dst: str
    address: str
    expected: bool
    measured: bool | None = None

    @property
    def ok(self) -> bool:
        return self.expected == self.measured

    def to_dict(self) -> dict:
        return {"src": self.src, "dst": self.dst, "address": self.address,
                "expected": self.expected, "measured": self.measured}


def plan(topo: Topology, kinds: tuple[str, ...] = ("host",)) -> list[Probe]:
    """A probe from every host to every address of every other node of ``kinds``."""
    probes = []
    sources = [n for n in topo.nodes.values() if n.kind == "host"]
    targets = [n for n in topo.nodes.values() if n.kind in kinds]
    for s in sources:
        for t in targets:
            if t.name == s.name:
                continue
            for addr in t.addresses:
                probes.append(Probe(s.name, t.name, str(addr.ip), reachable(topo.nodes, s.name, addr.ip)))
    return probes


def measure(network, probes: list[Probe], timeout_s: int = 1) -> list[Probe]:
    """One ICMP echo per probe; each source pings its targets in turn, all sources at once."""
    by_src: dict[str, list[Probe]] = {}
    for p in probes:
        by_src.setdefault(p.src, []).append(p)
    for src, ps in by_src.items():
        addrs = " ".join(p.address for p in ps)
        network.node(src).sendCmd(
            f"for a in {addrs}; do ping -n -q -c1 -W{timeout_s} $a >/dev/null 2>&1 && echo \"$a 1\" || echo \"$a 0\"; done")
    for src, ps in by_src.items():
        out = network.node(src).waitOutput()
        got = dict(line.split() for line in out.splitlines() if line.strip().count(" ") == 1)
        for p in ps:
            p.measured = got.get(p.address) == "1"
    return probes
