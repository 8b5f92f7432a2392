"""A TURN probe run as a program (also inside lab namespaces): aioice allocates on
SERVER, sends COUNT datagrams through the relay to PEER (a UDP echo) and counts the
echoes. Prints one JSON line: relay address, sent, received."""

import argparse
import asyncio
import json
import ssl
import sys
import time


async def main(a) -> dict:
    from aioice import turn
    got = []

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)

    ctx = None
    if a.transport == "tls":
        ctx = ssl.create_default_context(cafile=a.ca)
        ctx.check_hostname = False
    t0 = time.monotonic()
    tr, _ = await asyncio.wait_for(turn.create_turn_endpoint(
        Proto, (a.server, a.port), a.username, a.password, ssl=ctx,
        transport="tcp" if a.transport in ("tcp", "tls") else "udp"), 10)
    alloc_ms = (time.monotonic() - t0) * 1000
    relay = tr.get_extra_info("sockname")
    peer = (a.peer.rsplit(":", 1)[0], int(a.peer.rsplit(":", 1)[1]))
    for i in range(a.count):
        tr.sendto(b"probe %d" % i, peer)
        await asyncio.sleep(0.01)
    for _ in range(100):
        if len(got) >= a.count:
            break
        await asyncio.sleep(0.02)
    tr.close()
    return {"relay": list(relay), "sent": a.count, "received": len(got), "allocate_ms": round(alloc_ms, 1)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, default=3478)
    ap.add_argument("--transport", default="udp")
    ap.add_argument("--username")
    ap.add_argument("--password")
    ap.add_argument("--peer", required=True)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--ca")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(main(args))))
    sys.stdout.flush()
