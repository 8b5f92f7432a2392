"""The softphone under VDI: where its RTC engine runs, and the plug-in it waits for.

amazon-connect-streams ``softphone.js`` (``SoftphoneManager._setRtcJsStrategy``) picks a
connect-rtc-js strategy from the CCP's ``VDIPlatform`` (CITRIX, AWS_WORKSPACE, OMNISSA).
The strategy hands the peer connection to the vendor's media-redirection plug-in, so the RTC
engine (ICE, TURN, media) runs on the agent's local device while the CCP page, and with it
the signalling WebSocket, stays in the virtual desktop. A plug-in that does not become ready
makes Streams publish ``SoftphoneErrorTypes.VDI_REDIR_NOT_SUPPORTED``
(``vdi_redir_not_supported``); the reference says plug-ins wait up to 10000 ms.

Modes (the scenario's ``call: {vdi: ...}``):

``in-desktop``
    no redirection: the whole softphone runs in the desktop's browser; the runner starts the
    agent in the desktop's namespace. Nothing here changes.
``redirected``
    the agent runs on the thin client; it first registers its plug-in with the desktop over
    the display protocol (``PLUGIN`` / ``READY``, lab/net/display.py) and opens every
    signalling WebSocket through a virtual channel (``CHANNEL host port``): the desktop
    connects to the signalling endpoint from its own address and relays.
``redirect-unavailable``
    the plug-in never becomes ready: after ``Timers.vdi_plugin`` (10 s) the softphone reports
    ``vdi_redir_not_supported`` and no RTC session starts.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from lab.core.errors import LabError

MODES = ("in-desktop", "redirected", "redirect-unavailable")
VDI_REDIR_NOT_SUPPORTED = "VDI_REDIR_NOT_SUPPORTED"      # SoftphoneErrorTypes key
SOFTPHONE_ERROR = "vdi_redir_not_supported"              # what the agent's softphone reports
# the message Streams matches for Citrix (HDX, the lab's default display port 1494)
NOT_SUPPORTED_MESSAGE = "Citrix WebRTC redirection feature is NOT supported!"


class PluginError(LabError):
    """The plug-in could not register with the desktop (or did not in time)."""


@dataclass
class VdiOptions:
    mode: str                       # one of MODES
    desktop: str | None = None      # the desktop's address (redirected)
    port: int = 1494                # the display protocol's port on the desktop

    @classmethod
    def from_dict(cls, d: dict) -> "VdiOptions":
        mode = d.get("mode")
        if mode not in MODES:
            raise ValueError(f"vdi.mode: must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "redirected" and not d.get("desktop"):
            raise ValueError("vdi.desktop: the desktop's address is needed for redirection")
        return cls(mode, d.get("desktop"), int(d.get("port", 1494)))


async def _hello(address: str, port: int, line: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection(address, port)
    writer.write(line.encode() + b"\n")
    await writer.drain()
    answer = (await reader.readline()).decode(errors="replace").strip()
    return reader, writer, answer


async def register_plugin(opts: VdiOptions, timeout: float) -> None:
    """The plug-in announces itself to the desktop; PluginError if not READY within ``timeout``."""
    try:
        _, writer, answer = await asyncio.wait_for(_hello(opts.desktop, opts.port, "PLUGIN"), timeout)
    except asyncio.TimeoutError:
        raise PluginError(f"the plug-in did not become ready within {timeout:g} s") from None
    except OSError as exc:
        raise PluginError(f"the plug-in cannot reach the desktop {opts.desktop}:{opts.port}: {exc}") from None
    writer.close()
    if answer != "READY":
        raise PluginError(f"the desktop answered {answer!r} instead of READY")


def virtual_channel(opts: VdiOptions, host: str, port: int):
    """A factory of connected sockets to ``host:port`` through the desktop (a virtual channel),
    for the signalling WebSocket's ``sock=``."""

    async def open_channel() -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (opts.desktop, opts.port))
            await loop.sock_sendall(sock, f"CHANNEL {host} {port}\n".encode())
            line = b""
            while not line.endswith(b"\n"):
                chunk = await loop.sock_recv(sock, 1)
                if not chunk:
                    raise ConnectionError("the desktop closed the virtual channel")
                line += chunk
        except BaseException:
            sock.close()
            raise
        text = line.decode(errors="replace").strip()
        if text != "OK":
            sock.close()
            raise ConnectionError(f"virtual channel through the desktop: {text}")
        return sock

    return open_channel
