"""Per-lab state files: what a lab made, so that `icelab clean` removes exactly that.

``/run/icelab/<lab>.json`` is written before anything is created and updated once the
nodes exist; ``/run/icelab/<lab>/`` holds the lab's own files (rendered node configs,
later captures and logs). /run is a tmpfs, so a reboot clears both along with the lab.
The directory can be moved with ICELAB_RUN_DIR (tests do not need to).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lab.core.names import run_dir
from . import procs

def turn_control_path(lab: str, node: str = "turn") -> Path:
    """Where the embedded TURN server of host ``node`` in lab ``lab`` listens for control
    (lab.services.turn.faults.control talks to it)."""
    return run_dir() / lab / f"turn-{node}.control.sock"


@dataclass
class NodeState:
    pid: int
    started: int
    netns: int


@dataclass
class LabState:
    name: str
    file: str
    owner_pid: int
    owner_started: int
    status: str = "building"          # building, running, stopping
    created: float = field(default_factory=time.time)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    topology: dict | None = None
    #: the impairment backend chosen when the lab was built (netem, shaper: lab/net/shaper/
    #: backend.py); None until chosen. Every later change goes through it.
    impairment_backend: str | None = None

    @property
    def path(self) -> Path:
        return run_dir() / f"{self.name}.json"

    @property
    def dir(self) -> Path:
        return run_dir() / self.name

    def owner_alive(self) -> bool:
        return procs.alive(self.owner_pid, self.owner_started)

    def save(self) -> None:
        run_dir().mkdir(mode=0o755, parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> "LabState":
        d = json.loads(path.read_text())
        d["nodes"] = {k: NodeState(**v) for k, v in d.get("nodes", {}).items()}
        return cls(**d)

    def remove(self) -> None:
        remove_files(self.name)


def remove_files(name: str) -> None:
    """The lab's state file and run directory."""
    base = run_dir() / name
    for p in (base.with_name(f"{name}.json"), base.with_name(f"{name}.json.tmp")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    shutil.rmtree(base, ignore_errors=True)


def get(name: str) -> LabState | None:
    path = run_dir() / f"{name}.json"
    try:
        return LabState.load(path)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError):
        return None


def all_states() -> list[LabState]:
    d = run_dir()
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.json")):
        try:
            out.append(LabState.load(p))
        except (ValueError, TypeError, KeyError, OSError):
            continue
    return out

