"""The probe against the lab's services on loopback, as an ordinary process (no lab, no
root): the embedded TURN server and coturn give the same findings; signalling over TLS and
WebSocket, directly and through an HTTPS proxy; bounded runs."""

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from turnlab import SECRET, server  # noqa: E402

from lab.probe import measure  # noqa: E402
from lab.probe.run import probe  # noqa: E402
from lab.probe.targets import from_media_info  # noqa: E402
from lab.services.mediainfo import media_info  # noqa: E402
from lab.services.pki import LabCA  # noqa: E402

# the probe binds fixed ports of the host's own namespace (Windows and macOS share theirs): these
# files' tests run on one worker of the parallel pass, one at a time (docs/testing.md)
pytestmark = [pytest.mark.xdist_group("probe-host-ports")]

ROOT = Path(__file__).resolve().parents[2]


def write_info(tmp: Path, turn_urls, signalling="", secret=SECRET) -> str:
    p = tmp / "media-info.json"
    p.write_text(json.dumps({"callId": "probe", "mediaInfo": media_info(
        turn_urls=turn_urls, turn_secret=secret, signalling_endpoint=signalling)}))
    return str(p)


def ids(result) -> list[str]:
    return [f["id"] for f in result["findings"] if f["severity"] == "problem"]


@pytest.fixture(params=["embedded", "coturn"])
def turn(request, tmp_path):
    with server(tmp_path, backend=request.param, users={}) as s:   # coturn: a REST secret or users, not both
        s.backend = request.param
        yield s


def test_turn_on_both_backends_is_healthy(turn, tmp_path):
    urls = [f"turn:127.0.0.1:{turn.cfg.udp_port}?transport=udp", f"turns:localhost:{turn.cfg.tls_port}?transport=tcp"]
    r = probe(from_media_info(write_info(tmp_path, urls)), "linux", ca=str(turn.ca))
    m = r["measurements"]
    assert r["verdict"] == "healthy", r["findings"]
    assert [f["id"] for f in r["findings"]] == ["relay-time"]
    for t in m["turn"]:
        assert t["unauth_code"] == 401 and t["realm"] == "icelab" and t["nonce"], t
        assert t["relay_ms"] < 1000 and t["relay"].startswith("127.0.0.1:"), t
    assert m["stun"]["sent"] == 28 and m["stun"]["replies"] == 28 and m["stun"]["loss"] == 0.0
    assert m["stun"]["nat"] is False and m["stun"]["port_preserved"] is True
    assert m["packets_sent"] <= measure.MAX_PACKETS
    assert m["duration_s"] < 15


def test_both_backends_give_the_same_findings(tmp_path):
    got = {}
    for backend in ("embedded", "coturn"):
        d = tmp_path / backend
        d.mkdir()
        with server(d, backend=backend, users={}) as s:
            for name, secret in (("good", SECRET), ("bad credentials", "not-the-secret")):
                info = write_info(d, [f"turn:127.0.0.1:{s.cfg.udp_port}?transport=udp"], secret=secret)
                got[(backend, name)] = [f["id"] for f in probe(from_media_info(info), "windows")["findings"]]
    assert got[("embedded", "good")] == got[("coturn", "good")] == ["relay-time"]
    assert got[("embedded", "bad credentials")] == got[("coturn", "bad credentials")] == ["turn-auth-failed"]


@pytest.mark.parametrize("backend", ["embedded", "coturn"])
def test_nat_hold_through_both_backends(backend, tmp_path):
    """The NAT-hold test's data between two allocations goes through either server (their
    relays are on loopback here, so loopback peers are allowed); on loopback nothing forgets
    a mapping: data arrives before and after the silence, no finding."""
    with server(tmp_path, backend=backend, users={}, allow_loopback=True) as s:
        info = write_info(tmp_path, [f"turn:127.0.0.1:{s.cfg.udp_port}?transport=udp"])
        r = probe(from_media_info(info), "linux", idle=1.0)
    h = r["measurements"]["hold"]
    assert "error" not in h, h
    assert h["before_ms"] is not None and h["after_ms"] is not None and h["idle_s"] >= 1.0, h
    assert r["verdict"] == "healthy" and "nat-hold" not in [f["id"] for f in r["findings"]], r["findings"]


class Servers:
    """A wss:// server (websockets) and an HTTP CONNECT proxy on loopback, in a thread."""

    def __init__(self, tmp: Path):
        ca = LabCA.load_or_create(tmp / "pki")
        self.ca = str(ca.cert_path)
        self.ctx = ca.issue("signalling", ["localhost"], ["127.0.0.1"]).server_context()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.connects = []
        threading.Thread(target=self._run, daemon=True).start()
        assert self.ready.wait(5)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        import websockets

        async def echo(ws):
            await ws.wait_closed()
        self.ws = await websockets.serve(echo, "127.0.0.1", 0, ssl=self.ctx)
        self.ws_port = self.ws.sockets[0].getsockname()[1]
        self.proxy = await asyncio.start_server(self._proxy, "127.0.0.1", 0)
        self.proxy_port = self.proxy.sockets[0].getsockname()[1]

    async def _proxy(self, r, w):
        head = await r.readuntil(b"\r\n\r\n")
        target = head.split()[1].decode()
        self.connects.append(target)
        host, port = target.rsplit(":", 1)
        ur, uw = await asyncio.open_connection("127.0.0.1" if host == "localhost" else host, int(port))
        w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    b.write(data)
                    await b.drain()
            except OSError:
                pass
            b.close()
        await asyncio.gather(pipe(r, uw), pipe(ur, w))


