"""Pictures of topologies: every node and address on them, laid out from the agents to the cloud."""

from lab.model import load_topology
from lab.report.graph import layout, render


def test_layout_reads_from_the_agents_to_the_cloud(repo):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    pos = layout(topo)
    order = ["agent1", "office-lan", "edge", "isp", "region", "cloud-lan", "turn"]
    xs = [pos[n][0] for n in order]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert pos["agent1"][0] == pos["agent2"][0] and pos["agent1"][1] != pos["agent2"][1]
    # no two nodes on the same spot
    assert len(set(pos.values())) == len(pos)


def test_a_lan_never_shares_a_column_with_other_nodes(repo):
    topo = load_topology(repo / "tests/topologies/unroutable.yaml")
    pos = layout(topo)
    lan_x = {pos[n.name][0] for n in topo.nodes.values() if n.kind == "lan"}
    other_x = {pos[n.name][0] for n in topo.nodes.values() if n.kind != "lan"}
    assert not lan_x & other_x


def test_svg_has_every_node_and_address_as_text(repo, tmp_path):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    svg = render(topo, tmp_path / "office.svg").read_text()
    for node in topo.nodes:
        assert f">{node}<" in svg
    for node in topo.nodes.values():
        for a in node.addresses:
            assert str(a.ip) in svg
    for s in topo.subnets:
        assert str(s.network) in svg


def test_png_and_dot(repo, tmp_path):
    topo = load_topology(repo / "topologies/agent-lan.yaml")
    png = render(topo, tmp_path / "sub" / "office.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dot = render(topo, tmp_path / "office.dot").read_text()
    assert dot.startswith('graph "office" {')
    assert '"edge" -- "isp"' in dot and "198.51.100.0/30" in dot
    assert dot.count("subgraph cluster_") == 3     # office, internet, cloud
