"""The agent OS's ephemeral port range, and the source ports the probe sends from.

A stateless firewall's return rule must open the range the agent's OS picks source ports
from (reference softphone.md "Documented network requirements"): a rule for the wrong OS
lets some source ports through and not others, so the probe spreads its requests over the
whole range and puts a port on each side of the other OSes' boundaries.

Only ``platform.system()`` is read: no Linux-only call (no /proc, no sysctl) is on this path.
"""

from __future__ import annotations

import platform

from lab.core.errors import UsageError
from lab.core.ports import EPHEMERAL

OS_NAMES = tuple(EPHEMERAL)
_SYSTEMS = {"windows": "windows", "darwin": "macos", "linux": "linux"}

#: the documented return ranges' edges: a port on each side of every edge inside the agent's
#: range tells which rule a firewall has (Windows/macOS from 49152, Linux up to 61000)
BOUNDARIES = (49151, 49152, 61000, 61001)
MAX_PORTS = 9


def this_os(system: str | None = None) -> str:
    """'windows', 'macos' or 'linux' for this machine (``platform.system()``); other Unixes
    count as Linux, the closest ephemeral range among the three."""
    name = (system if system is not None else platform.system()).lower()
    return _SYSTEMS.get(name, "linux")


def ephemeral_range(os_name: str) -> tuple[int, int]:
    try:
        return EPHEMERAL[os_name]
    except KeyError:
        raise UsageError(f"unknown OS '{os_name}': use one of {', '.join(OS_NAMES)}") from None


def source_ports(os_name: str, count: int = MAX_PORTS) -> list[int]:
    """The lowest, the quartiles, the middle and the highest port of the OS's range, and
    the ports on each side of the documented boundaries that fall inside it; at most ``count``."""
    lo, hi = ephemeral_range(os_name)
    span = hi - lo
    spread = [lo, lo + span // 4, lo + span // 2, lo + 3 * span // 4, hi]
    edges = [p for p in BOUNDARIES if lo < p < hi]
    ports = sorted(set(spread + edges))
    if len(ports) > count:      # keep the extremes and the boundaries, drop quartiles first
        keep = set(edges) | {lo, hi}
        ports = sorted(keep | set([p for p in ports if p not in keep][:max(0, count - len(keep))]))
    return ports[:count]


def port_block(port: int) -> str:
    """The documented range a port belongs to, in the words of the return rules."""
    if 49152 <= port <= 65535 and port > 61000:
        return "49152-65535 (Windows/macOS only)"
    if 49152 <= port <= 61000:
        return "49152-61000 (every OS)"
    if 32768 <= port < 49152:
        return "32768-49151 (Linux only)"
    return "outside every documented range"
