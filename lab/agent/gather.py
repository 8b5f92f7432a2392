"""Relay-only ICE candidate gathering as the browser does it, or as aiortc does it.

Profiles:

``chrome`` (default)
    every ``turn:``/``turns:`` URL of every iceServer is allocated in parallel (UDP, TCP,
    TLS), each with Chrome's STUN schedule (250 ms .. 8 s, 9 sends, 39.75 s); a candidate is
    announced the moment its allocation succeeds; end-of-candidates comes when every URL has
    succeeded or failed. No other cut-off: the softphone's own 8 s timer decides.
``aiortc-default``
    what aiortc 1.16 / aioice 0.13 do: the first TURN URL only, aioice's schedule (0.5 s,
    7 sends), and everything still pending after 5 s dropped without an error.

Only relay candidates exist (``iceTransportPolicy: relay``), so host and srflx gathering is
not done. (Chrome also sends a STUN Binding to each TURN host in relay mode; the lab does
not, as the result is discarded.)
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
from dataclasses import dataclass, field
from typing import Any, Callable

from aioice import Candidate
from aioice.candidate import candidate_foundation

from .stuntx import AIOICE, CHROME, RetransmitSchedule
from .turnclient import RelayTransport, TurnURL, allocate

AIORTC_GATHER_CUTOFF = 5.0  # aioice ice.py gather_candidates: asyncio.wait(..., timeout=5)


@dataclass(frozen=True)
class Profile:
    name: str
    schedule: RetransmitSchedule
    all_urls: bool
    cutoff: float | None
    #: an error other than 401 to the unauthenticated Allocate: ignored (Chrome) or fatal (aioice)
    ignore_pre_auth_errors: bool = False
    #: new allocations (a new socket, a new 401 round) after a 437 Allocation Mismatch
    #: before the URL fails: libwebrtc turn_port.cc ``TurnPort::OnAllocateMismatch``,
    #: ``MAX_ALLOCATE_MISMATCH_RETRIES`` 2; aioice gives up at once
    allocate_mismatch_retries: int = 0


PROFILES = {
    "chrome": Profile("chrome", CHROME, all_urls=True, cutoff=None, ignore_pre_auth_errors=True,
                      allocate_mismatch_retries=2),
    "aiortc-default": Profile("aiortc-default", AIOICE, all_urls=False, cutoff=AIORTC_GATHER_CUTOFF),
}

# RFC 8445 section 5.1.2.1 local preference: libwebrtc prefers relays reached over UDP,
# then TCP, then TLS (port.h RELAY_PORT_TYPE_PREFERENCE and the protocol offsets).
_LOCAL_PREF = {("udp", False): 2, ("tcp", False): 1, ("tcp", True): 0}


@dataclass
class Relay:
    """One gathered relay candidate and the allocation behind it."""

    url: TurnURL
    candidate: Candidate
    transport: RelayTransport
    elapsed: float


@dataclass
class GatherResult:
    relays: list[Relay] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def turn_urls(ice_servers: list[dict[str, Any]]) -> list[tuple[TurnURL, str, str]]:
    """Every TURN URL of an RTCConfiguration's iceServers with its credentials, in order.
    ``stun:`` URLs are skipped: relay-only gathering never uses them."""
    out = []
    for server in ice_servers:
        urls = server.get("urls", [])
        for u in [urls] if isinstance(urls, str) else urls:
            if u.startswith(("turn:", "turns:")):
                out.append((TurnURL.parse(u), server.get("username", ""), server.get("credential", "")))
    return out


def _error_code(exc: BaseException) -> int | None:
    """The STUN error code of a failed transaction (aioice ``TransactionFailed``), if any."""
    response = getattr(exc, "response", None)
    code = getattr(response, "attributes", {}).get("ERROR-CODE") if response is not None else None
    return code[0] if code else None


class RelayGatherer:
    """Gathers relay candidates; reports each through callbacks as it happens.

    ``on_candidate(relay)`` for every candidate, ``on_error(url, reason)`` for every URL that
    fails, ``on_send(url, method, attempt)`` for every STUN (re)transmission and
    ``on_complete()`` once (end-of-candidates)."""

    def __init__(self, ice_servers: list[dict[str, Any]], profile: str = "chrome", *,
                 ssl: ssl_mod.SSLContext | None = None,
                 on_candidate: Callable[[Relay], None] | None = None,
                 on_error: Callable[[TurnURL, str], None] | None = None,
                 on_send: Callable[[TurnURL, str, int], None] | None = None,
                 on_ignored: Callable[[TurnURL, str, int], None] | None = None,
                 on_complete: Callable[[], None] | None = None):
        if profile not in PROFILES:
            raise ValueError(f"unknown ICE profile {profile!r} (choose from {', '.join(PROFILES)})")
        self.profile = PROFILES[profile]
        self.urls = turn_urls(ice_servers)
        if not self.profile.all_urls:
            self.urls = self.urls[:1]
        self.ssl = ssl
        self.on_candidate = on_candidate
        self.on_error = on_error
        self.on_send = on_send
        self.on_ignored = on_ignored
        self.on_complete = on_complete
        self.result = GatherResult()
        self._task: asyncio.Task | None = None
        self._t0 = 0.0

    def start(self) -> asyncio.Task:
        self._task = asyncio.ensure_future(self.gather())
        return self._task

    async def gather(self) -> GatherResult:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        tasks = [asyncio.ensure_future(self._one(i, *u)) for i, u in enumerate(self.urls)]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self.profile.cutoff)
            # aiortc-default: allocations still running at the cut-off vanish without an error
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending)
        if self.on_complete:
            self.on_complete()
        return self.result

    async def _one(self, index: int, url: TurnURL, username: str, password: str) -> None:
        loop = asyncio.get_running_loop()
        sender = (lambda method, n: self.on_send(url, method, n)) if self.on_send else None
        ignored = (lambda method, code: self.on_ignored(url, method, code)) if self.on_ignored else None
        retries = 0
        while True:
            try:
                relay_tr = await allocate(url, username, password, schedule=self.profile.schedule,
                                          ssl=self.ssl, on_send=sender, on_ignored=ignored,
                                          ignore_unauthenticated_errors=self.profile.ignore_pre_auth_errors)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure of a URL is reported, not raised
                if _error_code(exc) == 437 and retries < self.profile.allocate_mismatch_retries:
                    retries += 1       # the new attempt's sends show in the timeline
                    # Chrome's first Allocate on each new socket went out only at its first
                    # retransmission (measured in its TURN log, docs/fidelity.md "437"): one
                    # initial RTO per new allocation, 0.5 s in all for Chrome's two
                    await asyncio.sleep(self.profile.schedule.initial_rto)
                    continue
                reason = f"{type(exc).__name__}: {exc}"
                self.result.errors[url.url] = reason
                if self.on_error:
                    self.on_error(url, reason)
                return
        host, port = relay_tr.relayed
        local_pref = _LOCAL_PREF[(url.transport, url.secure)]
        # relay type preference 0 (RFC 8445 section 5.1.2.2), local preference by transport
        priority = (local_pref << 8) | (256 - 1)
        related = relay_tr.mapped
        cand = Candidate(
            foundation=candidate_foundation("relay", "udp", f"{url.host}:{url.transport}"),
            component=1, transport="udp", priority=priority, host=host, port=port, type="relay",
            related_address=related[0] if related else None,
            related_port=related[1] if related else None)
        relay = Relay(url, cand, relay_tr, loop.time() - self._t0)
        self.result.relays.append(relay)
        if self.on_candidate:
            self.on_candidate(relay)

    async def close(self) -> None:
        """Cancel what is still running and delete every allocation made."""
        if self._task and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for r in self.result.relays:
            r.transport.close()
        self.result.relays.clear()
