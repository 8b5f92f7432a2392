"""Node groups (lab/model/groups.py): expansion, addresses from the lan, errors at the group."""

from pathlib import Path

import pytest

from lab.core.errors import InputError
from lab.model import load_topology

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
name: g
internet: edge
nodes:
  floor: {kind: lan, subnet: 10.20.1.0/24}
  edge:  {kind: router}
  h0:    {kind: host}
links:
  - {a: edge, b: floor}
  - {a: h0, b: floor}
"""


def load(groups: str):
    return load_topology("g.yaml", text=BASE.replace("links:", "groups:\n" + groups + "links:"))


def test_the_contact_centre_has_500_agents_on_four_floors():
    t = load_topology(ROOT / "topologies/contact-centre.yaml")
    agents = [n for n in t.hosts() if n.role == "agent"]
    assert len(agents) == 500
    assert sum(n.ephemeral_ports == (49152, 65535) for n in agents) == 400     # Windows
    assert sum(n.ephemeral_ports == (32768, 61000) for n in agents) == 100     # Linux
    f3 = t.nodes["f3-w042"]
    assert str(f3.interfaces[0].address) == "10.20.3.43/24"                      # after the core's .1
    assert str(f3.routes[0]) == "default via 10.20.3.1 dev eth0"
    assert f3.zone == "floor3"


def test_members_are_plain_hosts_after_the_file_links():
    t = load("  a: {count: 3, name: 'a{n}', start: 0, lan: floor, node: {role: server, zone: z}, link: {cost: 5}}\n")
    assert [n for n in t.nodes if n.startswith("a")] == ["a0", "a1", "a2"]
    assert [str(t.nodes[f"a{i}"].addresses[0].ip) for i in range(3)] == ["10.20.1.3", "10.20.1.4", "10.20.1.5"]
    assert [l.cost for l in t.links[2:]] == [5, 5, 5]
    assert t.nodes["a2"].zone == "z"


def test_a_members_problem_is_reported_once_at_the_group():
    with pytest.raises(InputError) as info:
        load("  a:\n    count: 30\n    name: 'a{n:02}'\n    lan: floor\n    node: {os: beos}\n")
    [p] = info.value.problems
    assert (p.path, p.line) == ("groups.a.node.os", 12)


def test_a_members_link_problem_names_the_group():
    with pytest.raises(InputError) as info:
        load("  a: {count: 2, name: 'a{n}', lan: floor, link: {impair: {delay: 5 parsecs}}}\n")
    assert {p.path.split(".")[0:3] == ["groups", "a", "link"] for p in info.value.problems} == {True}
    assert {p.line for p in info.value.problems} == {8}


def test_a_group_without_groups_is_the_file_as_it_was():
    assert len(load_topology("g.yaml", text=BASE).nodes) == 3
