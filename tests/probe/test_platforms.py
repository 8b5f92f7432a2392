"""The probe's platform branches, all exercised on Linux by parameter: each OS's ephemeral
range and the source ports spread over it; nothing that needs root or only Linux has."""

import ast
import socket
from pathlib import Path

import pytest

from lab.core.errors import UsageError
from lab.probe import measure, platforms
from lab.probe.platforms import BOUNDARIES, EPHEMERAL, ephemeral_range, source_ports, this_os

# the probe binds fixed ports of the host's own namespace (Windows and macOS share theirs): these
# files' tests run on one worker of the parallel pass, one at a time (docs/testing.md)
pytestmark = [pytest.mark.xdist_group("probe-host-ports")]

PROBE = Path(platforms.__file__).parent


@pytest.mark.parametrize("system, expected", [
    ("Windows", "windows"), ("Darwin", "macos"), ("Linux", "linux"), ("FreeBSD", "linux"), ("", "linux")])
def test_this_os_from_platform_system(system, expected):
    assert this_os(system) == expected


def test_this_os_defaults_to_this_machine():
    assert this_os() == "linux"          # CI and this machine are Linux


@pytest.mark.parametrize("os_name, lo, hi", [
    ("windows", 49152, 65535), ("macos", 49152, 65535), ("linux", 32768, 60999)])
def test_ephemeral_ranges(os_name, lo, hi):
    assert ephemeral_range(os_name) == (lo, hi)


