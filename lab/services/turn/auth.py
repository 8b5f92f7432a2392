"""Long-term credentials (RFC 8489 section 9.2) with coturn's REST variant.

Static users have a password; REST users (coturn ``use-auth-secret``, draft-uberti-
behave-turn-rest) have the username ``"<expiry unix time>:<user>"`` and the password
base64(HMAC-SHA1(secret, username)), refused once the expiry has passed.

Nonces are stateless: ``<issue time hex>`` + an HMAC of it with a key that lives only as
long as the process (a restart makes every nonce stale, as coturn's do). For speed, one
nonce is handed to every client that asks within a short window (1/20 of the nonce
lifetime, at most 1 s), and the nonces issued recently are remembered, so that checking
one is a dictionary lookup; anything else is still checked by its HMAC.
"""

from __future__ import annotations

import base64
import hmac
import os
import time

from lab.core.stun import long_term_key


#: the REST key cache's cap (names, keys and dict entries, roughly): ~4,000 names of 500
#: bytes, or ~20,000 of a usual length
REST_CACHE_BYTES = 4 << 20
_ENTRY_OVERHEAD = 150       # a str and a bytes object and a dict slot, on CPython 3.11


def rest_password(secret: str, username: str) -> str:
    """coturn ``use-auth-secret``: the password for a REST username."""
    return base64.b64encode(hmac.digest(secret.encode(), username.encode(), "sha1")).decode()


def rest_username(user: str, ttl: int = 86400, now: float | None = None) -> str:
    return f"{int((now or time.time()) + ttl)}:{user}"


class Credentials:
    def __init__(self, realm: str, users: dict[str, str] | None = None, secret: str | None = None,
                 nonce_lifetime: float = 600.0, cache_bytes: int = REST_CACHE_BYTES):
        self.realm = realm
        self.users = dict(users or {})
        self.secret = secret
        self.nonce_lifetime = nonce_lifetime
        self._nonce_key = os.urandom(16)
        self._nonce_window = min(1.0, nonce_lifetime / 20)
        self._current: tuple[float, str] = (float("-inf"), "")    # (issued, nonce) handed out now
        self._issued: dict[str, float] = {}                       # nonce -> issue time
        # static users come from the config: their keys are made once, here
        self._keys = {u: long_term_key(u, self.realm, p) for u, p in self.users.items()}
        self._rest_keys: dict[str, bytes] = {}
        self._cache_cap = cache_bytes
        self.cached_bytes = 0

    # -- RFC 8489 section 9.2.2: the HMAC key ------------------------------------------

    def lookup(self, username: str, now: float | None = None) -> tuple[bytes | None, str]:
        """The long-term key for ``username`` and why there is none ("unknown user",
        "expired credentials"). Nothing is cached here: a REST name is the client's
        choice, so its key is kept only once a request proved it (``remember``)."""
        k = self._keys.get(username)
        if k is not None:
            return k, ""
        if self.secret:
            expiry, _, _ = username.partition(":")
            if expiry.isdigit():        # "<expiry>:<user>", or the expiry alone (coturn takes both)
                if int(expiry) < (now or time.time()):
                    return None, "expired credentials"
                k = self._rest_keys.get(username)
                if k is None:
                    k = long_term_key(username, self.realm, rest_password(self.secret, username))
                return k, ""
        return None, "unknown user"

    def key(self, username: str, now: float | None = None) -> bytes | None:
        """The long-term key for ``username``, or None (unknown user, expired REST name)."""
        return self.lookup(username, now)[0]

    def remember(self, username: str, key: bytes) -> None:
        """Keep the key of a REST name whose MESSAGE-INTEGRITY checked (a client's next
        requests skip two hashes). The cache is capped by its size in bytes, not by count:
        names may be up to 508 bytes each."""
        if username in self._keys or username in self._rest_keys:
            return
        size = len(username) + len(key) + _ENTRY_OVERHEAD
        if self.cached_bytes + size > self._cache_cap:
            self._rest_keys.clear()
            self.cached_bytes = 0
        self._rest_keys[username] = key
        self.cached_bytes += size

    @staticmethod
    def user_of(username: str) -> str:
        """The quota is per user: a REST name's user part (after the expiry)."""
        expiry, sep, user = username.partition(":")
        return user if sep and expiry.isdigit() else username

    # -- RFC 8489 section 9.2.4: nonces ------------------------------------------------

    def nonce(self, now: float | None = None) -> str:
        now = now or time.time()
        issued, current = self._current
        if 0 <= now - issued < self._nonce_window:
            return current
        stamp = f"{int(now * 1000):x}"
        nonce = stamp + "-" + self._mac(stamp)
        issued = int(stamp, 16) / 1000
        self._current = (issued, nonce)
        if len(self._issued) > 4096:        # older ones are still checked by their HMAC
            self._issued.clear()
        self._issued[nonce] = issued
        return nonce

    def _mac(self, stamp: str) -> str:
        return hmac.digest(self._nonce_key, stamp.encode(), "sha1").hex()[:16]

    def nonce_state(self, nonce: str, now: float | None = None) -> str:
        """'ok', 'stale' (ours but too old, or from before a restart) or 'bad' (not one of
        ours: malformed, or not ASCII, which ours always are)."""
        issued = self._issued.get(nonce)
        if issued is None:
            stamp, sep, mac = nonce.partition("-")
            if not sep or not nonce.isascii():
                return "bad"        # compare_digest raises TypeError on non-ASCII str
            if not hmac.compare_digest(self._mac(stamp), mac):
                return "stale"
            try:
                issued = int(stamp, 16) / 1000
            except ValueError:
                return "bad"
        return "ok" if (now or time.time()) - issued < self.nonce_lifetime else "stale"

    def forget_nonces(self) -> None:
        """A server restart: every nonce issued so far becomes stale."""
        self._nonce_key = os.urandom(16)
        self._current = (float("-inf"), "")
        self._issued.clear()
