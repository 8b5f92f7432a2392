"""``nat:`` expectations: how many mappings a NAT created. No timeline step: a NAT's rules
are read with the firewalls' at the end of every run (runner: firewall counters)."""

from __future__ import annotations

from pydantic import Field

from lab.core.errors import did_you_mean

from ..observations import FirewallObservation
from .base import Expect, ExpectModel, expect


class NatExpect(ExpectModel):
    nat: str = Field(description="the NAT node")
    mappings: int | str | None = Field(None, description=(
        "how many mappings the NAT created during the run (its masquerade rule counts the first "
        "packet of each): 3, or a bound: '<= 3'"))


@expect
class NatExpectation(Expect):
    kind = "nat"
    model = NatExpect

    @classmethod
    def observation_key(cls, target: str) -> str:
        return f"firewall:{target}"

    @classmethod
    def target_known(cls, ck, target: str, path: tuple, steps: list) -> bool:
        topo = getattr(ck, "topo", None)
        if topo is None:
            return False
        node = topo.nodes.get(target)
        if node is None or node.kind != "nat":
            ck.err(path + ("nat",), f"'{target}' is not a NAT node of the topology",
                   did_you_mean(target, [n.name for n in topo.nodes.values() if n.kind == "nat"], "NAT nodes")
                   or "the topology has no node of kind nat")
            return False
        return True

    @classmethod
    def evaluate(cls, e, record: dict) -> tuple[bool | None, str]:
        """Mappings a NAT created: its masquerade/SNAT rules see only the first packet of each
        connection, so their packet counters count mappings (lab/net/nat.py)."""
        obs = FirewallObservation.from_dict(record)
        rules = [r for r in obs.rules if r.get("action") in ("masquerade", "snat")]
        if not rules:
            return None, f"{e.target} has no masquerade or SNAT rule to count mappings with"
        n = sum(r["packets"] for r in rules)
        ok = e.bounds["mappings"].holds(n) if "mappings" in e.bounds else True
        return ok, f"{e.target} created {n} mapping{'s' if n != 1 else ''}"
