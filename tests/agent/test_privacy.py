"""What leaves the agent: mDNS host names, relay-only filtering, zeroed related addresses."""

import re
from types import SimpleNamespace

from aioice import Candidate

from lab.agent import privacy
from lab.agent.peer import RelayPeer
from lab.agent.timeline import Timeline
from lab.agent.turnclient import TurnURL

UUID_LOCAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.local$")


def test_mdns_names_are_uuid4_dot_local_one_per_address():
    names = privacy.HostNames(obfuscate=True)
    a, b = names("10.10.0.2"), names("10.10.0.3")
    assert UUID_LOCAL.match(a) and UUID_LOCAL.match(b) and a != b
    assert names("10.10.0.2") == a                       # kept for the session
    assert privacy.HostNames(obfuscate=False)("10.10.0.2") == "10.10.0.2"


def test_a_relay_candidate_is_signalled_with_its_related_address_zeroed():
    c = Candidate(foundation="f", component=1, transport="udp", priority=767, host="203.0.113.10", port=50000,
                  type="relay", related_address="10.10.0.2", related_port=40000)
    sdp = privacy.signalled(c).to_sdp()
    assert sdp.endswith("typ relay raddr 0.0.0.0 rport 0") and "10.10.0.2" not in sdp
    assert c.related_address == "10.10.0.2"              # the agent's own copy is untouched


def _relay(base):
    sock = SimpleNamespace(get_extra_info=lambda name: base if name == "sockname" else None)
    cand = Candidate(foundation="f", component=1, transport="udp", priority=767, host="203.0.113.10", port=50000,
                     type="relay", related_address=base[0], related_port=base[1])
    return SimpleNamespace(candidate=cand, url=TurnURL.parse("turn:203.0.113.10:3478?transport=udp"),
                           transport=SimpleNamespace(client=SimpleNamespace(transport=sock)))


def test_with_mdns_the_host_candidate_is_named_and_kept_inside_the_agent():
    for mdns in (True, False):
        tl = Timeline()
        peer = RelayPeer([], timeline=tl, media=False, mdns=mdns)
        sent = []
        peer._host_of(_relay(("10.10.0.2", 40000)))
        peer._host_of(_relay(("10.10.0.2", 40000)))      # one host candidate per socket
        sent.append("candidate:" + privacy.signalled(_relay(("10.10.0.2", 40000)).candidate).to_sdp())
        hosts = [e for e in tl.as_list() if e["kind"] == "candidate" and e["name"] == "host"]
        assert len(hosts) == 1 and hosts[0]["sent"] is False
        host = hosts[0]["candidate"].split()[4]
        assert bool(UUID_LOCAL.match(host)) == mdns and (host == "10.10.0.2") != mdns
        assert "10.10.0.2" not in sent[0] and ".local" not in sent[0]
