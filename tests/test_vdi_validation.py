"""Bad VDI declarations: golden messages with file, line, path and hint."""

import subprocess
import sys

import pytest

from lab.model import InputError, load_topology

BASE = """\
name: t
internet: isp
nodes:
  thin1:
    kind: host
    role: agent
    vdi: {vdi}
  home: {{kind: router}}
  isp: {{kind: router}}
  desktop: {desktop}
  turn: {{kind: host, services: [turn, signalling, media]}}
links:
  - {{a: thin1, b: home}}
  - {{a: home, b: isp}}
  - {{a: isp, b: desktop}}
  - {{a: isp, b: turn}}
"""
DESKTOP = "{kind: vdi}"

CASES = {
    "unknown-desktop": ("{desktop: dekstop}", DESKTOP, """\
vdi.yaml:7: nodes.thin1.vdi.desktop: unknown node 'dekstop'
    hint: did you mean 'desktop'? vdi nodes: desktop"""),
    "desktop-is-a-host": ("{desktop: turn}", DESKTOP, """\
vdi.yaml:7: nodes.thin1.vdi.desktop: 'turn' is a host, not a virtual desktop
    hint: vdi nodes: desktop"""),
    "no-desktop-at-all": ("{desktop: desktop}", "{kind: host}", """\
vdi.yaml:7: nodes.thin1.vdi.desktop: 'desktop' is a host, not a virtual desktop
    hint: declare the virtual desktop with 'kind: vdi'"""),
    "missing-desktop": ("{}", DESKTOP, """\
vdi.yaml:7: nodes.thin1.vdi: required field 'desktop' is missing
    hint: name the vdi node whose desktop this host shows: vdi: {desktop: vdi1}"""),
    "unknown-field": ("{desktop: desktop, mode: redirect}", DESKTOP, """\
vdi.yaml:7: nodes.thin1.vdi.mode: unknown field 'mode'
    hint: allowed fields: desktop"""),
    "no-route-back": ("{desktop: desktop}", "{kind: vdi, routes: []}", """\
vdi.yaml:7: nodes.thin1.vdi.desktop: 'thin1' cannot reach the virtual desktop 'desktop'
    hint: the display protocol needs a routed path both ways (a full-tunnel VPN client reaches it through the tunnel)"""),
    "port": ("{desktop: desktop}", "{kind: vdi, port: 0}", """\
vdi.yaml:10: nodes.desktop.port: 0 is out of range: input should be greater than or equal to 1"""),
}


@pytest.mark.parametrize("case", CASES)
def test_golden_message(case):
    vdi, desktop, expected = CASES[case]
    with pytest.raises(InputError) as info:
        load_topology("vdi.yaml", text=BASE.format(vdi=vdi, desktop=desktop))
    assert "\n".join(str(p) for p in info.value.problems) == expected


def test_a_thin_client_is_resolved_to_the_desktop_address_and_port():
    topo = load_topology("vdi.yaml", text=BASE.format(vdi="{desktop: desktop}", desktop="{kind: vdi, port: 3389}"))
    c = topo.nodes["thin1"].vdi
    assert (c.desktop, c.port) == ("desktop", 3389)
    assert c.address == topo.address_of("desktop")
    assert not topo.nodes["desktop"].forwards


def test_the_example_validates(repo):
    r = subprocess.run([sys.executable, "-m", "lab.cli", "validate", "topologies/vdi-desktop.yaml"],
                       capture_output=True, text=True, cwd=repo, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
