"""The media edge: the Connect side of the agent's audio leg (answers the offer, relays
through the lab's TURN, hold audio until ``accept``, then the caller). ``python -m
lab.services.media --config FILE`` runs it with the signalling mock in one process."""

import sys

from lab.model import turn as turn_defaults
from lab.services.spec import ServiceContext, ServiceSpec
from .edge import MediaEdge

__all__ = ["MediaEdge"]


ADHOC_CALLS = 20


def lab_service(ctx: ServiceContext) -> ServiceSpec:
    """How the `signalling` role (signalling mock and media edge) starts inside a lab (see
    lab.services.spec). Agents reach it by address (there is no DNS in a lab): its certificate
    names the address, and every call's media info is written to ``<run dir>/calls/``."""
    topo = ctx.topology
    opts = dict(ctx.options)
    turn_host = next((n for n in topo.nodes.values() if "turn" in n.services), None)
    if turn_host is None:
        raise ValueError("the signalling service needs a host with the turn service")
    turn_ip = str(turn_host.addresses[0].ip)
    t = dict(topo.services.get("turn") or {})
    urls = {"udp": f"turn:{turn_ip}:{t.get('udp_port', turn_defaults.UDP_PORT)}?transport=udp",
            "tcp": f"turn:{turn_ip}:{t.get('tcp_port', turn_defaults.TCP_PORT)}?transport=tcp",
            # plain TCP on the TLS port: what gets through an office that allows only TCP 443
            "tcp443": f"turn:{turn_ip}:{t.get('tls_port', turn_defaults.TLS_PORT)}?transport=tcp",
            "tls": f"turns:{turn_ip}:{t.get('tls_port', turn_defaults.TLS_PORT)}?transport=tcp"}
    agent_urls = [urls[k] for k in opts.get("ice_servers", ["udp"])]
    ip = str(ctx.addresses[0])
    config = {"turn_secret": t.get("secret") or "", "agent_turn_urls": agent_urls,
              "edge_turn_urls": [urls["udp"]], "edge_candidates": opts.get("edge_candidates", "relay"),
              "ca_dir": str(ctx.run_dir / "pki"),
              "server_name": ip, "server_ips": [str(a) for a in ctx.addresses], "listen": "0.0.0.0",
              "port": int(opts.get("port", 443)), "media_info_dir": str(ctx.run_dir / "calls"),
              "calls": {k: dict(v) for k, v in (opts.get("calls") or {}).items()}}
    # calls that `icelab call` can place on a lab that is up (each media info is used once)
    for i in range(1, ADHOC_CALLS + 1):
        config["calls"].setdefault(f"adhoc-{i}", {})
    return ServiceSpec(argv=[sys.executable, "-m", "lab.services.media", "--config", "{config}"],
                       config=config, listens=[("tcp", ip, config["port"])])
