"""What the browser hides of the agent's own addresses before a candidate leaves it.

- **mDNS host names** (draft-ietf-mmusic-mdns-ice-candidates, section 3.1.1, "ICE Candidate
  Gathering"): a host candidate's IP address is replaced by a name made of a random UUID
  version 4 and ``.local``, one name per address, kept for the session. Chrome does this
  when the page has no camera or microphone permission, or always when the "Anonymize local
  IPs exposed by WebRTC" flag or an IT policy forces it (the field guide's claim 5).
- **Candidate filtering** (JSEP, RFC 8829 section 4.1.1, iceTransportPolicy ``relay``): only
  relay candidates are surfaced. Host candidates are still gathered inside the browser (each
  TURN allocation's socket is one: its base), but never signalled.
- **Related address** (libwebrtc ``Candidate::ToSanitizedCopy``): when the candidate filter
  excludes server-reflexive candidates, as relay-only does, a relay candidate is signalled
  with ``raddr 0.0.0.0 rport 0`` so that its mapped address does not leak either.

So with relay-only ICE nothing mDNS changes leaves the agent: the lab records the host
candidates it would have (named or not) in the timeline, marked as not sent.
"""

from __future__ import annotations

import uuid

from aioice import Candidate
from aioice.candidate import candidate_foundation, candidate_priority


def mdns_name() -> str:
    """``<uuid4>.local``, as Chrome names an obfuscated host candidate."""
    return f"{uuid.uuid4()}.local"


class HostNames:
    """The name each local address gets for the session: itself, or its mDNS name."""

    def __init__(self, obfuscate: bool):
        self.obfuscate = obfuscate
        self._names: dict[str, str] = {}

    def __call__(self, address: str) -> str:
        if not self.obfuscate:
            return address
        return self._names.setdefault(address, mdns_name())


def host_candidate(names: HostNames, base: tuple[str, int], transport: str = "udp") -> Candidate:
    """The host candidate of a socket (RFC 8445 section 5.1.1.1), its address named."""
    return Candidate(foundation=candidate_foundation("host", transport, base[0]), component=1,
                     transport=transport, priority=candidate_priority(1, "host"), host=names(base[0]),
                     port=base[1], type="host")


def signalled(c: Candidate) -> Candidate:
    """A relay candidate as relay-only Chrome signals it: related address zeroed."""
    if c.type != "relay":
        return c
    return Candidate(foundation=c.foundation, component=c.component, transport=c.transport, priority=c.priority,
                     host=c.host, port=c.port, type=c.type, related_address="0.0.0.0", related_port=0,
                     tcptype=c.tcptype)
