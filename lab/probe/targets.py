"""What the probe talks to: TURN servers and the signalling endpoint, from the softphone's
media info (reference softphone.md: ``callConfigJson`` with ``iceServers`` and
``signalingEndpoint``) or from the command line; and the region's Connect ranges from an
``ip-ranges.json``. Bad input is a ``UsageError`` (exit 2) naming the file and what to write.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from lab.core.errors import UsageError


@dataclass(frozen=True)
class TurnServer:
    """One TURN URL: ``turn:host:port?transport=udp|tcp`` or ``turns:host:port``."""

    host: str
    port: int
    transport: str          # udp, tcp, tls
    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def label(self) -> str:
        return f"{self.transport.upper()} {self.host}:{self.port}"


@dataclass
class Targets:
    turn: list[TurnServer] = field(default_factory=list)
    signalling: str | None = None           # wss://host[:port]/path
    source: str = "command line"

    def hosts(self) -> list[str]:
        names = [t.host for t in self.turn]
        if self.signalling:
            names.append(urlsplit(self.signalling).hostname or "")
        return list(dict.fromkeys(n for n in names if n))


def parse_turn_url(url: str, username: str | None = None, credential: str | None = None) -> TurnServer:
    """RFC 7065 URIs; the softphone's are ``turn:<host>:3478?transport=udp``."""
    scheme, _, rest = url.partition(":")
    if scheme not in ("turn", "turns") or not rest:
        raise UsageError(f"'{url}' is not a TURN URL: write turn:HOST:PORT?transport=udp or turns:HOST:443")
    rest, _, query = rest.partition("?")
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    host, port = _host_port(rest, 5349 if scheme == "turns" else 3478, url)
    transport = "tls" if scheme == "turns" else params.get("transport", "udp").lower()
    if transport not in ("udp", "tcp", "tls"):
        raise UsageError(f"'{url}': unknown transport '{transport}' (udp or tcp)")
    return TurnServer(host, port, transport, url, username, credential)


def _host_port(text: str, default: int, whole: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):                       # [2001:db8::1]:3478
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise UsageError(f"'{whole}' names no host")
    try:
        return host, int(port) if port else default
    except ValueError:
        raise UsageError(f"'{whole}': '{port}' is not a port number") from None


def turn_option(text: str) -> TurnServer:
    """``--turn HOST[:PORT]`` or a full TURN URL (UDP 3478 by default)."""
    if text.startswith(("turn:", "turns:")):
        return parse_turn_url(text)
    host, port = _host_port(text, 3478, text)
    return TurnServer(host, port, "udp", f"turn:{text}?transport=udp")


def signalling_option(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("wss", "ws") or not parts.hostname:
        raise UsageError(f"'{url}' is not a WebSocket URL: write wss://HOST/PATH (the media info's signalingEndpoint)")
    return url


def _read_json(path: str):
    """A user's JSON file, or a UsageError naming it and what is wrong."""
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from None


def from_media_info(path: str) -> Targets:
    """The softphone's media info JSON: as Streams hands it to the softphone, or as the lab
    writes it (``{"callId", "mediaInfo"}``)."""
    doc = _read_json(path)
    info = doc.get("mediaInfo", doc) if isinstance(doc, dict) else None
    config = info.get("callConfigJson") if isinstance(info, dict) else None
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as exc:
            raise UsageError(f"{path}: callConfigJson is not JSON: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("iceServers"), list):
        raise UsageError(f"{path}: no callConfigJson with iceServers in it",) from None
    out = Targets(source=path)
    for server in config["iceServers"]:
        urls = server.get("urls") or server.get("url") or []
        for url in [urls] if isinstance(urls, str) else urls:
            if url.startswith(("turn:", "turns:")):
                out.turn.append(parse_turn_url(url, server.get("username"), server.get("credential")))
    endpoint = config.get("signalingEndpoint")
    if endpoint:
        out.signalling = signalling_option(endpoint)
    if not out.turn and not out.signalling:
        raise UsageError(f"{path}: names no TURN server and no signalling endpoint")
    return out


@dataclass(frozen=True)
class Ranges:
    """A region's AMAZON_CONNECT prefixes from an ``ip-ranges.json``."""

    file: str
    region: str
    networks: tuple

    def contains(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        return any(ip in n for n in self.networks)


def load_ranges(path: str, region: str, service: str = "AMAZON_CONNECT") -> Ranges:
    doc = _read_json(path)
    rows = (doc.get("prefixes") or []) + (doc.get("ipv6_prefixes") or []) if isinstance(doc, dict) else []
    nets = tuple(ipaddress.ip_network(r.get("ip_prefix") or r.get("ipv6_prefix"))
                 for r in rows if r.get("service") == service and r.get("region") == region)
    if not nets:
        regions = sorted({r.get("region") for r in rows if r.get("service") == service})
        raise UsageError(f"{path}: no {service} ranges for region '{region}'"
                         + (f": it has {', '.join(regions)}" if regions else ""))
    return Ranges(path, region, nets)
