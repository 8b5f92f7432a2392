"""OpenVPN tunnels in a running lab: real OpenVPN 2.6, TLS mode, tun devices.

The model (``lab/model/vpn.py``) has decided who connects to which concentrator, over
which transport, and which destinations bypass the tunnel. Here that becomes files in
the lab's run directory (``/run/icelab/<lab>/vpn/``: configs, keys from the lab CA, one
log per OpenVPN process) and OpenVPN processes started with the node's ``popen``, so
they run in the node's namespace, carry the lab's mark and end with the lab. The tun
devices live in the nodes' namespaces and disappear with them.

The concentrator decides the client's routes, as real concentrators do: it pushes
``redirect-gateway def1`` (0.0.0.0/1 and 128.0.0.0/1 through the tunnel, and a host route
to itself through the client's own gateway) and, for a split tunnel, one
``route ... net_gateway`` per bypassed prefix (OpenVPN manual, "--redirect-gateway",
"--route"). Traffic from the tunnel leaves the concentrator masqueraded to its own
address (an nftables ``masquerade`` rule), so the world sees the data centre.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.core import supervise
from lab.core.errors import LabError
from lab.model.topology import Node, Topology
from lab.model.vpn import Tunnel, VpnClient
from lab.services.pki import LabCA

UP_TIMEOUT = 20.0
UP_MARK = "Initialization Sequence Completed"
LOG_TAIL = 12


def configured(topo: Topology) -> bool:
    return any(n.vpn is not None for n in topo.nodes.values())


@dataclass
class VpnRun:
    """The OpenVPN processes of a lab (they end with the lab's namespaces)."""

    dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)   # "node" or "node#i" -> process
    logs: dict[str, Path] = field(default_factory=dict)


def _pki(d: Path) -> Path:
    """The lab's one CA, in its run directory (``d`` is the lab's vpn directory): the same
    CA signs the TURN, signalling and VPN certificates, as one company PKI would."""
    return d.parent / "pki"


def _mask(net) -> str:
    return f"{net.network_address} {net.netmask}"


def server_config(topo: Topology, node: Node, t: Tunnel, d: Path) -> str:
    """An OpenVPN server instance (OpenVPN manual: "Server mode", "--server")."""
    proto = "udp" if t.proto == "udp" else "tcp-server"
    lines = [
        f"# icelab lab '{topo.name}': concentrator '{node.name}', tunnel {t.index} ({t.proto} {t.port})",
        f"dev {t.device}", "dev-type tun", f"proto {proto}", f"port {t.port}",
        "topology subnet", f"server {_mask(t.subnet)}",
        f"ca {_pki(d) / 'ca.pem'}", f"cert {_pki(d) / f'vpn-{node.name}.pem'}",
        f"key {_pki(d) / f'vpn-{node.name}.key'}",
        "dh none",                              # ECDHE only: no finite-field DH parameters
        'remote-cert-eku "TLS Web Client Authentication"',
        f"client-config-dir {d / f'ccd-{node.name}-{t.index}'}",
        "ccd-exclusive",                        # only the lab's own clients may connect
        "keepalive 2 10",
        "disable-dco",                          # no ovpn-dco module here: the data channel runs in userspace
        "verb 3",
    ]
    return "\n".join(lines) + "\n"


def client_ccd(client: VpnClient, t: Tunnel, index: int) -> str:
    """What the concentrator pushes to one client: its address and its routes."""
    addr = t.subnet.network_address + 2 + index
    lines = [f"ifconfig-push {addr} {t.subnet.netmask}", 'push "redirect-gateway def1"']
    lines += [f'push "route {_mask(b)} net_gateway"' for b in client.bypass]
    return "\n".join(lines) + "\n"


def client_config(topo: Topology, node: Node, d: Path) -> str:
    c = node.vpn
    proto = "udp" if c.proto == "udp" else "tcp-client"
    lines = [
        f"# icelab lab '{topo.name}': '{node.name}' to concentrator '{c.concentrator}' ({c.mode} tunnel)",
        "client", f"dev {c.device}", "dev-type tun", f"proto {proto}", f"remote {c.remote} {c.port}",
        "nobind", "connect-retry 1 1",
        f"ca {_pki(d) / 'ca.pem'}", f"cert {_pki(d) / f'vpn-{node.name}.pem'}",
        f"key {_pki(d) / f'vpn-{node.name}.key'}",
        'remote-cert-eku "TLS Web Server Authentication"',
        "disable-dco", "verb 3",
    ]
    return "\n".join(lines) + "\n"


