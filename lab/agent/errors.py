"""RTC error names (connect-rtc-js ``rtc_const.js`` ``RTC_ERRORS``) and what the agent's
softphone shows for each (amazon-connect-streams ``softphone.js`` ``SoftphoneErrorTypes``).

Source: ../shared/reference/softphone.md, "Error names".
"""

from __future__ import annotations
from lab.core.errors import LabError

ICE_COLLECTION_TIMEOUT = "ICE_COLLECTION_TIMEOUT"
USER_BUSY = "USER_BUSY"
SIGNALLING_CONNECTION_FAILURE = "SIGNALLING_CONNECTION_FAILURE"
SIGNALLING_HANDSHAKE_FAILURE = "SIGNALLING_HANDSHAKE_FAILURE"
SET_REMOTE_DESCRIPTION_FAILURE = "SET_REMOTE_DESCRIPTION_FAILURE"
CREATE_OFFER_FAILURE = "CREATE_OFFER_FAILURE"
SET_LOCAL_DESCRIPTION_FAILURE = "SET_LOCAL_DESCRIPTION_FAILURE"
INVALID_REMOTE_SDP = "INVALID_REMOTE_SDP"
NO_REMOTE_ICE_CANDIDATE = "NO_REMOTE_ICE_CANDIDATE"
GUM_TIMEOUT_FAILURE = "GUM_TIMEOUT_FAILURE"
GUM_OTHER_FAILURE = "GUM_OTHER_FAILURE"
CALL_NOT_FOUND = "CALL_NOT_FOUND"

RTC_ERRORS = (
    ICE_COLLECTION_TIMEOUT, USER_BUSY, SIGNALLING_CONNECTION_FAILURE, SIGNALLING_HANDSHAKE_FAILURE,
    SET_REMOTE_DESCRIPTION_FAILURE, CREATE_OFFER_FAILURE, SET_LOCAL_DESCRIPTION_FAILURE,
    INVALID_REMOTE_SDP, NO_REMOTE_ICE_CANDIDATE, GUM_TIMEOUT_FAILURE, GUM_OTHER_FAILURE,
    CALL_NOT_FOUND,
)

_MAPPING = {
    ICE_COLLECTION_TIMEOUT: "ice_collection_timeout",
    USER_BUSY: "user_busy_error",
    SIGNALLING_HANDSHAKE_FAILURE: "signalling_handshake_failure",
    SIGNALLING_CONNECTION_FAILURE: "signalling_connection_failure",
    GUM_TIMEOUT_FAILURE: "microphone_not_shared",
    GUM_OTHER_FAILURE: "microphone_not_shared",
    CALL_NOT_FOUND: None,  # Streams only logs it: the agent sees no error
}

# JSON-RPC error codes of the LilyRTC signalling (reference, "Signalling").
RPC_BUSY = 486
RPC_CALL_NOT_FOUND = 404


def softphone_error_type(rtc_error: str) -> str | None:
    """What Streams reports for an RTC error; None when it only logs it (CALL_NOT_FOUND)."""
    if rtc_error not in RTC_ERRORS:
        raise ValueError(f"unknown RTC error {rtc_error!r}")
    return _MAPPING.get(rtc_error, "webrtc_error")


def invite_error(code: int | None) -> str:
    """The RTC error for a JSON-RPC error (or a timeout, ``None``) in answer to ``invite``:
    486 is USER_BUSY, 404 CALL_NOT_FOUND, everything else a handshake failure."""
    if code == RPC_BUSY:
        return USER_BUSY
    if code == RPC_CALL_NOT_FOUND:
        return CALL_NOT_FOUND
    return SIGNALLING_HANDSHAKE_FAILURE


class RTCError(LabError):
    """A session failure carrying the library's error name."""

    def __init__(self, name: str, detail: str = ""):
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name
        self.detail = detail
