"""Softphone media info: what the Connect control plane hands the softphone for each call
(amazon-connect-streams ``softphone.js``; reference softphone.md "Signalling").

TURN credentials follow the REST scheme coturn implements as ``use-auth-secret``:
username ``"<expiry unix time>:<user>"``, password ``base64(HMAC-SHA1(secret, username))``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

DEFAULT_TTL = 3600


def turn_rest_credentials(secret: str, user: str = "agent", ttl: int = DEFAULT_TTL,
                          now: float | None = None) -> tuple[str, str]:
    """(username, password) valid for ``ttl`` seconds, for a TURN server sharing ``secret``."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{user}"
    password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, password


def media_info(*, turn_urls: list[str], turn_secret: str, signalling_endpoint: str,
               user: str = "agent", ttl: int = DEFAULT_TTL, call_type: str = "audio_only",
               auto_accept: bool = False, call_context_token: str | None = None) -> dict[str, Any]:
    """One call's softphone media info, with fresh TURN credentials.

    ``turn_urls`` all share one credential (one iceServers entry), as Connect's do."""
    username, credential = turn_rest_credentials(turn_secret, user, ttl)
    config = {
        "iceServers": [{"urls": list(turn_urls), "username": username, "credential": credential}],
        "signalingEndpoint": signalling_endpoint,
        "protocol": "LilyRTC/1.0/WSS",
        "useWebSocketProvider": False,
    }
    return {
        "callType": call_type,
        "autoAccept": auto_accept,
        "callContextToken": call_context_token or secrets.token_urlsafe(24),
        "mediaLegContextToken": secrets.token_urlsafe(24),  # unused by the library
        "callConfigJson": json.dumps(config),
    }


def call_config(info: dict[str, Any]) -> dict[str, Any]:
    """The parsed ``callConfigJson`` of a media info."""
    return json.loads(info["callConfigJson"])
