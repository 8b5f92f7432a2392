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


def rest_password(secret: str, username: str) -> str:
    """coturn ``use-auth-secret``: the password for a REST username."""
    return base64.b64encode(hmac.digest(secret.encode(), username.encode(), "sha1")).decode()


def rest_username(user: str, ttl: int = 86400, now: float | None = None) -> str:
    return f"{int((now or time.time()) + ttl)}:{user}"


class Credentials:
    def __init__(self, realm: str, users: dict[str, str] | None = None, secret: str | None = None,
                 nonce_lifetime: float = 600.0):
        self.realm = realm
        self.users = dict(users or {})
        self.secret = secret
        self.nonce_lifetime = nonce_lifetime
        self._nonce_key = os.urandom(16)
        self._nonce_window = min(1.0, nonce_lifetime / 20)
        self._current: tuple[float, str] = (float("-inf"), "")    # (issued, nonce) handed out now
        self._issued: dict[str, float] = {}                       # nonce -> issue time
        self._keys: dict[str, bytes] = {}
        self._rest_keys: dict[str, bytes] = {}

    # -- RFC 8489 section 9.2.2: the HMAC key ------------------------------------------

    def key(self, username: str, now: float | None = None) -> bytes | None:
        """The long-term key for ``username``, or None (unknown user, expired REST name)."""
        if username in self.users:
            k = self._keys.get(username)
            if k is None:
                k = self._keys[username] = long_term_key(username, self.realm, self.users[username])
            return k
        if self.secret:
            expiry, _, _ = username.partition(":")
            if not expiry.isdigit() or int(expiry) < (now or time.time()):
                return None
            k = self._rest_keys.get(username)
            if k is None:
                if len(self._rest_keys) > 100000:     # bounded: names are chosen by clients
                    self._rest_keys.clear()
                k = self._rest_keys[username] = long_term_key(username, self.realm,
                                                              rest_password(self.secret, username))
            return k
        return None

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
        """'ok', 'stale' (ours but too old, or from before a restart) or 'bad'."""
        issued = self._issued.get(nonce)
        if issued is None:
            stamp, sep, mac = nonce.partition("-")
            if not sep:
                return "bad"
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
