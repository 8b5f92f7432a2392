"""VDI in the model: a virtual desktop in the data centre and the thin clients that show it.

A ``vdi`` node is a virtual desktop host (it does not forward). A host becomes its thin
client with ``vdi: {desktop: vdi1}``: it keeps a display-protocol TCP connection to the
desktop's port (Citrix HDX 1494 by default), over which the desktop's audio comes back
(``lab/net/vdi.py``). Whether the softphone runs in the desktop or, with media
redirection, on the thin client is the scenario's business, not the topology's.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from pydantic import BaseModel, ConfigDict, Field

from lab.core.errors import did_you_mean

DEFAULT_PORT = 1494        # Citrix HDX/ICA; RDP 3389, Omnissa Blast 22443, PCoIP 4172


class VdiSpec(BaseModel):
    """A host's thin-client role: which virtual desktop it displays."""

    model_config = ConfigDict(extra="forbid", defer_build=True)   # built on first use (start-up, #12)
    desktop: str = Field(description="the vdi node whose desktop this host displays")


@dataclass
class VdiClient:
    desktop: str
    address: IPv4Address | None = None     # the desktop's address the client connects to
    port: int = DEFAULT_PORT

    def to_dict(self) -> dict:
        return {"desktop": self.desktop, "address": str(self.address) if self.address else None,
                "port": self.port}


def resolve(resolver) -> None:
    """Check every ``vdi:`` field; attach ``Node.vdi`` (the address comes once routes exist)."""
    nodes = resolver.nodes
    desktops = [n for n in nodes if nodes[n].kind == "vdi"]
    for name, spec in resolver.t.nodes.items():
        vdi = getattr(spec, "vdi", None)
        if vdi is None or name not in nodes:
            continue
        path = ("nodes", name, "vdi", "desktop")
        d = vdi.desktop
        if d not in resolver.declared:
            resolver.err(path, f"unknown node '{d}'", did_you_mean(d, desktops, "vdi nodes") or
                         "declare the virtual desktop as a node with 'kind: vdi' in the data centre")
            continue
        if d not in nodes:
            continue
        if nodes[d].kind != "vdi":
            resolver.err(path, f"'{d}' is a {nodes[d].kind}, not a virtual desktop",
                         did_you_mean(d, desktops, "vdi nodes") if desktops else
                         "declare the virtual desktop with 'kind: vdi'")
            continue
        port = getattr(resolver.t.nodes[d], "port", DEFAULT_PORT)
        nodes[name].vdi = VdiClient(d, None, port)


def attach_addresses(nodes: dict, reachable) -> list[tuple[str, str]]:
    """The desktop address each thin client connects to (the first one it reaches, both
    ways); (client, desktop) for those that reach none."""
    missing = []
    for name, node in nodes.items():
        c = getattr(node, "vdi", None)
        if c is None:
            continue
        addr = next((a.ip for a in nodes[c.desktop].addresses if reachable(nodes, name, a.ip)), None)
        if addr is None:
            missing.append((name, c.desktop))
        c.address = addr
    return missing
