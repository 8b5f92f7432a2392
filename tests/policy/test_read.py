"""Reading policies without a lab: formats told apart, each rule's line, every problem with
file, line, field and hint (nothing built), fixes placed before the rule that shadows them."""

import pytest

from lab.core.errors import InputError
from lab.model.policy import apply_fix, detect, fix_lines, read
from lab.model.policy.deploy import deployment, topology

P = "tests/policy/policies/"
IFS = ("ens192", "ens160")


def problems(path, text, tmp_path, **kw):
    f = tmp_path / path
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        read(str(f), **kw)
    return [(p.line, p.path, p.message, p.hint) for p in exc.value.problems]


@pytest.mark.parametrize("name,fmt", [("stateful-ok.rules", "iptables"), ("stateful-ok.nft", "nft"),
                                      ("vmap-stale-set.nft", "nft"), ("objects-ok.csv", "csv"),
                                      ("stateless-rules.yaml", "yaml")])
def test_detect(name, fmt):
    assert detect(open(P + name).read()) == fmt


def test_iptables_lines_and_chains():
    pol = read(P + "user-chains.rules", check=False)
    assert [(r.line, r.chain[2], r.index) for r in pol.rules] == [
        (7, "FORWARD", 0), (8, "FORWARD", 1), (9, "AGENTS-OUT", 0), (10, "AGENTS-OUT", 1), (11, "SOFTPHONE", 0),
        (12, "SOFTPHONE", 1), (13, "AGENTS-OUT", 2)]
    assert pol.policies[("ip", "filter", "FORWARD")] == ("drop", 3)


def test_iptables_nat_table_seen():
    assert read(P + "stateful-ok.rules", check=False).has_nat
    assert not read(P + "udp3478-missing.rules", check=False).has_nat


def test_nft_lines_sets_and_vmaps():
    pol = read(P + "vmap-stale-set.nft", check=False)
    assert [(r.line, r.chain, r.index) for r in pol.rules] == [
        (11, ("inet", "edge", "softphone"), 0), (12, ("inet", "edge", "softphone"), 1),
        (17, ("inet", "edge", "forward"), 0), (18, ("inet", "edge", "forward"), 1)]
    assert pol.policies == {("inet", "edge", "forward"): ("drop", 16)}


def test_iptables_problems(tmp_path):
    got = problems("bad.rules", "*filter\n:FORWARD DROP [0:0]\n-A FORWRD -j ACCEPT\n-A FORWARD -j NOCHAIN\n"
                   "-I FORWARD -j ACCEPT\n", tmp_path, fmt="iptables")
    assert got[0][:3] == (3, "chain", "rule for chain 'FORWRD', which is not declared in *filter")
    assert "did you mean 'FORWARD'" in got[0][3]
    assert got[1][:3] == (4, "target", "jump to chain 'NOCHAIN', which is not declared in *filter")
    assert got[2][0] == 5 and "-I" in got[2][3]
    assert got[3][:3] == (1, "", "table 'filter' has no COMMIT")


def test_nft_problem_from_nft_itself():
    with pytest.raises(InputError) as exc:
        read("tests/policy/bad/nft-keyword-chain.nft")
    (p,) = exc.value.problems
    assert p.line == 2 and "nft refuses it" in p.message and "unexpected fwd" in p.message


def test_csv_problems(tmp_path):
    (tmp_path / "objects.csv").write_text("name,address\nAGENTS,10.20.0.0/23\n")
    got = problems("bad.csv", "name,direction,source,destination,protocol,dport,action\n"
                   "a,outbound,AGENTS,CONECT,udp,3478,allow\n"
                   "b,sideways,AGENTS,any,udp,3478,allow\n"
                   "c,outbound,any,any,icmp,443,allow\n"
                   "d,outbound,any,any,udp,70000,allow\n"
                   "e,outbound,any,any,udp,3478,maybe\n", tmp_path, objects=str(tmp_path / "objects.csv"))
    assert [(ln, path) for ln, path, _, _ in got] == [(2, "row 2.destination"), (3, "row 3.direction"),
                                                      (4, "row 4.protocol"), (5, "row 5.dport"), (6, "row 6.action")]
    assert "give --objects" not in got[0][3] and "AGENTS" in got[0][3]


def test_csv_header_aliases_and_unknown_column(tmp_path):
    got = problems("h.csv", "Rule,Src,Dst,Proto,Dest Port,Verdict,Colour\n", tmp_path)
    assert got[0][:2] == (1, "header column 7") and "unknown column 'Colour'" in got[0][2]
    assert any("direction" in g[2] for g in got)


def test_csv_translation_names_rows():
    pol = read(P + "objects-ok.csv", objects=P + "objects.csv", interfaces=IFS, check=False)
    assert 'comment "row 2: softphone signalling"' in pol.load_text
    assert "ip daddr { 192.0.2.128/26, 203.0.113.64/27 }" in pol.load_text
    assert [r.row for r in pol.rules] == [2, 3]


