"""What this machine has of what labs need: `icelab doctor`.

Each check says what needs it (every lab, or one feature), whether it is there and what was
found, so that an engineer on a new CI VM sees at once why a lab will not build, and a
trainer before a class that every scenario of the demo can run. Only reads: files, PATH, the
kernel's configuration, Python imports; it starts no lab.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .shaping import kernel_config

SETUP_HINT = "run 'sudo make setup'"


@dataclass
class Check:
    what: str
    needed_for: str              # "every lab" or the feature
    ok: bool
    detail: str
    required: bool = True        # a missing optional part disables only its feature

    def to_dict(self) -> dict:
        return {"what": self.what, "needed_for": self.needed_for, "ok": self.ok, "detail": self.detail,
                "required": self.required}


def _version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"does not run: {exc}"
    text = (r.stdout or r.stderr).strip().splitlines()
    return text[0][:80] if text else f"exit status {r.returncode}"


def _program(name: str, needed_for: str, version: list[str] | None, package: str, required: bool = True) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, needed_for, False, f"not on PATH: {SETUP_HINT} (Debian package {package})", required)
    return Check(name, needed_for, True, f"{path}" + (f": {_version(version)}" if version else ""), required)


def _kernel(conf: dict, key: str, what: str, needed_for: str, required: bool = True) -> Check:
    v = conf.get(key)
    if not conf:
        return Check(what, needed_for, True, "kernel configuration not readable: assumed present", required)
    return Check(what, needed_for, v in ("y", "m"), f"{key}={v or 'not set'}", required)


def checks() -> list[Check]:
    conf, _ = kernel_config()
    out = [
        Check("root", "every lab", os.geteuid() == 0,
              "running as root" if os.geteuid() == 0 else "labs create namespaces and links: run with sudo"),
        _program("mnexec", "every lab", None, "mininet"),
        _program("ip", "every lab", ["ip", "-V"], "iproute2"),
        # Mininet configures every node with these two while it builds
        _program("ifconfig", "every lab (Mininet)", None, "net-tools"),
        _program("sysctl", "every lab (Mininet)", None, "procps"),
        _program("nsenter", "exec, fw, call, the shaper", None, "util-linux"),
        _program("unshare", "checking firewall rules (nft -c in a namespace of its own)", None, "util-linux"),
        _program("nft", "firewalls, NAT", ["nft", "--version"], "nftables"),
        _program("tcpdump", "captures (where packets died)", ["tcpdump", "--version"], "tcpdump"),
        _kernel(conf, "CONFIG_NET_NS", "network namespaces", "every lab"),
        _kernel(conf, "CONFIG_VETH", "veth pairs", "every lab"),
        _kernel(conf, "CONFIG_NF_CONNTRACK", "conntrack", "stateful firewalls, NAT"),
        _kernel(conf, "CONFIG_NF_TABLES", "nftables", "firewalls, NAT"),
        _program("turnserver", "TURN backend: coturn", ["turnserver", "--version"], "coturn", required=False),
        _program("openvpn", "VPN tunnels", ["openvpn", "--version"], "openvpn", required=False),
        _kernel(conf, "CONFIG_TUN", "TUN devices", "VPN tunnels", required=False),
        _program("chromium", "calls by the real connect-rtc-js", ["chromium", "--version"], "chromium",
                 required=False),
    ]
    tun = Path("/dev/net/tun")
    out.append(Check("/dev/net/tun", "VPN tunnels", tun.exists(),
                     "present" if tun.exists() else "missing: 'modprobe tun' or a kernel with CONFIG_TUN", required=False))
    for dist, needed_for in (("mininet", "every lab"), ("networkx", "every lab"), ("pydantic", "every lab"),
                             ("aioice", "the softphone, TURN"), ("aiortc", "the softphone's media"),
                             ("scapy", "diagnosis from captures"), ("websockets", "signalling"),
                             ("cryptography", "the lab CA (TLS, OpenVPN)"), ("matplotlib", "charts")):
        try:
            out.append(Check(f"python: {dist}", needed_for, True, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            out.append(Check(f"python: {dist}", needed_for, False, f"not installed: {SETUP_HINT}"))
    return out
