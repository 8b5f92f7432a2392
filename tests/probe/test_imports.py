"""`icelab probe` runs where there is no lab: importing its path never imports the lab's
network layer, Mininet, scapy or aiortc (checked with ``python -X importtime``), and it
works with those packages made unimportable."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB_ONLY = ("lab.net", "lab.scenario", "lab.services", "lab.agent", "lab.model", "lab.report",
            "mininet", "scapy", "aiortc", "aioice", "pyroute2", "matplotlib", "networkx")


def imported(argv: list[str]) -> tuple[subprocess.CompletedProcess, set[str]]:
    r = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    names = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, names


def lab_only(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == m or n.startswith(m + ".") for m in LAB_ONLY))


@pytest.mark.parametrize("argv", [
    ["-m", "lab.probe"],                  # no target: usage error after the whole path is imported
    ["-m", "lab.cli", "probe"],
], ids=["python -m lab.probe", "icelab probe"])
def test_the_probe_path_imports_no_lab_layer(argv):
    r, names = imported(argv)
    assert r.returncode == 2 and "nothing to probe" in r.stderr, r.stderr[-500:]
    assert "lab.probe.measure" in names and "websockets" in names
    assert lab_only(names) == []


def test_works_with_mininet_scapy_aiortc_unimportable(tmp_path):
    """A machine without the lab's packages: each raises ImportError; the probe still runs
    against a STUN server (here the probe's own loopback answerer) and ends healthy."""
    poison = tmp_path / "poison"
    for mod in ("mininet", "scapy", "aiortc", "aioice", "pyroute2"):
        (poison / mod).mkdir(parents=True)
        (poison / mod / "__init__.py").write_text(f"raise ImportError('{mod} is not installed here')\n")
    code = (
        "import socket, threading, sys\n"
        "from lab.core import stun\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))\n"
        "def serve():\n"
        "    while True:\n"
        "        data, peer = s.recvfrom(2048)\n"
        "        m = stun.parse(data)\n"
        "        if m.method == stun.BINDING:\n"
        "            s.sendto(stun.encode(stun.BINDING, stun.SUCCESS, m.tid, [(stun.XOR_MAPPED_ADDRESS, stun.xor_address(peer, m.tid))]), peer)\n"
        "        else:\n"
        "            s.sendto(stun.encode(m.method, stun.ERROR, m.tid, [(stun.ERROR_CODE, stun.error_code(401)), (stun.REALM, b'r'), (stun.NONCE, b'n')]), peer)\n"
        "threading.Thread(target=serve, daemon=True).start()\n"
        "from lab.cli import main\n"
        "rc = main(['probe', '--turn', f'127.0.0.1:{s.getsockname()[1]}', '--json'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mininet', 'scapy', 'aiortc', 'aioice') or m.startswith('lab.net')]\n"
        "print('MODULES', bad)\n"
        "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={"PYTHONPATH": f"{poison}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "MODULES []" in r.stdout
    result = json.loads(r.stdout.split("MODULES")[0])
    assert result["verdict"] == "healthy" and result["measurements"]["stun"]["replies"] == 28
