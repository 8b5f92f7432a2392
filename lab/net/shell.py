"""Mininet's interactive CLI on a running lab (`icelab up --cli`), with the topology's names."""

from __future__ import annotations

from mininet.cli import CLI
from mininet.log import output, setLogLevel


def interact(network) -> None:
    """Until the user leaves the CLI (then the caller tears the lab down)."""

    class LabCLI(CLI):
        prompt = f"icelab:{network.topo.name}> "

        def do_nodes(self, _line):
            "List the lab's nodes by the names of the topology file."
            output("nodes: " + " ".join(network.nodes) + "\n")

    setLogLevel("info")
    # Mininet knows the nodes by their prefixed names; let people type the short ones.
    for short, node in network.nodes.items():
        network.net.nameToNode[short] = node
    LabCLI(network.net)