@pytest.mark.parametrize("os_name", sorted(EPHEMERAL))
def test_source_ports_spread_over_the_range(os_name):
    lo, hi = EPHEMERAL[os_name]
    ports = source_ports(os_name)
    assert ports == sorted(set(ports))
    assert 5 <= len(ports) <= platforms.MAX_PORTS
    assert ports[0] == lo and ports[-1] == hi
    assert any(abs(p - (lo + hi) // 2) < (hi - lo) // 8 for p in ports), "a port near the middle"
    assert all(lo <= p <= hi for p in ports)
    # a port on each side of every documented boundary inside the range
    for b in BOUNDARIES:
        if lo < b < hi:
            assert b in ports


@pytest.mark.parametrize("os_name, inside", [
    ("linux", [49151, 49152]), ("windows", [61000, 61001]), ("macos", [61000, 61001])])
def test_boundaries_tell_the_return_rules_apart(os_name, inside):
    assert set(inside) <= set(source_ports(os_name))


@pytest.mark.parametrize("count", [2, 3, 5])
def test_source_ports_bounded(count):
    for os_name in EPHEMERAL:
        assert len(source_ports(os_name, count)) <= count


def test_unknown_os_is_a_usage_error():
    with pytest.raises(UsageError) as e:
        ephemeral_range("solaris")
    assert e.value.exit_status == 2


@pytest.mark.parametrize("os_name", sorted(EPHEMERAL))
def test_binds_the_ports_of_each_os_without_root(os_name):
    """Every OS's ports bind as an ordinary user would (all are >= 1024): no privilege needed."""
    for port in source_ports(os_name):
        assert port >= 1024


FORBIDDEN_NAMES = {"SOCK_RAW", "SO_BINDTODEVICE", "IP_RECVERR", "SO_MARK", "setns", "unshare",
                   "sched_setaffinity", "geteuid", "getuid"}
FORBIDDEN_MODULES = {"fcntl", "resource", "termios", "pwd", "grp", "scapy", "mininet", "aiortc", "aioice",
                     "pyroute2", "lab.net", "lab.model", "lab.services", "lab.agent", "lab.scenario"}


@pytest.mark.parametrize("path", sorted(PROBE.glob("*.py")), ids=lambda p: p.name)
def test_no_raw_sockets_no_linux_only_calls(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                assert not any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES), f"{path.name}: {name}"
        if isinstance(node, ast.Attribute):
            assert node.attr not in FORBIDDEN_NAMES, f"{path.name}:{node.lineno}: {node.attr}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert not node.value.startswith(("/proc", "/sys/")), f"{path.name}:{node.lineno}: {node.value}"


def test_a_run_opens_no_raw_socket(monkeypatch):
    """Every socket a run opens is UDP or TCP (recorded while probing an address nobody
    answers from: the whole code path runs)."""
    from lab.probe import measure
    from lab.probe.run import probe
    from lab.probe.targets import Targets, turn_option

    kinds = []
    real = socket.socket.__init__

    def record(self, family=-1, type=-1, proto=-1, fileno=None):
        real(self, family, type, proto, fileno)
        kinds.append(self.type)

    monkeypatch.setattr(socket.socket, "__init__", record)
    monkeypatch.setattr(measure, "RELAY_DEADLINE", 1.0)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        t = Targets(turn=[turn_option(f"127.0.0.1:{silent.getsockname()[1]}")])
        for os_name in EPHEMERAL:
            probe(t, os_name)
    finally:
        silent.close()
    assert kinds and set(kinds) <= {socket.SOCK_DGRAM, socket.SOCK_STREAM}


def test_docs_explain_every_finding():
    from lab.probe.signatures import SIGNATURES
    doc = (PROBE.parents[1] / "docs" / "probe.md").read_text()
    for sig in SIGNATURES:
        assert f"`{sig.id}`" in doc, sig.id
        for s in sig.scenarios:
            assert (PROBE.parents[1] / "scenarios" / f"{s}.yaml").exists(), s


@pytest.mark.parametrize("system, os_name", [("Windows", "windows"), ("Darwin", "macos"), ("Linux", "linux")])
def test_a_run_on_each_os_sends_from_its_ports(system, os_name, monkeypatch, capsys):
    """The whole command as it runs on each OS (``platform.system()`` says which, no
    ``--os``): the sweep binds that OS's ephemeral ports, as an ordinary user, against a
    STUN responder on loopback, and the run is healthy."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import responder

    from lab.probe import cli

    monkeypatch.setattr(platforms.platform, "system", lambda: system)
    s = responder.start()
    try:
        rc = cli.main(["--turn", f"127.0.0.1:{s.getsockname()[1]}", "--json", "--idle", "0"])
    finally:
        s.close()
    result = json.loads(capsys.readouterr().out)
    m = result["measurements"]
    lo, hi = EPHEMERAL[os_name]
    assert rc == 0 and result["verdict"] == "healthy", result["findings"]
    assert m["os"] == os_name and m["ephemeral_range"] == f"{lo}-{hi}"
    bound = [p["bound"] for p in m["stun"]["ports"]]
    assert m["source_ports"] == source_ports(os_name)
    # a port another program holds is replaced by the next free one: still inside the range
    assert all(b is not None and lo <= b <= hi for b in bound), bound
    # each its own port or one of the next few (another program, or a parallel test worker's
    # probe of the same OS, may hold some of them at this moment)
    assert all(abs(b - p) < 8 for b, p in zip(bound, source_ports(os_name))), (bound, source_ports(os_name))
    assert m["stun"]["replies"] == m["stun"]["sent"] and m["stream"]["replies"] == m["stream"]["sent"] == measure.STREAM_PACKETS


@pytest.mark.parametrize("idle", ["-1", "241"])
def test_idle_out_of_bounds_is_a_usage_error(idle, capsys):
    """Past 240 s TURN's 300 s permission could lapse during the silence."""
    from lab.probe import cli
    assert cli.main(["--turn", "127.0.0.1:9", "--idle", idle]) == 2
    assert "--idle" in capsys.readouterr().err


def test_a_held_port_is_replaced_by_a_free_one_inside_the_range():
    """Another program (a parallel run, a softphone) may hold a port of the sweep: the next
    free one above it replaces it, but never above the range's highest port, where the ones
    below it do (a Linux agent's 61000 is outside its range, and would read as a finding)."""
    import asyncio
    import socket

    from lab.probe.measure import _near, _udp_socket
    assert _near(50000, 3, 60999) == [50000, 50001, 50002]
    assert _near(60997, 4, 60999) == [60997, 60998, 60999, 60996]
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.bind(("0.0.0.0", 0))
    top = held.getsockname()[1]

    async def bind():
        got = await _udp_socket(socket.AF_INET, top, top=top)
        got[0].close()
        return got[2]
    try:
        assert asyncio.run(bind()) < top
    finally:
        held.close()


def test_a_sweep_cut_at_the_deadline_gives_its_ports_back():
    """The run cancels a sweep that is still waiting at its deadline: its sockets, bound to the
    OS's own ephemeral ports, are closed all the same (a worker that ran the probe before
    found every port of the next run taken)."""
    import asyncio
    import socket

    from lab.probe import measure

    def free_port():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("0.0.0.0", 0))
            return s.getsockname()[1]
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)     # takes the requests, answers none
    hole.bind(("127.0.0.1", 0))
    ports = sorted({free_port(), free_port()})

    async def main():
        pace = measure.Pace(rate=100.0)
        sweep = asyncio.ensure_future(measure.stun_sweep([("127.0.0.1", hole.getsockname()[1])], ports, 1, pace,
                                                         timeout=30.0))
        await asyncio.sleep(0.3)
        sweep.cancel()
        await asyncio.gather(sweep, return_exceptions=True)
    try:
        asyncio.run(main())
        for p in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("0.0.0.0", p))          # OSError (in use) if the sweep kept it
    finally:
        hole.close()