def masquerade(node: Node) -> str:
    """nftables: what comes out of the tunnels leaves with the concentrator's address."""
    nets = ", ".join(str(t.subnet) for t in node.tunnels)
    return ("table ip icelab_vpn {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f'    ip saddr {{ {nets} }} oifname != "vpn*" masquerade\n'
            "  }\n}\n")


def check_environment() -> None:
    if shutil.which("openvpn") is None:
        raise LabError("the topology has VPN tunnels but 'openvpn' is not installed; run 'sudo make setup'")
    if not os.path.exists("/dev/net/tun"):
        raise LabError("the topology has VPN tunnels but /dev/net/tun is missing (no TUN support in this kernel)")


def start(network) -> VpnRun:
    """Write the configs, start every concentrator's servers, then every client; wait
    until each says it is up. Raises LabError naming the node and its log's last lines."""
    check_environment()
    topo: Topology = network.topo
    d = network.state.dir / "vpn"
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = LabCA.load_or_create(_pki(d), topo.name)
    run = VpnRun(d)
    network.vpn = run
    servers, clients = [], []
    for node in topo.nodes.values():
        if node.kind == "vpn" and node.tunnels:
            addrs = [str(a.ip) for a in node.addresses]
            ca.issue(f"vpn-{node.name}", dns=[node.name], ips=addrs)
            (d / f"{node.name}.nft").write_text(masquerade(node))
            out = network.nodes[node.name].cmd(f"nft -f {d / (node.name + '.nft')} 2>&1; echo rc=$?")
            if "rc=0" not in out:
                raise LabError(f"the masquerade rule of concentrator '{node.name}' failed: {out.strip()}")
            for t in node.tunnels:
                ccd = d / f"ccd-{node.name}-{t.index}"
                ccd.mkdir(exist_ok=True)
                for i, cname in enumerate(t.clients):
                    (ccd / f"vpn-{cname}").write_text(client_ccd(topo.nodes[cname].vpn, t, i))
                conf = d / f"{node.name}-{t.index}.conf"
                conf.write_text(server_config(topo, node, t, d))
                servers.append((f"{node.name}#{t.index}", node.name, conf))
        elif node.vpn is not None:
            ca.issue_client(f"vpn-{node.name}")
            conf = d / f"{node.name}.conf"
            conf.write_text(client_config(topo, node, d))
            clients.append((node.name, node.name, conf))
    for batch in (servers, clients):
        for key, name, conf in batch:
            log = d / f"{key.replace('#', '-')}.log"
            run.logs[key] = log
            run.procs[key] = supervise.start(["openvpn", "--cd", str(d), "--config", str(conf)], name=key,
                                             log=log, append=False, popen=network.nodes[name].popen).proc
        wait_up(run, [k for k, _n, _c in batch], UP_TIMEOUT)
    return run


def wait_up(run: VpnRun, keys: list[str], timeout: float) -> None:
    """Until every process's log says ``Initialization Sequence Completed``."""
    procs = [supervise.Process(run.procs[key], key, run.logs[key]) for key in keys]
    supervise.wait_ready(
        procs, lambda p: UP_MARK in supervise.read_text(p.log), timeout,
        exited=lambda p: _failure(p.name, p.log, f"OpenVPN exited (status {p.returncode})"),
        not_ready=lambda p: _failure(p.name, p.log, f"the tunnel did not come up within {timeout:g} s"))


def _failure(key: str, log: Path, what: str) -> str:
    node = key.split("#")[0]
    role = "concentrator" if "#" in key else "VPN client"
    tail = supervise.read_text(log).splitlines()[-LOG_TAIL:]
    return (f"{role} '{node}': {what}; last lines of {log}:\n    " + "\n    ".join(tail or ["(empty)"]))
