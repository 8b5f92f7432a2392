"""What a run observed, typed: a probe's packets, a call's outcome and audio, a firewall's
counters.

The runner records each observation as the plain data it came as (the probe sender's JSON
line, the softphone's outcome, with the diagnosis added): that record is what
``Result.to_dict()`` and the reports show, unchanged. Expectations read it through these
classes, built once per evaluation with ``from_dict``; a record may lack fields (a call
that failed early has no quality), so every field has its "not seen" value.
"""

from __future__ import annotations

import json

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProbeObservation:
    sent: int
    replies: int
    requests_received: int | None        # None: a service answers there and nothing counted them
    to_node: str
    rtt_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests_where: str | None = None    # where the requests stopped (diagnose.py)
    replies_where: str | None = None
    answered_by: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeObservation":
        return cls(sent=d["sent"], replies=d["replies"], requests_received=d["requests_received"],
                   to_node=d["to_node"], rtt_ms=list(d.get("rtt_ms") or []), errors=list(d.get("errors") or []),
                   requests_where=d.get("requests_where"), replies_where=d.get("replies_where"),
                   answered_by=d.get("answered_by"))


@dataclass(frozen=True)
class Quality:
    """The softphone's RTP/RTCP statistics once Talking."""

    packets_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    remote_packets_lost: int | None = None    # from the far end's RTCP receiver reports
    silent_audio: bool = False
    relay_transport: str | None = None
    jitter_ms: float | None = None
    jitter_max_ms: float | None = None
    rtt_ms: float | None = None

    @classmethod
    def from_dict(cls, q: dict | None) -> "Quality":
        q = q or {}
        return cls(**{k: q.get(k) for k in ("packets_sent", "packets_received", "packets_lost",
                                            "remote_packets_lost", "relay_transport", "jitter_ms",
                                            "jitter_max_ms", "rtt_ms")},
                   silent_audio=bool(q.get("silent_audio")))

    @property
    def loss(self) -> float | None:
        """The worse direction's loss ratio: the agent's receiver counts what it lost of the
        caller's audio; the far end's RTCP receiver reports what it lost of the agent's."""
        ratios = []
        if self.packets_received is not None and self.packets_lost is not None:
            total = self.packets_received + max(0, self.packets_lost)
            if total:
                ratios.append(max(0, self.packets_lost) / total)
        if self.remote_packets_lost is not None and self.packets_sent:
            ratios.append(max(0, self.remote_packets_lost) / self.packets_sent)
        return max(ratios) if ratios else None


def audio_loss(q: dict) -> float | None:
    """``Quality.loss`` of a quality record."""
    return Quality.from_dict(q).loss


@dataclass(frozen=True)
class Times:
    """A call's times on the softphone's clock (runner: the call action's ``finish``)."""

    ice_start: float | None = None
    first_candidate: float | None = None     # s after the ICE state began
    error: float | None = None               # s after the state the error came in began
    error_state: str | None = None
    error_from: str | None = None            # "call" or "state": what ``error`` counts from
    talking: float | None = None
    # the same clock, for comparing engines (issue 14): when the call began, when the peer
    # connection (and its candidate pool) was created, the first relay candidate counted
    # from it, and the error's own moment
    call_start: float | None = None
    pc_created: float | None = None
    first_candidate_pc: float | None = None  # s after the peer connection was created
    error_t: float | None = None

    @classmethod
    def from_dict(cls, t: dict | None) -> "Times":
        t = t or {}
        return cls(**{k: t.get(k) for k in ("ice_start", "first_candidate", "error", "error_state",
                                            "error_from", "talking", "call_start", "pc_created",
                                            "first_candidate_pc", "error_t")})


def hangups(text: str) -> dict[str, dict]:
    """The media edge's hang-up lines in (part of) its log, by call id, the last of each id:
    what each call's caller leg received from the agent."""
    out: dict[str, dict] = {}
    for line in text.splitlines():
        if '"event": "hangup"' in line:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("callId") is not None:
                out[item["callId"]] = item
    return out


@dataclass(frozen=True)
class FarEnd:
    """What the cloud's caller leg received from the agent (the media edge's hangup log)."""

    packets_received: int | None = None
    packets_lost: int | None = None
    heard_hz: float | None = None
    heard_dbfs: float | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "FarEnd":
        return cls(**{k: d.get(k) for k in ("packets_received", "packets_lost", "heard_hz", "heard_dbfs")})


@dataclass(frozen=True)
class CallObservation:
    reached_talking: bool = False
    softphone_error: str | None = None
    rtc_error: str | None = None
    quality: Quality = field(default_factory=Quality)
    times: Times = field(default_factory=Times)
    timeline: list[dict] = field(default_factory=list)     # the softphone's events
    far_end: FarEnd | None = None
    diagnosis: str | None = None
    local_candidates: int | None = None
    vdi: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "CallObservation":
        far = d.get("far_end")
        return cls(reached_talking=bool(d.get("reached_talking")), softphone_error=d.get("softphone_error"),
                   rtc_error=d.get("rtc_error"), quality=Quality.from_dict(d.get("quality")),
                   times=Times.from_dict(d.get("times")), timeline=list(d.get("timeline") or []),
                   far_end=None if far is None else FarEnd.from_dict(far), diagnosis=d.get("diagnosis"),
                   local_candidates=d.get("local_candidates"), vdi=d.get("vdi") or None)

    @property
    def start(self) -> float:
        """The softphone's clock when the call began (its first event)."""
        return (self.timeline or [{}])[0].get("t", 0.0)

    def candidates(self, name: str) -> list[str]:
        """The candidate lines of one kind of event: 'relay' (sent in the invite), 'host' (kept)."""
        return [e["candidate"] for e in self.timeline if e.get("kind") == "candidate" and e.get("name") == name]


@dataclass(frozen=True)
class FirewallObservation:
    """A firewall's (or NAT's) rules with their counters at the end of the run."""

    rules: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "FirewallObservation":
        return cls(rules=list(d.get("rules", [])))
