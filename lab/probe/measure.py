"""The measurements: name resolution, STUN Binding from many source ports, TURN Allocate
(unauthenticated and with the media info's credentials), TCP 443, and the signalling
endpoint's TCP, TLS and WebSocket upgrade, optionally through an HTTPS proxy (CONNECT).

Plain asyncio sockets only (UDP, TCP, TLS: no raw sockets, nothing that needs root, nothing
Linux-only). Every packet the probe sends goes through one :class:`Pace` (at most 50 a
second, a fixed total) and only to addresses resolved from the targets it was given.
Every wait has a deadline, so a network that drops everything still ends the run in time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import ssl
import statistics
import struct
import threading
import time
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import connect as ws_connect

from lab.core import stun

from .targets import TurnServer

MAX_RATE = 50               # packets a second, every kind together
MAX_PACKETS = 400           # the whole run's total (a default run sends about 360)
#: the audio-like stream: 6 s at 50 a second; at 1 % loss a TCP tunnel stalls about twice a
#: run, and 200 packets (4 s) met no loss at all in 1 of 5 runs of vpn-full-tcp-lossy
STREAM_PACKETS = 300
STUN_TIMEOUT = 1.0          # per request, as the public endpoint tests do
#: Chrome's STUN retransmissions (reference ice-timing.md), cut at the guide's 10 s rule
CHROME_SENDS = (0.0, 0.25, 0.75, 1.75, 3.75, 7.75)
RELAY_DEADLINE = 10.0
TCP_TIMEOUT = 4.0
DNS_TIMEOUT = 3.0
UDP_TRANSPORT = struct.pack("!B3x", 17)      # REQUESTED-TRANSPORT: UDP (RFC 8656 section 18.7)


class Pace:
    """One send slot every 1/MAX_RATE s, and no more than MAX_PACKETS in all.

    ``urgent`` sends (TURN's Allocates, TCP handshakes: one each, and timed as the
    softphone's gathering) go before the STUN sweep's queue, so that pacing the sweep does
    not count as the TURN server's slowness."""

    def __init__(self, rate: float = MAX_RATE, total: int = MAX_PACKETS):
        self.gap = 1.0 / rate
        self.left = total
        self.sent = 0
        self._next = 0.0
        self._urgent = 0

    async def slot(self, urgent: bool = False) -> bool:
        # no await between the check and the take: the event loop makes it atomic
        while self.left > 0:
            now = time.monotonic()
            if not urgent and self._urgent:
                await asyncio.sleep(self.gap)
                continue
            if self._next <= now:
                self._next = now + self.gap
                self.left -= 1
                self.sent += 1
                return True
            if urgent:
                self._urgent += 1
                try:
                    await asyncio.sleep(self._next - now)
                finally:
                    self._urgent -= 1
            else:
                await asyncio.sleep(self._next - now)
        return False


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# -- names ---------------------------------------------------------------------------

async def resolve(name: str, timeout: float = DNS_TIMEOUT) -> dict:
    """getaddrinfo in a daemon thread: a resolver that never answers must not keep the
    process alive after the run's deadline (the default executor's threads would)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in name else socket.AF_INET, name)
        return {"name": name, "literal": True, "addresses": [name], "ms": 0.0}
    except OSError:
        pass
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    def work():
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            result = list(dict.fromkeys(i[4][0] for i in infos))
            answer = lambda: fut.done() or fut.set_result(result)  # noqa: E731
        except OSError as exc:
            err = exc
            answer = lambda: fut.done() or fut.set_exception(err)  # noqa: E731
        try:
            loop.call_soon_threadsafe(answer)
        except RuntimeError:        # the run ended before the resolver answered: nobody waits
            pass

    t0 = time.monotonic()
    threading.Thread(target=work, daemon=True).start()
    try:
        addrs = await asyncio.wait_for(fut, timeout)
        return {"name": name, "addresses": addrs, "ms": _ms(time.monotonic() - t0)}
    except asyncio.TimeoutError:
        return {"name": name, "addresses": [], "ms": None, "error": f"no answer within {timeout:.0f} s"}
    except OSError as exc:
        return {"name": name, "addresses": [], "ms": _ms(time.monotonic() - t0), "error": str(exc)}


# -- UDP -----------------------------------------------------------------------------

class _Udp(asyncio.DatagramProtocol):
    """Answers matched to requests by transaction ID (``stun.peek``: anything else is ignored)."""

    def __init__(self):
        self.waiting: dict[bytes, asyncio.Future] = {}
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        h = stun.peek(data)
        fut = self.waiting.get(h.tid) if h else None
        if fut is not None and not fut.done():
            fut.set_result((time.monotonic(), data))

    def error_received(self, exc):       # ICMP unreachable on some systems: the timeout decides
        pass


def _near(port: int, tries: int, top: int | None) -> list[int]:
    """``port`` and the ports to try instead when another program holds it: the next ones
    above it, but not above ``top`` (the OS's range ends there), then the ones below it."""
    up = [port + i for i in range(tries) if top is None or port + i <= top]
    return up + [port - i for i in range(1, tries - len(up) + 1) if port - i > 0]


async def _udp_socket(family: int, port: int = 0, tries: int = 8, top: int | None = None):
    """A UDP endpoint bound to ``port``, or the nearest free port above it (another program
    may hold it), below it at ``top``; (transport, protocol, bound port) or None."""
    loop = asyncio.get_running_loop()
    any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for p in (_near(port, tries, top) if port else [0]):
        try:
            tr, pr = await loop.create_datagram_endpoint(_Udp, local_addr=(any_addr, p), family=family)
            return tr, pr, tr.get_extra_info("sockname")[1]
        except OSError:
            continue
    return None


def local_ip(dest: str) -> str | None:
    """The address this machine sends from towards ``dest`` (a connected UDP socket sends
    nothing; portable, unlike reading routing tables)."""
    family = socket.AF_INET6 if ":" in dest else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((dest, 3478))
            return s.getsockname()[0]
    except OSError:
        return None


async def stun_sweep(dests: list[tuple[str, int]], ports: list[int], per_port: int, pace: Pace,
                     timeout: float = STUN_TIMEOUT) -> dict:
    """Binding requests (RFC 8489 section 6) from each source port to each destination,
    round-robin, one at a time through ``pace``; each waits ``timeout`` for its answer."""
    rows: list[dict] = []
    socks: list = []
    tasks: list = []
    try:
        await _sweep(dests, ports, per_port, pace, timeout, rows, socks, tasks)
    finally:
        # also when the run's deadline cancels the sweep: the ports are the OS's own ephemeral
        # ones, and a long-lived process (a test worker, a probe run again) must get them back
        for t in tasks:
            t.cancel()
        for got in socks:
            if got:
                got[0].close()
    return {"destinations": [f"{h}:{p}" for h, p in dests], "local_ip": local_ip(dests[0][0]), "ports": rows}


async def _sweep(dests, ports, per_port, pace, timeout, rows: list, socks: list, tasks: list) -> None:
    """stun_sweep's work; ``rows``, ``socks`` and ``tasks`` are the caller's, which closes the
    sockets whatever happens."""
    for port in ports:
        family = socket.AF_INET6 if ":" in dests[0][0] else socket.AF_INET
        got = await _udp_socket(family, port, top=max(ports))      # the range's highest port is swept
        row = {"port": port, "bound": got and got[2], "sent": 0, "replies": 0, "rtt_ms": [], "mapped": {}}
        if got is None:
            row["error"] = "could not bind this port or the next ones"
        rows.append(row)
        socks.append(got)

    async def one(row, proto, dest):
        tid = secrets.token_bytes(12)
        fut = asyncio.get_running_loop().create_future()
        proto.waiting[tid] = fut
        if not await pace.slot():
            return
        t0 = time.monotonic()
        try:
            proto.transport.sendto(stun.encode(stun.BINDING, stun.REQUEST, tid, []), dest)
        except OSError as exc:          # e.g. EPERM from a local firewall
            row.setdefault("send_errors", []).append(str(exc))
            return
        row["sent"] += 1
        try:
            t1, data = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return
        row["replies"] += 1
        row["rtt_ms"].append(_ms(t1 - t0))
        try:
            msg = stun.parse(data)
            value = msg.get(stun.XOR_MAPPED_ADDRESS)
            ip, port = stun.parse_xor_address(value, tid) if value else stun.parse_address(msg.get(stun.MAPPED_ADDRESS))
            row["mapped"][f"{dest[0]}:{dest[1]}"] = f"{ip}:{port}"
        except (stun.ParseError, TypeError):
            pass

    for _ in range(per_port):
        for row, got in zip(rows, socks):
            if got is None:
                continue
            for dest in dests:
                tasks.append(asyncio.ensure_future(one(row, got[1], dest)))
                await asyncio.sleep(0)      # start it: sends go out in this order through pace
    await asyncio.gather(*tasks)


def stun_summary(sweep: dict) -> dict:
    """Loss, RTT and jitter over the ports that answered at all (a port that never answers is
    a port-range question, not loss), the reflexive address, NAT and mapping behaviour."""
    # a port this machine refused to send from (EPERM: a local firewall) counts as silent
    rows = [r for r in sweep["ports"] if r["sent"] or r.get("send_errors")]
    answering = [r for r in rows if r["replies"]]
    rtts = [x for r in answering for x in r["rtt_ms"]]
    sent = sum(r["sent"] for r in answering)
    out = {"sent": sum(r["sent"] for r in rows), "replies": sum(r["replies"] for r in rows),
           "ports_answered": [r["bound"] for r in answering],
           "ports_silent": [r["bound"] for r in rows if not r["replies"]],
           "send_errors": sorted({e for r in rows for e in r.get("send_errors", [])}),
           "loss": round(1 - len(rtts) / sent, 4) if sent else None,
           "rtt_ms": round(statistics.median(rtts), 1) if rtts else None,
           "rtt_max_ms": max(rtts) if rtts else None,
           # RFC 3550 section 6.4.1's idea on round trips: mean change between successive ones
           "jitter_ms": round(statistics.mean(abs(a - b) for a, b in zip(rtts, rtts[1:])), 1) if len(rtts) > 1 else None}
    mapped = [(r["bound"], d, m) for r in answering for d, m in r["mapped"].items()]
    if mapped:
        out["reflexive"] = sorted({m for _, _, m in mapped})
        ips = {m.rsplit(":", 1)[0] for _, _, m in mapped}
        out["nat"] = sweep.get("local_ip") not in ips
        per_port: dict[int, set] = {}
        for port, _, m in mapped:
            per_port.setdefault(port, set()).add(m)
        multi = len(sweep["destinations"]) > 1
        out["mapping_changes_per_destination"] = any(len(v) > 1 for v in per_port.values()) if multi else None
        out["port_preserved"] = all(int(m.rsplit(":", 1)[1]) == p for p, _, m in mapped)
    return out


async def stun_stream(dest: tuple[str, int], pace: Pace, count: int = STREAM_PACKETS,
                      timeout: float = STUN_TIMEOUT) -> dict:
    """Binding requests from one source port as fast as the pace allows (50 a second, what
    the softphone's audio sends), each answer timed: what a call's packets meet on the way,
    rather than what 4 well-spaced requests do. A lost UDP packet is simply lost; a packet
    carried inside a TCP tunnel is never lost but waits for the retransmission of any
    segment before it (head-of-line blocking): no loss, and delays of a retransmission
    timeout now and then, for several packets in a row."""
    family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
    got = await _udp_socket(family)
    if got is None:
        return {"error": "no UDP socket"}
    tr, proto, _ = got
    rtts: list[float | None] = []

    async def one(i):
        tid = secrets.token_bytes(12)
        fut = asyncio.get_running_loop().create_future()
        proto.waiting[tid] = fut
        t0 = time.monotonic()
        try:
            tr.sendto(stun.encode(stun.BINDING, stun.REQUEST, tid, []), dest)
        except OSError:
            return
        try:
            t1, _ = await asyncio.wait_for(fut, timeout)
            rtts[i] = _ms(t1 - t0)
        except asyncio.TimeoutError:
            pass

    tasks = []
    try:
        for i in range(count):
            if not await pace.slot():
                break
            rtts.append(None)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    finally:
        tr.close()
    return {"destination": f"{dest[0]}:{dest[1]}", "rtts_ms": rtts}


#: a round trip this much above the stream's median is "late": more than any queue on a
#: healthy path holds, about a TCP retransmission (Linux's minimum RTO is 200 ms)
LATE_MS = 100.0


def stream_summary(stream: dict) -> dict:
    rtts = stream.get("rtts_ms") or []
    got = [r for r in rtts if r is not None]
    out = {"sent": len(rtts), "replies": len(got), "loss": round(1 - len(got) / len(rtts), 4) if rtts else None}
    if got:
        med = statistics.median(got)
        late = [i for i, r in enumerate(rtts) if r is not None and r > med + LATE_MS]
        # runs of consecutive late packets: head-of-line blocking holds several at once
        runs, prev = [], None
        for i in late:
            if prev is not None and i == prev + 1:
                runs[-1] += 1
            else:
                runs.append(1)
            prev = i
        out.update(rtt_ms=round(med, 1), rtt_max_ms=max(got), late=len(late), late_runs=runs,
                   jitter_ms=round(statistics.mean(abs(a - b) for a, b in zip(got, got[1:])), 1) if len(got) > 1 else None)
    return out


# -- TURN ----------------------------------------------------------------------------

class _Stream:
    """STUN over TCP or TLS (RFC 8489 section 6.2.2): messages framed by their own length."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes, timeout: float) -> bytes:
        self.writer.write(request)
        await self.writer.drain()
        head = await asyncio.wait_for(self.reader.readexactly(stun.HEADER), timeout)
        length = struct.unpack("!H", head[2:4])[0]
        return head + await asyncio.wait_for(self.reader.readexactly(length), timeout)

    def close(self):
        self.writer.close()


async def _udp_exchange(proto: _Udp, dest, request: bytes, tid: bytes, pace: Pace, deadline: float,
                        sends: list[float]) -> bytes | None:
    """Send on Chrome's schedule until an answer or ``deadline`` (monotonic); each send's
    time goes into ``sends`` (times count from the first packet on the wire, not from the
    wait for a send slot)."""
    fut = asyncio.get_running_loop().create_future()
    proto.waiting[tid] = fut
    t0 = None
    for at in CHROME_SENDS:
        if t0 is not None:
            if t0 + at >= deadline:
                break
            try:
                return (await asyncio.wait_for(asyncio.shield(fut), max(0.0, t0 + at - time.monotonic())))[1]
            except asyncio.TimeoutError:
                pass
        if not await pace.slot(urgent=True):
            break
        now = time.monotonic()
        t0 = now if t0 is None else t0
        sends.append(now)
        try:
            proto.transport.sendto(request, dest)
        except OSError:
            pass
    try:
        return (await asyncio.wait_for(fut, max(0.0, deadline - time.monotonic())))[1]
    except asyncio.TimeoutError:
        return None


def _ssl_context(ca: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()


async def turn_check(server: TurnServer, ip: str, pace: Pace, ca: str | None = None,
                     deadline_s: float | None = None) -> dict:
    """An unauthenticated Allocate, which must be answered 401 with REALM and NONCE (RFC 8489
    section 9.2.4); with credentials, the authenticated Allocate and the time from the first
    send to the relayed address: what the softphone's ICE gathering waits for. The allocation
    is released at once (Refresh, LIFETIME 0)."""
    out: dict = {"url": server.url, "transport": server.transport, "address": f"{ip}:{server.port}"}
    t0 = time.monotonic()
    deadline = t0 + (RELAY_DEADLINE if deadline_s is None else deadline_s)
    dest = (ip, server.port)
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    udp = stream = None
    sends: list[float] = []       # UDP: when each request went out
    try:
        if server.transport == "udp":
            got = await _udp_socket(family)
            if got is None:
                out["error"] = "no UDP socket"
                return out
            udp = got

            async def exchange(req, tid):
                answer = await _udp_exchange(udp[1], dest, req, tid, pace, deadline, sends)
                return answer
        else:
            if not await pace.slot(urgent=True):
                out["error"] = "packet budget spent"
                return out
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(
                    ip, server.port, ssl=_ssl_context(ca) if server.transport == "tls" else None,
                    server_hostname=server.host if server.transport == "tls" else None),
                    min(TCP_TIMEOUT, deadline - time.monotonic()))
            except (OSError, asyncio.TimeoutError) as exc:
                out["connect_error"] = _why(exc)
                return out
            out["connect_ms"] = _ms(time.monotonic() - t0)
            stream = _Stream(r, w)

            async def exchange(req, tid):
                if not await pace.slot(urgent=True):
                    return None
                try:
                    return await stream.exchange(req, max(0.01, deadline - time.monotonic()))
                except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    return None

        tid = secrets.token_bytes(12)
        answer = await exchange(stun.encode(stun.ALLOCATE, stun.REQUEST, tid,
                                            [(stun.REQUESTED_TRANSPORT, UDP_TRANSPORT)]), tid)
        if sends:       # UDP: from the first Allocate on the wire
            t0 = sends[0]
        out["unauth_ms"] = _ms(time.monotonic() - t0) if answer else None
        if answer is None:
            return out
        msg = _parse(answer)
        code = _code(msg)
        out["unauth_code"] = code if code is not None else (200 if msg and msg.cls == stun.SUCCESS else None)
        realm, nonce = (msg.get(stun.REALM), msg.get(stun.NONCE)) if msg else (None, None)
        out["realm"], out["nonce"] = realm.decode(errors="replace") if realm else None, bool(nonce)
        if code != 401 or not (realm and nonce) or not server.username or server.credential is None:
            return out
        key = stun.long_term_key(server.username, realm.decode(errors="replace"), server.credential)
        for _attempt in range(2):        # one retry on 438 Stale Nonce (RFC 8489 section 9.2.5)
            tid = secrets.token_bytes(12)
            attrs = [(stun.REQUESTED_TRANSPORT, UDP_TRANSPORT), (stun.USERNAME, server.username.encode()),
                     (stun.REALM, realm), (stun.NONCE, nonce)]
            answer = await exchange(stun.encode(stun.ALLOCATE, stun.REQUEST, tid, attrs, key=key), tid)
            if answer is None:
                out["auth_error"] = "no answer to the authenticated Allocate"
                return out
            msg = _parse(answer)
            code = _code(msg)
            if code == 438 and msg.get(stun.NONCE):
                nonce = msg.get(stun.NONCE)
                continue
            break
        if msg is not None and msg.cls == stun.SUCCESS and msg.get(stun.XOR_RELAYED_ADDRESS):
            out["relay_ms"] = _ms(time.monotonic() - t0)
            relay = stun.parse_xor_address(msg.get(stun.XOR_RELAYED_ADDRESS), tid)
            out["relay"] = f"{relay[0]}:{relay[1]}"
            # release it: one packet, no wait (a server that misses it expires it in 10 min)
            tid = secrets.token_bytes(12)
            bye = stun.encode(stun.REFRESH, stun.REQUEST, tid, [(stun.LIFETIME, stun.u32(0)),
                              (stun.USERNAME, server.username.encode()), (stun.REALM, realm), (stun.NONCE, nonce)], key=key)
            if await pace.slot():
                if udp:
                    udp[0].sendto(bye, dest)
                else:
                    stream.writer.write(bye)
        else:
            out["auth_code"] = code
        return out
    finally:
        if udp:
            udp[0].close()
        if stream:
            stream.close()


def _parse(data: bytes):
    try:
        return stun.parse(data)
    except stun.ParseError:
        return None


def _code(msg) -> int | None:
    if msg is None or msg.cls != stun.ERROR or not msg.get(stun.ERROR_CODE):
        return None
    return stun.parse_error_code(msg.get(stun.ERROR_CODE))


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


# -- TCP, TLS, WebSocket -------------------------------------------------------------

async def tcp_connect(ip: str, port: int, pace: Pace, timeout: float = TCP_TIMEOUT) -> dict:
    """A TCP handshake only, closed at once."""
    out = {"address": f"{ip}:{port}"}
    if not await pace.slot(urgent=True):
        out["error"] = "packet budget spent"
        return out
    t0 = time.monotonic()
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
        out["ms"] = _ms(time.monotonic() - t0)
        w.close()
    except ConnectionRefusedError as exc:
        # a reset is an answer: the path to the host works, only the port is closed
        out["error"], out["refused"] = _why(exc), True
    except (OSError, asyncio.TimeoutError) as exc:
        out["error"] = _why(exc)
    return out


def proxy_for(url: str, env: dict | None = None) -> str | None:
    """``HTTPS_PROXY`` (or ``https_proxy``) unless ``NO_PROXY`` names the host, as browsers
    and curl read them."""
    env = os.environ if env is None else env
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
    host = urlsplit(url).hostname or ""
    no = [h.strip().lstrip(".") for h in (env.get("NO_PROXY") or env.get("no_proxy") or "").split(",") if h.strip()]
    if not proxy or any(h == "*" or host == h or host.endswith("." + h) for h in no):
        return None
    return proxy


async def _open(ip: str, host: str, port: int, proxy: str | None, timeout: float) -> tuple[socket.socket, dict]:
    """A connected non-blocking socket to host:port, directly or through an HTTP proxy's
    CONNECT tunnel; and the times it took."""
    loop = asyncio.get_running_loop()
    info: dict = {}
    if proxy:
        p = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        target = (p.hostname, p.port or 8080)
        info["proxy"] = f"{p.hostname}:{p.port or 8080}"
    else:
        target = (ip, port)
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    if proxy and not _is_ip(target[0]):
        family = socket.AF_UNSPEC
        infos = await loop.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
        family, target = infos[0][0], infos[0][4][:2]
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(loop.sock_connect(s, target), timeout)
        info["tcp_ms"] = _ms(time.monotonic() - t0)
        if proxy:
            await loop.sock_sendall(s, f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 8192:
                chunk = await asyncio.wait_for(loop.sock_recv(s, 4096), timeout)
                if not chunk:
                    break
                head += chunk
            status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            info["proxy_status"] = status
            if len(status.split()) < 2 or status.split()[1] != "200":
                raise ConnectionRefusedError(f"the proxy refused CONNECT: {status or 'no answer'}")
            info["connect_ms"] = _ms(time.monotonic() - t0)
    except BaseException:
        s.close()
        raise
    return s, info


def _is_ip(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        return True
    except OSError:
        return False


async def signalling(url: str, ip: str, pace: Pace, ca: str | None = None, proxy: str | None = None,
                     timeout: float = TCP_TIMEOUT) -> dict:
    """TCP connect, TLS handshake (time, certificate subject), then on a second connection the
    WebSocket upgrade, as the softphone opens it (``websockets``). Any HTTP answer to the
    upgrade shows the path works; 101 is a WebSocket."""
    parts = urlsplit(url)
    host, secure = parts.hostname, parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    out: dict = {"url": url, "address": f"{ip}:{port}"}
    loop = asyncio.get_running_loop()
    if not await pace.slot():
        out["error"] = "packet budget spent"
        return out
    try:
        sock, info = await _open(ip, host, port, proxy, timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        out["tcp_error"] = _why(exc)
        return out
    out.update(info)
    ctx = _ssl_context(ca) if secure else None
    if secure:
        t0 = time.monotonic()
        try:
            tr, _ = await asyncio.wait_for(loop.create_connection(
                asyncio.Protocol, sock=sock, ssl=ctx, server_hostname=host), timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            out["tls_error"] = _why(exc)
            sock.close()
            return out
        out["tls_ms"] = _ms(time.monotonic() - t0)
        cert = tr.get_extra_info("peercert") or {}
        out["certificate"] = {"subject": _name(cert.get("subject")), "issuer": _name(cert.get("issuer")),
                              "not_after": cert.get("notAfter")}
        out["tls_version"] = (tr.get_extra_info("ssl_object").version() if tr.get_extra_info("ssl_object") else None)
        tr.close()
    else:
        sock.close()
    if not await pace.slot():
        return out
    probe_url = url + ("&" if "?" in url else "?") + "callId=icelab-probe"
    t0 = time.monotonic()
    try:
        sock2, _ = await _open(ip, host, port, proxy, timeout)
        ws = await ws_connect(probe_url, sock=sock2, ssl=ctx, server_hostname=host if secure else None,
                              proxy=None, open_timeout=timeout)
        out["ws_ms"] = _ms(time.monotonic() - t0)
        out["ws_status"] = 101
        await asyncio.wait_for(ws.close(), 1.0)
    except websockets.exceptions.InvalidStatus as exc:
        out["ws_ms"] = _ms(time.monotonic() - t0)
        out["ws_status"] = exc.response.status_code
    except (OSError, asyncio.TimeoutError, websockets.exceptions.WebSocketException, ssl.SSLError) as exc:
        out["ws_error"] = _why(exc)
    return out


def _name(rdns) -> str | None:
    if not rdns:
        return None
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)
