"""The lab's naming rules, in one place: lab and node names, interface names, the node
shells' names, MAC addresses and where a lab's files live.

Every layer derives these the same way: the topology checks names against them, the
network creates shells, veths and files with them, ``icelab clean`` recognises a lab's
leftovers by them, and the shaper daemon inside a lab node computes a far end's MAC with
them. So this module imports nothing but the standard library (above all not Mininet:
the shaper and the probes run inside nodes and must start quickly).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

#: lab and node names: they prefix the lab's shells and name lans' bridges
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
#: interface names a topology may set
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME = 15          # Linux interface names (IFNAMSIZ - 1): a lan's bridge carries its node's name
RESERVED_NAMES = {"lo"}

#: a node shell's Mininet name is ``icelab.<lab>.<node>``; Mininet starts the shell with
#: the command line ``mininet:<name>``, which is how a lab's shells are found in /proc
SHELL_PREFIX = "icelab."
SHELL_MARK = f"mininet:{SHELL_PREFIX}"


def check_name(value: object, what: str) -> tuple[str | None, str | None]:
    """(error, hint) for a lab or node name."""
    if not isinstance(value, str) or not value:
        return f"{what} must be a word", "use lowercase letters, digits and '-', starting with a letter"
    if len(value) > MAX_NAME:
        return (f"{what} '{value}' is too long ({len(value)} characters, at most {MAX_NAME})",
                "Linux interface and bridge names are limited to 15 characters; shorten it")
    if not NAME_RE.match(value):
        return (f"{what} '{value}' has characters that cannot be used",
                "use lowercase letters, digits and '-', starting with a letter")
    if value in RESERVED_NAMES:
        return f"{what} '{value}' is reserved", "choose another name ('lo' is the loopback interface)"
    return None, None


def default_ifname(index: int) -> str:
    """A host's or router's interface when the file names none: eth0, eth1 ..."""
    return f"eth{index}"


def tun_device(index: int) -> str:
    """A VPN tunnel's tun device: vpn<index> on a concentrator, vpn0 on a client."""
    return f"vpn{index}"


def shell_name(lab: str, node: str) -> str:
    """The Mininet node name: the shell's command line then carries the lab's prefix."""
    return f"{SHELL_PREFIX}{lab}.{node}"


def lab_of_shell(argv_last: str) -> str:
    """The lab a node shell belongs to, from the last word of its command line ('' if none)."""
    if not argv_last.startswith(SHELL_MARK):
        return ""
    return argv_last[len(SHELL_MARK):].split(".", 1)[0]


def mac_address(lab: str, node: str, ifname: str) -> str:
    """Stable, locally administered MACs: captures of two runs line up."""
    h = hashlib.sha1(f"{lab}/{node}/{ifname}".encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


DEFAULT_RUN_DIR = "/run/icelab"


def run_dir() -> Path:
    """Where labs keep their state files and run directories (ICELAB_RUN_DIR moves it)."""
    return Path(os.environ.get("ICELAB_RUN_DIR", DEFAULT_RUN_DIR))
