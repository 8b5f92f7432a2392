"""The RFC 5780 STUN responder of ``icelab nat-check``: the lab's TURN server, STUN only.

RFC 5780 section 4 ("Discovery process") asks a server with a primary address A and an
alternate address B, each listening on a primary port P and an alternate port Q. The lab's
TURN server is that server when it is given ``alt_address`` and ``alt_port`` (its Binding,
RFC 5780 section 6: XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, CHANGE-REQUEST
answered from another of its four sockets; see docs/turn.md). This module runs it with UDP
only, no TCP, TLS, control socket or log, so there is one RFC 5780 implementation in the lab.

``Responder.run()`` serves in the calling thread, on an event loop of its own, until
``stop()``: ``icelab nat-check`` runs it in a thread that joined a lab host's network
namespace. ``python -m lab.services.stun5780 A B`` runs it standalone (inside a node).
"""

from __future__ import annotations

import argparse
import asyncio
import threading

from lab.core.stun import CHANGE_IP, CHANGE_PORT
from .turn.config import TurnConfig
from .turn.transports import Service

__all__ = ["CHANGE_IP", "CHANGE_PORT", "PRIMARY_PORT", "ALTERNATE_PORT", "Responder", "config"]

PRIMARY_PORT, ALTERNATE_PORT = 3478, 3479


def config(primary: str, alternate: str, ports: tuple[int, int] = (PRIMARY_PORT, ALTERNATE_PORT)) -> TurnConfig:
    """The TURN server's config for a STUN-only RFC 5780 responder on A, B x P, Q."""
    return TurnConfig(addresses=[primary], alt_address=alternate, udp_port=ports[0], alt_port=ports[1],
                      tcp_port=None, tls_port=None)


class Responder:
    def __init__(self, primary: str, alternate: str, ports: tuple[int, int] = (PRIMARY_PORT, ALTERNATE_PORT)):
        self.config = config(primary, alternate, ports)
        #: set once the four sockets are bound, or binding them failed (then ``error`` says why)
        self.ready = threading.Event()
        self.error: Exception | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = None

    def run(self) -> None:
        """Serve until ``stop()``; the sockets live in the calling thread's namespace."""
        try:
            asyncio.run(self._serve())
        except Exception as exc:        # handed to whoever waits for ``ready``
            self.error = exc
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        stop = asyncio.Event()
        self._wake = stop.set
        self._loop = asyncio.get_running_loop()     # stop() may use it from here on
        svc = Service(self.config)
        try:
            await svc.start()
            self.ready.set()
            if not self._stopping.is_set():
                await stop.wait()
        finally:
            svc.close()

    def stop(self) -> None:
        """From any thread, at any time (before ``run``, while it binds, after it failed)."""
        self._stopping.set()
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:        # the loop ended already
                pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="RFC 5780 STUN responder on two addresses, ports 3478 and 3479")
    p.add_argument("primary")
    p.add_argument("alternate")
    args = p.parse_args(argv)
    r = Responder(args.primary, args.alternate)
    try:
        r.run()
    except KeyboardInterrupt:
        pass
    if r.error is not None:
        print(f"stun5780: {r.error}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
