"""How a service declares itself to the lab: what it is given and what it says to run.

A service package (``lab.services.turn``, ``lab.services.media``) has ``lab_service(ctx:
ServiceContext) -> ServiceSpec``. Both types live here, beside the services, so that a
service declares itself without the network layer; lab/net/services.py realises the
declaration (writes the config, starts ``argv`` in the host's namespace, waits for
``listens``). Neither type knows about Mininet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.services.pki import Issued


@dataclass
class ServiceSpec:
    """What to run (``{config}`` in ``argv`` stands for the config file's path), its config
    (a JSON-able dict), and what it listens on once ready: ("udp"|"tcp", ip, port)."""

    argv: list[str]
    config: dict
    listens: list[tuple[str, str, int]] = field(default_factory=list)
    ready_timeout: float = 10.0


@dataclass
class ServiceContext:
    """Where a service instance runs."""

    lab: str
    node: str
    service: str
    addresses: list[Any]          # the node's IPv4 addresses
    options: dict                 # the topology's services.<service> section (defaults filled in)
    run_dir: Path
    topology: Any = None          # the whole lab.model.Topology (where the other services are)

    def file(self, suffix: str) -> Path:
        """A file of this service instance in the lab's run directory."""
        return self.run_dir / f"{self.service}-{self.node}.{suffix}"

    def certificate(self, dns: list[str], ips: list[str]) -> "Issued":
        """A server certificate from the lab CA (``<run dir>/pki/ca.pem`` is what clients trust)."""
        # Start-up time: every TURN server process imports this module (through its
        # package) and cryptography alone costs it 0.13 s; only a lab's build needs it here.
        from lab.services.pki import LabCA
        return LabCA.load_or_create(self.run_dir / "pki", self.lab).issue(f"{self.service}-{self.node}", dns, ips)