def test_signalling_tls_and_websocket(tmp_path):
    s = Servers(tmp_path)
    url = f"wss://localhost:{s.ws_port}/LilyRTC"
    r = probe(from_media_info(write_info(tmp_path, [], url)), "linux", ca=s.ca)
    sig = r["measurements"]["signalling"]
    assert r["verdict"] == "healthy", r["findings"]
    assert sig["ws_status"] == 101 and sig["tls_ms"] < 1000 and "tcp_ms" in sig
    assert sig["certificate"]["subject"] == "commonName=localhost"


def test_signalling_through_the_https_proxy(tmp_path):
    s = Servers(tmp_path)
    url = f"wss://localhost:{s.ws_port}/LilyRTC"
    proxy = measure.proxy_for(url, {"HTTPS_PROXY": f"http://127.0.0.1:{s.proxy_port}"})
    r = probe(from_media_info(write_info(tmp_path, [], url)), "linux", ca=s.ca, proxy=proxy)
    sig = r["measurements"]["signalling"]
    assert sig["proxy"] == f"127.0.0.1:{s.proxy_port}" and sig["proxy_status"].split()[1] == "200"
    assert sig["ws_status"] == 101
    assert s.connects == [f"localhost:{s.ws_port}"] * 2        # the TLS check and the upgrade


def test_proxy_from_the_environment():
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "internal.example,.corp"}
    assert measure.proxy_for("wss://sig.example.net/", env) == "http://proxy:3128"
    assert measure.proxy_for("wss://internal.example/", env) is None
    assert measure.proxy_for("wss://a.corp/", env) is None
    assert measure.proxy_for("wss://sig.example.net/", {}) is None


def test_untrusted_certificate_is_a_finding(tmp_path):
    s = Servers(tmp_path)
    r = probe(from_media_info(write_info(tmp_path, [], f"wss://localhost:{s.ws_port}/LilyRTC")), "linux")
    assert ids(r) == ["tls-failed"]
    assert "certificate not trusted" in r["findings"][0]["sentence"]


def test_everything_silent_ends_within_15_s(tmp_path):
    """Nothing answers: UDP to a socket that never replies, TCP to a listener that never
    speaks (TLS and the upgrade wait out their timers). Findings, within 15 s."""
    import socket
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    try:
        info = write_info(tmp_path, [f"turn:127.0.0.1:{udp.getsockname()[1]}?transport=udp"],
                          f"wss://127.0.0.1:{tcp.getsockname()[1]}/LilyRTC")
        t0 = time.monotonic()
        r = probe(from_media_info(info), "linux")
        took = time.monotonic() - t0
    finally:
        udp.close()
        tcp.close()
    assert took <= 15, took
    assert r["verdict"] == "problem" and "udp3478-blocked" in ids(r) and "tls-failed" in ids(r)


def test_command_line_exit_statuses_and_report(tmp_path, turn):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    info = write_info(tmp_path, [f"turn:127.0.0.1:{turn.cfg.udp_port}?transport=udp"])
    run = lambda *a: subprocess.run([sys.executable, "-m", "lab.probe", *a], capture_output=True, text=True,
                                    env=env, cwd=tmp_path, timeout=30)
    ok = run("--media-info", info, "--json", "--report", "r.md")
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["verdict"] == "healthy"
    md = (tmp_path / "r.md").read_text()
    # the lowest Linux port, or the next free one: this host's own ephemeral range is the same,
    # so another test's socket may hold it at this moment
    first = result["measurements"]["stun"]["ports"][0]["bound"]
    assert 32768 <= first < 32768 + 8
    assert "# icelab probe: healthy" in md and f"| {first} | 4 | 4 |" in md
    html = run("--media-info", info, "--report", "r.html", "--os", "windows")
    assert html.returncode == 0 and "<h1>icelab probe: healthy</h1>" in (tmp_path / "r.html").read_text()
    assert "49152" in html.stdout
    bad = run("--turn", f"127.0.0.1:{turn.cfg.udp_port}", "--signalling", "http://x/")
    assert bad.returncode == 2 and "not a WebSocket URL" in bad.stderr and "Traceback" not in bad.stderr
    none = run()
    assert none.returncode == 2 and "nothing to probe" in none.stderr
    missing = run("--media-info", "nope.json")
    assert missing.returncode == 2 and "nope.json: cannot read it" in missing.stderr
