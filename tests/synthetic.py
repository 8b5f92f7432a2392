"""Synthetic topologies of any size, for tests and benchmarks (bench/build_teardown.py).

``office_grid(hosts=100, per_lan=10)``: agents on ``hosts/per_lan`` office LANs, each
behind its own edge router, all edges on one ISP core router, plus a cloud LAN with
TURN, signalling and media. Returned as YAML text, so it goes through the same
validation as a file a person wrote.
"""

from __future__ import annotations

import yaml


def office_grid(hosts: int = 100, per_lan: int = 10, name: str = "grid") -> str:
    lans = max(1, -(-hosts // per_lan))
    nodes: dict = {"core": {"kind": "router", "zone": "internet"},
                   "region": {"kind": "router", "zone": "cloud"},
                   "cloud-lan": {"kind": "lan", "subnet": "203.0.113.0/26", "zone": "cloud"}}
    links: list = [{"a": "core", "b": "region", "subnet": "198.51.100.0/30"},
                   {"a": "region", "b": "cloud-lan"}]
    for svc in ("turn", "signalling", "media"):
        nodes[svc] = {"kind": "host", "services": [svc], "zone": "cloud"}
        links.append({"a": svc, "b": "cloud-lan"})
    placed = 0
    for i in range(lans):
        lan, edge = f"lan{i}", f"edge{i}"
        nodes[lan] = {"kind": "lan", "subnet": f"10.{i // 256}.{i % 256}.0/24", "zone": f"office{i}"}
        nodes[edge] = {"kind": "router", "zone": f"office{i}"}
        links.append({"a": edge, "b": lan})
        links.append({"a": edge, "b": "core", "subnet": f"100.64.{i // 64}.{(i % 64) * 4}/30"})
        for j in range(min(per_lan, hosts - placed)):
            agent = f"a{i}-{j}"
            nodes[agent] = {"kind": "host", "role": "agent", "zone": f"office{i}"}
            links.append({"a": agent, "b": lan})
            placed += 1
    doc = {"name": name, "description": f"{hosts} agents on {lans} office LANs", "internet": "core",
           "nodes": nodes, "links": links}
    return yaml.safe_dump(doc, sort_keys=False)
