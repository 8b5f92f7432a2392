"""``flush-conntrack``: a node forgets its connections and NAT mappings (a firewall or NAT
reboot)."""

from __future__ import annotations

from lab.core.errors import did_you_mean
from lab.net.nat import flush_conntrack

from .base import Action, Strict, action


class NodeAction(Strict):
    """An action on one node: ``flush-conntrack`` forgets its connections and NAT mappings
    (a firewall or NAT reboot)."""

    node: str


@action
class FlushConntrack(Action):
    name = "flush-conntrack"
    model = NodeAction

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec = step.spec
        node = topo.nodes.get(spec.node)
        if node is None or node.kind == "lan":
            ck.err(step.path + ("node",), f"'{spec.node}' is not a node with connection tracking",
                   did_you_mean(spec.node, [n.name for n in topo.nodes.values() if n.forwards],
                                "firewalls, nats and routers"))
            return False
        step.name = spec.node
        return True

    @classmethod
    def start(cls, run, step) -> None:
        flush_conntrack(run.network.node(step.spec.node).pid)
        run.event(f"conntrack:{step.name}", "flushed (a firewall or NAT reboot)")