def test_fix_goes_before_the_shadowing_rule():
    pol = read(P + "deny-shadows.rules", check=False)
    need = {"proto": "udp", "src": ["10.20.0.0/23"], "dst": ["192.0.2.128/26"], "dport": (3478, 3478),
            "iif": "ens192", "oif": "ens160"}
    lines = fix_lines(pol, need, ("ip", "filter", "FORWARD"))
    assert lines == ["-A FORWARD -i ens192 -o ens160 -s 10.20.0.0/23 -d 192.0.2.128/26 -p udp -m udp --dport 3478 "
                     "-j ACCEPT"]
    shadow = next(r for r in pol.rules if r.line == 7)
    text = apply_fix(pol, lines, shadow, shadow.chain).splitlines()
    assert text[6] == lines[0] and "--dport 1024:65535 -j DROP" in text[7]


def test_nft_fix_at_the_end_of_the_chain():
    pol = read(P + "stateless-udp-return-missing.nft", check=False)
    need = {"proto": "udp", "src": ["192.0.2.128/26"], "dst": ["10.20.0.0/23"], "sport": (3478, 3478),
            "dport": (32768, 65535), "iif": "ens160", "oif": "ens192"}
    lines = fix_lines(pol, need, ("ip", "acl", "acl_forward"))
    text = apply_fix(pol, lines, None, ("ip", "acl", "acl_forward")).splitlines()
    assert text[6].strip() == lines[0] and text[7].strip() == "}"
    assert "udp dport 32768-65535" in lines[0]


def test_deployment_lab_is_validated_and_spans_the_ranges():
    d = deployment("10.20.0.0/23", ["windows", "linux"], "tests/policy/ip-ranges.json", "eu-west-2",
                   "inside=ens192,outside=ens160")
    topo, _ = topology(d)
    assert d.prefixes == ["192.0.2.128/26", "203.0.113.64/27"]
    assert d.targets == ["192.0.2.129", "192.0.2.161", "192.0.2.190", "203.0.113.65", "203.0.113.81", "203.0.113.94"]
    assert d.connect_address == "192.0.2.146" and d.ports("linux") == [32768, 46883, 60999]
    assert [i.name for i in topo.nodes["fw"].interfaces] == ["ens192", "ens160"]


def test_deployment_usage_errors():
    from lab.core.errors import UsageError
    with pytest.raises(UsageError, match="inside=IF,outside=IF"):
        deployment("10.20.0.0/23", ["linux"], "tests/policy/ip-ranges.json", "eu-west-2", "lan=eth0")
    with pytest.raises(InputError, match="no prefixes"):
        deployment("10.20.0.0/23", ["linux"], "tests/policy/ip-ranges.json", "mars-north-1", None)


