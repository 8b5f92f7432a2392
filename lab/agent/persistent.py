"""The CCP's persistent peer connection (connect-rtc-js 1.3.2 ``RtcPeerConnectionManager``):
one peer connection and its TURN allocation, set up at page load and kept between calls.

What the library does (bundle module 34 ``rtc_peer_connection_manager``, 36 ``rtc_session``,
37 the TalkingState substates, 43 ``signaling``; docs/persistent.md has the lines):

- set-up: ``activatePersistentPeerConnectionMode()`` asks for ICE servers, creates the peer
  connection and runs an RTCSession through the normal path with no contact token; its
  ``invite`` carries ``persistentConnection: true``. ``AcceptState._checkAndTransit`` then goes
  to DisconnectedState and the manager keeps the peer connection, the answer's
  ``peerConnectionId``/``peerConnectionToken`` and the LilyRTC channel.
- a call: ``RTCSession.connect(pc)`` with the manager's channel goes to ``ConnectContactState``,
  which sends ``connectContact`` and enters TalkingState at once: no getUserMedia wait, no
  gathering, no invite, no 8 s ICE timer. Hang-up sends ``disconnectContact``, not ``bye``.
- between calls the local track is only paused (``CleanUpState``: ``pauseLocalAudio``), so the
  browser keeps sending RTP (silence) and its ICE checks: the NAT mapping is never idle.
- ICE restart: only in TalkingState's ``ConnectedSubstate``, when ICE *changes* to
  ``disconnected`` and is still so 3 s later (``retryInterval`` 3000), and only with a
  ``peerConnectionToken``; or when the server answers ``Stale Peer Connection`` (400).
  Between calls no session watches ICE, and the health check runs only when a call ends.
- the channel's inactivity timer (the answer's ``inactivityDuration``) destroys an idle
  persistent connection; the next call then starts from scratch.

Chrome's refreshes of the idle TURN allocation (libwebrtc ``turn_port.cc``, see
:data:`CHROME_TURN`) happen far later than RTP and consent traffic, so they do not decide
whether a NAT keeps the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

#: connect-rtc-js 1.3.2, module 37 ``ConnectedSubstate``: ``this.retryInterval=3e3``
ICE_RESTART_AFTER = 3.0
#: module 37 ``InviteAnswerSubstate``: ``maxRetries=3, retryInterval=1e3`` for an ICE-restart invite
ICE_RESTART_INVITE_RETRIES = 3
ICE_RESTART_INVITE_RETRY_INTERVAL = 1.0
#: module 43: ``connectContact`` is retried on a JSON-RPC error while ``++retries < h``
#: libwebrtc p2p_constants.h ``STRONG_AND_STABLE_WRITABLE_CONNECTION_PING_INTERVAL`` (2500 ms):
#: how often Chrome pings a stable connection, idle or not
CHROME_STABLE_PING_INTERVAL = 2.5
#: Chrome sends RTP every 20 ms from a disabled (paused) audio track: Opus with usedtx=0
RTP_INTERVAL = 0.020


@dataclass(frozen=True)
class TurnRefresh:
    """When libwebrtc's TurnPort refreshes what it holds on the server (``turn_port.cc``)."""

    #: ``TurnRefreshRequest`` scheduled at lifetime - 60 s (``ScheduleRefresh``:
    #: ``lifetime - TURN_REFRESH_MARGIN`` with 60 s margin)
    allocation_margin: float = 60.0
    #: ``TURN_PERMISSION_TIMEOUT`` 5 min, CreatePermission resent 1 min before: every 240 s
    permission: float = 240.0
    #: ``TURN_CHANNEL_BINDING_TIMEOUT`` 10 min, ChannelBind resent 1 min before: every 540 s
    channel: float = 540.0

    def allocation(self, lifetime: float) -> float:
        return max(lifetime - self.allocation_margin, 1.0)


CHROME_TURN = TurnRefresh()


@dataclass(frozen=True)
class PersistentOptions:
    """A session option: keep the peer connection between ``calls`` calls, ``idle`` seconds
    apart (``settle``: seconds between the set-up and the first call)."""

    calls: int = 2
    idle: float = 20.0
    settle: float = 0.0

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("persistent.calls must be at least 1")
        if self.idle < 0 or self.settle < 0:
            raise ValueError("persistent.idle and persistent.settle must be >= 0 seconds")

    @classmethod
    def from_dict(cls, doc: dict) -> "PersistentOptions":
        unknown = set(doc) - {"calls", "idle", "settle"}
        if unknown:
            raise ValueError(f"persistent.{sorted(unknown)[0]}: unknown (known: calls, idle, settle)")
        return cls(calls=int(doc.get("calls", 2)), idle=float(doc.get("idle", 20.0)),
                   settle=float(doc.get("settle", 0.0)))

    def as_dict(self) -> dict:
        return {"calls": self.calls, "idle": self.idle, "settle": self.settle}
