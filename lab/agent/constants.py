"""The softphone's timers and limits, as ``connect-rtc-js`` v1.3.2 ``src/rtc_const.js`` defines them.

Values are in seconds (the library's are milliseconds: the names keep ``_MS`` out).
Source: ../shared/reference/softphone.md, table "Session state machine".
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_GUM_TIMEOUT = 10.0           # DEFAULT_GUM_TIMEOUT_MS: getUserMedia -> GUM_TIMEOUT_FAILURE
DEFAULT_ICE_TIMEOUT = 8.0            # DEFAULT_ICE_TIMEOUT_MS: ICE collection ends
DEFAULT_CONNECT_TIMEOUT = 10.0       # DEFAULT_CONNECT_TIMEOUT_MS: signalling WebSocket open
CONNECT_MAX_RETRIES = 3              # WebSocket attempts in all (signaling.js: ++retries < 3), then SIGNALLING_CONNECTION_FAILURE
MAX_INVITE_DELAY = 5.0               # MAX_INVITE_DELAY_MS: no answer -> SIGNALLING_HANDSHAKE_FAILURE
MAX_ACCEPT_BYE_DELAY = 2.0           # MAX_ACCEPT_BYE_DELAY_MS: wait for the bye response
DEFAULT_ICE_CANDIDATE_POOL_SIZE = 1
RTC_PEER_CONNECTION_IDLE_TIMEOUT = 60.0
ICE_RESTART_RETRY_INTERVAL = 3.0
VDI_PLUGIN_TIMEOUT = 10.0            # VDI plug-ins wait up to 10000 ms -> vdi_redir_not_supported

# The peer connection the library builds (rtc_session.js), kept as the reference: no code
# reads this dict. The chromium engine runs the library, which passes it to RTCPeerConnection
# itself; the emulated agent has the same behaviour written into its code: relay candidates
# only (gather.py, peer.py), one audio m-line with a=rtcp-mux (peer.py's offer, so bundlePolicy
# has nothing to choose), and the candidate pool of one: it starts gathering when the session
# creates the peer connection, before GrabLocalMediaState (peer.py create_peer_connection).
PEER_CONNECTION_CONFIG = {
    "iceTransportPolicy": "relay",
    "rtcpMuxPolicy": "require",
    "bundlePolicy": "balanced",
    "sdpSemantics": "unified-plan",
    "iceCandidatePoolSize": DEFAULT_ICE_CANDIDATE_POOL_SIZE,
}


@dataclass(frozen=True)
class Timers:
    """The session's timers; the defaults are the library's. Tests and scenarios may pass
    others (a shorter ICE timer to explore), reports always print what was used."""

    gum: float = DEFAULT_GUM_TIMEOUT
    ice: float = DEFAULT_ICE_TIMEOUT
    connect: float = DEFAULT_CONNECT_TIMEOUT
    connect_max_retries: int = CONNECT_MAX_RETRIES
    invite: float = MAX_INVITE_DELAY
    accept_bye: float = MAX_ACCEPT_BYE_DELAY
    vdi_plugin: float = VDI_PLUGIN_TIMEOUT
