"""The probe as a real ordinary user: ``nobody``, every capability dropped (no CAP_NET_RAW,
so no raw socket could be opened even by mistake), against the lab's embedded TURN server
on loopback with the media info's credentials. It reaches the relay candidate and ends
healthy. The interpreter is the system's Python (root's own may sit under a home ``nobody``
cannot read) and the code a world-readable copy of the probe's path (lab.core, lab.probe)
with the packages it imports."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from turnlab import server  # noqa: E402

from lab.services.mediainfo import media_info  # noqa: E402
from turnlab import SECRET  # noqa: E402

# the probe binds fixed ports of the host's own namespace (Windows and macOS share theirs): these
# files' tests run on one worker of the parallel pass, one at a time (docs/testing.md)
pytestmark = [pytest.mark.xdist_group("probe-host-ports")]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("websockets", "jinja2", "markupsafe")
SYSTEM_PYTHON = "/usr/bin/python3"
#: run inside the probe's process, before the probe: who it is and what it may do
CHECK = """
import os, socket, sys
status = dict(line.split(':', 1) for line in open('/proc/self/status') if ':' in line)
caps = {k: int(status[k].strip(), 16) for k in ('CapEff', 'CapPrm', 'CapBnd')}
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
    raw = 'allowed'
except PermissionError:
    raw = 'refused'
print('WHO', os.getuid(), os.geteuid(), caps, raw, file=sys.stderr)
from lab.probe.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: as root: become nobody with every capability dropped; run by an ordinary user the test
#: already is one (no lab is built either way, so the test is not marked ``root``)
DROP = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", "--no-new-privs"] if os.geteuid() == 0 else []


@pytest.fixture
def readable():
    """A directory every user can read: the probe's path and its packages."""
    d = Path(tempfile.mkdtemp(prefix="icelab-probe-nobody-"))
    try:
        d.chmod(0o755)
        for sub in ("lab/__init__.py", "lab/core", "lab/probe"):
            src = ROOT / sub
            if src.is_dir():
                shutil.copytree(src, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (d / sub).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, d / sub)
        site = Path(sysconfig.get_paths()["purelib"])
        for name in PACKAGES:
            shutil.copytree(site / name, d / name, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(d)], check=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_probe_as_nobody_without_capabilities(readable, tmp_path):
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: the test needs an interpreter outside root's home")
    with server(tmp_path, backend="embedded", users={}) as s:
        info = readable / "media-info.json"
        info.write_text(json.dumps({"callId": "nobody", "mediaInfo": media_info(
            turn_urls=[f"turn:127.0.0.1:{s.cfg.udp_port}?transport=udp"], turn_secret=SECRET,
            signalling_endpoint="")}))
        info.chmod(0o644)
        r = subprocess.run(
            [*DROP, SYSTEM_PYTHON, "-c", CHECK,
             "--media-info", str(info), "--os", "linux", "--json"],
            capture_output=True, text=True, timeout=60, cwd="/",
            env={"PYTHONPATH": str(readable), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    who = next(line for line in r.stderr.splitlines() if line.startswith("WHO"))
    uid, euid = who.split()[1:3]
    assert uid == euid != "0", who
    if DROP:
        assert uid == subprocess.run(["id", "-u", "nobody"], capture_output=True, text=True).stdout.strip()
        assert "'CapBnd': 0" in who, who
    assert "'CapEff': 0, 'CapPrm': 0" in who and who.endswith("refused"), who
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    result = json.loads(r.stdout)
    assert result["verdict"] == "healthy"
    assert [f["id"] for f in result["findings"]] == ["relay-time"]
    m = result["measurements"]
    assert m["stun"]["replies"] == m["stun"]["sent"] > 0
    # the source ports spread over Linux's range, bound as an ordinary user (all above 1024)
    assert [p["bound"] for p in m["stun"]["ports"]][0] >= 32768
    assert m["turn"][0]["relay"].startswith("127.0.0.1:")
