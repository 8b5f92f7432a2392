"""The cloud a lab's softphone calls: signalling mock and media edge in one service, and the
per-call softphone media info that ties them to the lab's TURN.

A call is created with :meth:`ConnectCloud.new_call`; its media info (fresh TURN REST
credentials, the wss endpoint, the call's context token) is what the agent is given."""

from __future__ import annotations

import json
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lab.services.mediainfo import call_config, media_info
from lab.services.pki import LabCA
from lab.services.signalling import CallPlan, SignallingServer

from .edge import MediaEdge


@dataclass
class CloudConfig:
    """What the service needs. ``agent_turn_urls`` are the iceServers URLs the softphone is
    given (Connect's own list only ``turn:<host>:3478?transport=udp``); ``edge_turn_urls``
    the ones the edge relays through (default: the first agent URL)."""

    turn_secret: str
    agent_turn_urls: list[str]
    ca_dir: str
    server_name: str = "localhost"
    listen: str = "127.0.0.1"
    port: int = 443
    server_ips: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    edge_turn_urls: list[str] = field(default_factory=list)
    edge_candidates: str = "relay"       # relay (through TURN) or host (the edge's own address)
    media_info_dir: str | None = None
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # callId -> CallPlan fields

    @classmethod
    def from_json(cls, path: str | Path) -> "CloudConfig":
        doc = json.loads(Path(path).read_text())
        try:
            return cls(**doc)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None


class ConnectCloud:
    def __init__(self, cfg: CloudConfig, log: TextIO | None = sys.stdout):
        self.cfg = cfg
        self.ca = LabCA.load_or_create(cfg.ca_dir)
        issued = self.ca.issue("signalling", dns=[cfg.server_name], ips=cfg.server_ips)
        edge_urls = cfg.edge_turn_urls or cfg.agent_turn_urls[:1]
        edge_info = media_info(turn_urls=edge_urls, turn_secret=cfg.turn_secret, signalling_endpoint="", user="edge")
        if cfg.edge_candidates not in ("relay", "host"):
            raise ValueError(f"edge_candidates must be relay or host, not {cfg.edge_candidates!r}")
        self.edge = MediaEdge(call_config(edge_info)["iceServers"], log=log, candidates=cfg.edge_candidates)
        self.signalling = SignallingServer(answerer=self.edge.answer, ssl=issued.server_context(),
                                           on_accept=self.edge.accept, on_bye=self.edge.hangup,
                                           restarter=self.edge.restart, log=log)
        self.port = cfg.port

    @property
    def endpoint(self) -> str:
        return f"wss://{self.cfg.server_name}:{self.port}/LilyRTC"

    async def start(self) -> None:
        _, self.port = await self.signalling.start(self.cfg.listen, self.cfg.port)
        for call_id, plan in self.cfg.calls.items():
            self.new_call(call_id, **plan)
        if self.edge.light:
            self.edge.prepare_light()

    def new_call(self, call_id: str | None = None, *, behaviour: str = "answer", answer_delay: float = 0.0,
                 contact_ctx: str | None = None, agent_user: str = "agent", media: str = "full") -> dict[str, Any]:
        """Register a call and return ``{"callId", "mediaInfo"}`` for the softphone (also
        written to ``media_info_dir/<callId>.json`` when configured)."""
        call_id = call_id or secrets.token_hex(8)
        info = media_info(turn_urls=self.cfg.agent_turn_urls, turn_secret=self.cfg.turn_secret,
                          signalling_endpoint=self.endpoint, user=agent_user)
        # contact_ctx lets a scenario hand the agent a token the cloud does not expect (403)
        self.signalling.add_call(call_id, CallPlan(info["callContextToken"], behaviour, answer_delay))
        if media == "light":     # the edge's side of a load run's light media path
            self.edge.light.add(call_id)
        if contact_ctx is not None:
            info["callContextToken"] = contact_ctx
        call = {"callId": call_id, "mediaInfo": info}
        if self.cfg.media_info_dir:
            d = Path(self.cfg.media_info_dir)
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{call_id}.json").write_text(json.dumps(call))
        return call

    async def close(self) -> None:
        await self.edge.close()
        await self.signalling.close()