def test_cli_bad_input_exits_2_with_the_place(tmp_path, capsys):
    from lab.cli import main
    bad = tmp_path / "edge.rules"
    bad.write_text("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp --dport 3478 -j ACCEPT\n")
    rc = main(["policy", "check", str(bad), "--agents", "10.20.0.0/23", "--ip-ranges", "tests/policy/ip-ranges.json",
               "--region", "eu-west-2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{bad}:1" in err and "has no COMMIT" in err and "Traceback" not in err
    rc = main(["policy", "check", P + "stateful-ok.rules", "--agents", "10.20.0.0/40",
               "--ip-ranges", "tests/policy/ip-ranges.json", "--region", "eu-west-2"])
    assert rc == 2 and "--agents" in capsys.readouterr().err


@pytest.mark.parametrize("kw,want", [
    ({"through": "vpn-full"}, {"agent-windows": "home", "vpn-gw": "datacentre"}),
    ({"through": "vpn-split", "bypass": "192.0.2.128/26"}, {"agent-windows": "home"}),
    ({"vdi": True}, {"desktop-windows": "datacentre", "thin-windows": "home"}),
])
def test_paths_through_the_data_centre_are_validated_labs(kw, want):
    d = deployment("10.20.0.0/23", ["windows", "linux"], "tests/policy/ip-ranges.json", "eu-west-2",
                   "inside=ens192,outside=ens160", **kw)
    topo, _ = topology(d)
    assert {n: topo.nodes[n].zone for n in want} == want
    assert [i.name for i in topo.nodes["fw"].interfaces] == ["ens192", "ens160"]
    if kw.get("through") == "vpn-split":
        assert d.bypass == ["192.0.2.128/26"]
        assert [str(b) for b in topo.nodes["agent-windows"].vpn.bypass] == ["192.0.2.128/26"]
    if kw.get("vdi"):
        assert d.caller("linux") == "thin-linux" and d.agent("linux") == "desktop-linux"


def test_path_usage_errors():
    from lab.core.errors import UsageError
    args = ("10.20.0.0/23", ["linux"], "tests/policy/ip-ranges.json", "eu-west-2", None)
    with pytest.raises(UsageError, match="give one of them"):
        deployment(*args, through="vpn-full", vdi=True)
    with pytest.raises(UsageError, match="with --through vpn-split"):
        deployment(*args, through="vpn-full", bypass="192.0.2.128/26")
    with pytest.raises(UsageError, match="not an IPv4 prefix"):
        deployment(*args, through="vpn-split", bypass="turn.example")
    with pytest.raises(InputError, match="home network"):
        deployment("192.168.0.0/23", ["linux"], "tests/policy/ip-ranges.json", "eu-west-2", None, vdi=True)


def test_media_info_offering_tcp_turn_adds_its_targets():
    from lab.scenario.policy import media_info
    d = deployment("10.20.0.0/23", ["linux"], "tests/policy/ip-ranges.json", "eu-west-2", None)
    media_info(P + "media-info-tcp.json", d)
    topology(d)
    assert d.turn_tcp and d.turn_tcp_targets == ["203.0.113.75"] and "203.0.113.75" in d.served


def test_csv_fix_rows_name_objects_in_the_files_own_words():
    pol = read(P + "objects-deny-shadows.csv", None, P + "objects.csv", "stateful", IFS, check=False)
    need = {"proto": "udp", "src": ["10.20.0.0/23"], "dst": ["192.0.2.128/26", "203.0.113.64/27"],
            "dport": (3478, 3478), "iif": "ens192", "oif": "ens160", "name": "softphone TURN",
            "src_scope": ["10.20.0.0/23"], "dst_scope": ["192.0.2.128/26", "203.0.113.64/27"]}
    assert fix_lines(pol, need, None) == ["softphone TURN,trust,untrust,AGENTS,CONNECT-EUW2,3478,UDP,permit"]
    back = dict(need, src=["203.0.113.64/27"], dst=["10.20.0.0/23"], sport=(3478, 3478), dport=(32768, 65535),
                iif="ens160", oif="ens192", src_scope=need["dst_scope"], dst_scope=need["src_scope"])
    # no row goes inbound: the zones of the outbound rows, swapped; one range: its own object
    assert fix_lines(pol, back, None) == ["softphone TURN,untrust,trust,CONNECT-EUW2-B,AGENTS,32768-65535,UDP,permit"]
    # an object reaching beyond the scope is not used for a part of it
    wide = dict(need, dst=["192.0.2.128/26"], dst_scope=["192.0.2.128/26"])
    assert fix_lines(pol, wide, None)[0].split(",")[4] == "CONNECT-EUW2-A"


def test_beyond_reads_jumps_and_verdict_map_entries():
    from lab.model.policy.base import PolicyRule
    from lab.scenario.policy import _vmap_entries, broad
    assert _vmap_entries('iifname "a" meta l4proto . th dport vmap { tcp . 443 : jump sp, udp . 53 : accept }',
                         "sp") == 'iifname "a" meta l4proto tcp tcp dport 443'
    pol = read(P + "user-chain-broad.rules", check=False)
    r = next(x for x in pol.rules if "1024:65535" in x.text)
    assert broad(pol, r) == "any destination, 64512 ports (the softphone uses TCP 443 and UDP 3478)"
    via = ["-A FORWARD -i ens192 -o ens160 -s 10.20.0.0/23 -d 192.0.2.128/26 -j VOICE"]
    assert broad(pol, r, via) == "64512 ports (the softphone uses TCP 443 and UDP 3478)"
    assert isinstance(r, PolicyRule)


def test_report_folder_has_the_picture_the_captures_and_the_fix(tmp_path):
    from lab.report import policy as report
    from lab.scenario.policy import PolicyResult, Requirement
    d = deployment("10.20.0.0/23", ["windows"], "tests/policy/ip-ranges.json", "eu-west-2",
                   "inside=ens192,outside=ens160", through="vpn-full")
    topo, _ = topology(d)
    pol = read(P + "udp3478-missing.rules", check=False)
    (tmp_path / "pcap").mkdir()
    (tmp_path / "pcap" / "fw-ens192.pcap").write_bytes(b"")
    fix = {"format": "iptables", "lines": ["-A FORWARD -j ACCEPT"], "verified": True,
           "before": {"file": pol.file, "line": None, "text": "end of chain FORWARD"}}
    decided = {"file": pol.file, "line": 3, "text": ":FORWARD DROP"}
    res = PolicyResult(pol, d, [Requirement("turn-udp-3478", "fail", decided, "0/18 STUN requests", fix)],
                       fixed_text="fixed\n", pcaps={"fw:ens192": str(tmp_path / "pcap" / "fw-ens192.pcap")},
                       topology=topo)
    out = report.write(res, tmp_path)
    html = (out / "report.html").read_text()
    assert "href='pcap/fw-ens192.pcap'" in html and 'src="topology.svg"' in html and "full-tunnel VPN" in html
    assert "(pcap/fw-ens192.pcap)" in (out / "report.md").read_text()
    assert (out / "topology.svg").stat().st_size > 0 and (out / "fixed-udp3478-missing.rules").read_text() == "fixed\n"
    assert report.topology_mark(res)["path"][-3:] == ["vpn-gw", "agents", "fw"]
