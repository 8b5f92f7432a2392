"""A minimal RFC 5780 STUN responder: NAT behaviour discovery needs two addresses and two ports.

RFC 5780 section 4 ("Discovery process") asks a server with a primary address A and an
alternate address B, each listening on a primary port P and an alternate port Q. Each
Binding response carries XOR-MAPPED-ADDRESS (what the request came from), RESPONSE-ORIGIN
(where the response is sent from) and OTHER-ADDRESS (B:Q, the endpoint that differs in
both address and port, section 7.4). CHANGE-REQUEST (RFC 5780 section 7.2, flags 0x4 for
"change IP", 0x2 for "change port") makes the server answer from another of its four
sockets, which is how filtering is tested (section 4.4).

The wire format is aioice's (``aioice.stun``); this module only chooses sockets. It owns no
event loop: ``serve()`` polls its four sockets until ``stop`` is set, so a test or
``icelab nat-check`` can run it in a thread whose sockets were made in a lab host's
namespace. ``python -m lab.services.stun5780 A B`` runs it standalone (inside a node).
"""

from __future__ import annotations

import argparse
import selectors
import socket
import threading

from aioice import stun

CHANGE_IP, CHANGE_PORT = 0x4, 0x2
PRIMARY_PORT, ALTERNATE_PORT = 3478, 3479


class Responder:
    def __init__(self, primary: str, alternate: str, ports: tuple[int, int] = (PRIMARY_PORT, ALTERNATE_PORT)):
        self.addresses = (primary, alternate)
        self.ports = ports
        self.sockets: dict[tuple[str, int], socket.socket] = {}
        self.stop = threading.Event()
        self.answered = 0

    def open(self) -> "Responder":
        """Bind the four sockets (call it in the namespace where they should live)."""
        for ip in self.addresses:
            for port in self.ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((ip, port))
                self.sockets[(ip, port)] = s
        return self

    def other(self, ip: str, port: int, change: int) -> tuple[str, int]:
        a, b = self.addresses
        p, q = self.ports
        ip2 = (b if ip == a else a) if change & CHANGE_IP else ip
        port2 = (q if port == p else p) if change & CHANGE_PORT else port
        return ip2, port2

    def handle(self, data: bytes, local: tuple[str, int], remote: tuple[str, int]) -> tuple[tuple[str, int], bytes] | None:
        """The (socket, response) for one datagram, or None if it is not a Binding request."""
        try:
            req = stun.parse_message(data)
        except ValueError:
            return None
        if req.message_method != stun.Method.BINDING or req.message_class != stun.Class.REQUEST:
            return None
        origin = self.other(*local, req.attributes.get("CHANGE-REQUEST", 0))
        resp = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                            transaction_id=req.transaction_id)
        resp.attributes["XOR-MAPPED-ADDRESS"] = remote
        resp.attributes["RESPONSE-ORIGIN"] = origin
        resp.attributes["OTHER-ADDRESS"] = self.other(*local, CHANGE_IP | CHANGE_PORT)
        return origin, bytes(resp)

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        for key, s in self.sockets.items():
            sel.register(s, selectors.EVENT_READ, key)
        try:
            while not self.stop.is_set():
                for k, _ in sel.select(timeout=0.1):
                    try:
                        data, remote = k.fileobj.recvfrom(2048)
                    except OSError:
                        continue
                    out = self.handle(data, k.data, remote)
                    if out:
                        self.sockets[out[0]].sendto(out[1], remote)
                        self.answered += 1
        finally:
            sel.close()

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets.values():
            s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="RFC 5780 STUN responder on two addresses, ports 3478 and 3479")
    p.add_argument("primary")
    p.add_argument("alternate")
    args = p.parse_args(argv)
    r = Responder(args.primary, args.alternate).open()
    try:
        r.serve()
    except KeyboardInterrupt:
        pass
    finally:
        r.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
