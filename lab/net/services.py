"""Services inside a lab: how a host's ``services`` (turn, signalling, media) are started.

The interface, for whoever adds a service:

* a service is a module (a package) named in ``REGISTRY`` below, e.g. ``"turn":
  "lab.services.turn"``;
* that module has ``lab_service(ctx: ServiceContext) -> ServiceSpec`` (lab/services/spec.py): given where it
  runs (lab, node, the node's addresses, the topology's ``services.<name>`` options, the
  lab's run directory, the lab CA) it says what to run (``argv``, where ``{config}``
  stands for the config file's path), its ``config`` (a JSON-able dict, written to
  ``/run/icelab/<lab>/<service>-<node>.json``), and what it listens on when ready
  (``listens``: ("udp"|"tcp", ip, port) tuples);
* ``start(net)`` (called at the end of ``Network.build()``) starts every service in its
  host's namespace with the node's ``popen`` (so it carries the lab's ICELAB_LAB mark and
  the lab's cleanup ends it), output to ``<service>-<node>.log`` in the run directory,
  then waits until everything listens; a service that exits or does not listen within
  its ``ready_timeout`` is a LabError quoting its log.

A service named on a host but not in REGISTRY yet is reported and not started.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.core import supervise
from lab.services.spec import ServiceContext, ServiceSpec

REGISTRY: dict[str, str] = {"turn": "lab.services.turn", "signalling": "lab.services.media"}
#: roles served by another role's process: the media edge runs inside the signalling
#: service (one process answers the invite and terminates the media; its relay candidates
#: come from TURN, so the host it runs on does not change the agent's media path)
HOSTED_BY: dict[str, str] = {"media": "signalling"}
REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningService:
    service: str
    node: str
    proc: subprocess.Popen
    config: dict
    config_path: Path
    log_path: Path
    listens: list[tuple[str, str, int]]
    ready_timeout: float
    argv: list[str] = field(default_factory=list)     # what was started (a restart runs it again)
    env: dict = field(default_factory=dict)


def start(net, progress=None) -> list[RunningService]:
    """Start the services of every host of ``net`` (a lab.net.network.Network) and wait
    until they listen."""
    started = launch(net, progress)
    wait(net, started)
    return started


def launch(net, progress=None) -> list[RunningService]:
    """Start the services of every host of ``net``; ``wait`` then waits until they listen.
    Their hosts must be configured (the services bind their addresses); the rest of the lab
    need not be."""
    progress = progress or net.progress
    topo = net.topo
    run_dir = net.state.dir
    options = getattr(topo, "services", None) or {}
    started: list[RunningService] = []
    for node in topo.hosts():
        for service in node.services:
            modname = REGISTRY.get(service)
            if service in HOSTED_BY:
                continue
            if modname is None:
                progress(f"service '{service}' on {node.name} is not available yet: not started")
                continue
            ctx = ServiceContext(topo.name, node.name, service, [a.ip for a in node.addresses],
                                 dict(options.get(service) or {}), run_dir, topo)
            spec: ServiceSpec = importlib.import_module(modname).lab_service(ctx)
            cfg_path, log_path = ctx.file("json"), ctx.file("log")
            cfg_path.write_text(json.dumps(spec.config, indent=2) + "\n")
            argv = [a.replace("{config}", str(cfg_path)) for a in spec.argv]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                       PYTHONUNBUFFERED="1")
            p = supervise.start(argv, name=f"service '{service}' on {node.name}", log=log_path, env=env,
                                popen=net.nodes[node.name].popen)
            progress(f"started {service} on {node.name} (pid {p.pid})")
            started.append(RunningService(service, node.name, p.proc, spec.config, cfg_path, log_path,
                                          list(spec.listens), spec.ready_timeout, argv, env))
    return started


def wait(net, started: list[RunningService]) -> None:
    """Wait until every service ``launch`` started listens; one that exits or does not listen
    in time is a LabError quoting its log."""
    by_pid = {rs.proc.pid: rs for rs in started}

    def exited(p: supervise.Process) -> str:
        return f"{p.name} exited with status {p.returncode}:\n{p.tail()}\n(its config: {by_pid[p.pid].config_path})"

    def not_ready(p: supervise.Process) -> str:
        rs = by_pid[p.pid]
        return (f"{p.name} is not listening on " + ", ".join(f"{pr} {ip}:{port}" for pr, ip, port in rs.listens)
                + f" after {rs.ready_timeout:.0f} s:\n{p.tail()}")
    supervise.wait_ready([_process(rs) for rs in started],
                         lambda p: _listening(net.nodes[by_pid[p.pid].node], by_pid[p.pid].listens),
                         timeout=max((rs.ready_timeout for rs in started), default=0.0),
                         timeouts={rs.proc.pid: rs.ready_timeout for rs in started},
                         exited=exited, not_ready=not_ready)


def stop(services: list[RunningService]) -> None:
    """End the processes ``start`` started (the lab's cleanup would, this also reaps them)."""
    supervise.stop([rs.proc for rs in services])


def _process(rs: RunningService) -> supervise.Process:
    return supervise.Process(rs.proc, f"service '{rs.service}' on {rs.node}", rs.log_path, rs.argv)


def _listening(mn, listens: list[tuple[str, str, int]]) -> bool:
    if not listens:
        return True
    out = mn.cmd("ss -Hlnu; ss -Hlnt")
    have = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            have.add(parts[3])          # "local address:port" (udp UNCONN and tcp LISTEN alike)
    return all(f"{ip}:{port}" in have or f"0.0.0.0:{port}" in have or f"*:{port}" in have
               for _, ip, port in listens)
