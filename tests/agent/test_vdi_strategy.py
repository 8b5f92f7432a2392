"""The softphone's VDI strategies on loopback: the plug-in registers with a desktop's display
server, signalling goes through its virtual channel, and a plug-in that never becomes ready
ends in vdi_redir_not_supported at the plug-in timer (lab/agent/vdi.py, lab/net/display.py)."""

import asyncio
import socket
import threading
import time

import pytest
from coturn import coturn

from lab.agent import session as S
from lab.agent.call import CallOptions, place_call
from lab.agent.constants import Timers, VDI_PLUGIN_TIMEOUT
from lab.agent.vdi import PluginError, VdiOptions, register_plugin, virtual_channel
from lab.net import display
from lab.services.media.cloud import CloudConfig, ConnectCloud


@pytest.fixture
def desktop():
    """A display server on loopback (the desktop's side of the display protocol)."""
    srv = display.listener(0, "127.0.0.1")
    threading.Thread(target=display.serve_forever, args=(srv,), daemon=True).start()
    yield VdiOptions("redirected", "127.0.0.1", srv.getsockname()[1])
    srv.close()


@pytest.fixture
def echo():
    srv = socket.create_server(("127.0.0.1", 0))

    def run():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.sendall(c.recv(100).upper())
            c.close()

    threading.Thread(target=run, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_the_plugin_timer_is_the_reference_10_s():
    assert VDI_PLUGIN_TIMEOUT == 10.0 and Timers().vdi_plugin == 10.0


def test_plugin_registers_and_a_virtual_channel_relays(desktop, echo):
    async def main():
        await register_plugin(desktop, 2.0)
        sock = await virtual_channel(desktop, "127.0.0.1", echo)()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, b"hello")
        got = await asyncio.wait_for(loop.sock_recv(sock, 100), 2)
        sock.close()
        return got

    assert asyncio.run(main()) == b"HELLO"


def test_a_channel_to_a_closed_port_and_a_missing_desktop_are_errors(desktop):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(ConnectionError, match="virtual channel through the desktop: ERR"):
        asyncio.run(virtual_channel(desktop, "127.0.0.1", port)())
    with pytest.raises(PluginError, match="cannot reach the desktop"):
        asyncio.run(register_plugin(VdiOptions("redirected", "127.0.0.1", port), 1.0))


def test_a_plugin_that_never_becomes_ready_is_vdi_redir_not_supported_at_the_timer():
    info = {"callConfigJson": '{"iceServers": [], "signalingEndpoint": "wss://127.0.0.1:1/LilyRTC"}',
            "callContextToken": "t"}
    t0 = time.monotonic()
    out = asyncio.run(place_call("c", info, ssl=None, options=CallOptions(
        timers=Timers(vdi_plugin=0.3), vdi=VdiOptions("redirect-unavailable"))))
    took = time.monotonic() - t0
    assert 0.3 <= took < 1.0
    assert out.state == S.FAILED and out.rtc_error is None and not out.ok
    assert out.softphone_error == "vdi_redir_not_supported"
    assert out.detail == "Citrix WebRTC redirection feature is NOT supported!"
    err = [e for e in out.timeline if e["kind"] == "error"]
    assert err and err[0]["name"] == "VDI_REDIR_NOT_SUPPORTED" and err[0]["t"] == pytest.approx(0.3, abs=0.1)
    # no RTC session began: the strategy failed first
    assert not [e for e in out.timeline if e["kind"] == "state"]


def test_redirected_call_signals_through_the_desktop(tmp_path, desktop):
    relayed = []
    real = display._channel

    def spy(conn, host, port):
        relayed.append((host, port))
        real(conn, host, port)

    display._channel = spy
    try:
        with coturn() as turn:
            async def main():
                cloud = ConnectCloud(CloudConfig(turn_secret=turn.secret, port=0, ca_dir=str(tmp_path / "ca"),
                                                 agent_turn_urls=[turn.url("udp")]), log=None)
                await cloud.start()
                c = cloud.new_call("vdi")
                try:
                    return await place_call(c["callId"], c["mediaInfo"], ssl=cloud.ca.client_context(),
                                            options=CallOptions(talk_time=1.0, vdi=desktop)), cloud.port
                finally:
                    await cloud.close()

            out, port = asyncio.run(main())
    finally:
        display._channel = real
    names = [(e["kind"], e["name"]) for e in out.timeline]
    assert names.index(("vdi", "plugin_ready")) < names.index(("state", S.GRAB_LOCAL_MEDIA))
    assert out.reached_talking and out.ok, out.timeline
    # the signalling WebSocket went through the desktop's virtual channel, once
    assert relayed and all(p == port for _, p in relayed), relayed


def test_agent_config_vdi_is_checked(tmp_path):
    import json
    from lab.agent.__main__ import ConfigError, load
    base = {"callId": "c", "mediaInfo": {"callConfigJson": "{}", "callContextToken": "t"}}
    good = tmp_path / "good.json"
    good.write_text(json.dumps(dict(base, vdi={"mode": "redirected", "desktop": "192.0.2.2", "port": 3389})))
    assert load(str(good))[3].vdi == VdiOptions("redirected", "192.0.2.2", 3389)
    for vdi, msg in (({"mode": "sideways"}, "vdi.mode: must be one of in-desktop, redirected"),
                     ({"mode": "redirected"}, "vdi.desktop: the desktop's address is needed")):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(dict(base, vdi=vdi)))
        with pytest.raises(ConfigError, match=msg):
            load(str(bad))
