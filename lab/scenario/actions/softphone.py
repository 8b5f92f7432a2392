"""What both kinds of call step (one call, a load run) know of the softphone's reports."""

SOFTPHONE_ERRORS = ("unsupported_browser", "microphone_not_shared", "signalling_handshake_failure",
                    "signalling_connection_failure", "ice_collection_timeout", "user_busy_error",
                    "webrtc_error", "realtime_communication_error", "vdi_strategy_not_supported",
                    "vdi_redir_not_supported", "other")
ICE_STATE = "ConnectSignalingAndIceCollectionState"
SILENCE_DBFS = -40.0   # as the agent (lab/agent/peer.py): below this the audio counts as silence
