"""`icelab serve`: build a lab (or a scenario's), show it live in the browser (lab/serve/)."""

from __future__ import annotations

import ipaddress
import secrets
import signal
import socket
import threading
import time
from pathlib import Path

import uvicorn
import yaml

from lab.core.errors import EXIT_OK, LabError, UsageError
from lab.model import load_topology
from lab.net import Network
from lab.scenario.load import load_scenario
from lab.serve.app import Hub, create_app
from lab.serve.live import LiveLab
from lab.serve.scenario import ScenarioLab, build as build_scenario

from .console import err, escape, hinted, out
from .signals import interruptible


def is_scenario(path: str) -> bool:
    """A scenario file has a timeline; a topology file has nodes. Anything else is left to the
    topology loader, whose problems name file, line and hint."""
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and "timeline" in doc


def listen(address: str, port: int) -> socket.socket:
    """Bound before the lab is built: a port in use fails in a blink, not after the build."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        raise UsageError(hinted(f"--bind {address}: not an IP address", "e.g. --bind 0.0.0.0 or --bind 192.168.1.20")) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        raise UsageError(hinted(f"cannot listen on {address}:{port}: {exc.strerror}",
                                "choose another --port (0: any free one)")) from None
    sock.listen(64)
    return sock


@interruptible()
def serve(args) -> int:
    sock = listen(args.bind, args.port)
    scenario = load_scenario(args.file, args.name) if is_scenario(args.file) else None
    if scenario:
        topo = scenario.topology
        network, runner = build_scenario(scenario, Path(args.out))
    else:
        topo = load_topology(args.file, name=args.name)
        network = Network(topo)
    name = escape(topo.name)
    server = thread = live = None
    try:
        with err.status(f"building lab '{name}'") as status:
            network.progress = lambda m: status.update(f"lab '{name}': {escape(m)}")
            network.build()
            status.update(f"lab '{name}': starting captures")
            hub = Hub()
            live = ScenarioLab(network, hub.publish, scenario, runner, Path(args.out)) if scenario \
                else LiveLab(network, hub.publish)
            live.start_captures()
        token = secrets.token_urlsafe(24)
        config = uvicorn.Config(create_app(live, token, hub), log_level="warning", access_log=False, lifespan="on",
                                # open event streams never end by themselves: do not wait for them
                                timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        # uvicorn in a thread of its own: the main thread keeps the signals (interruptible), so
        # Ctrl-C, SIGTERM and SIGHUP tear the lab down exactly as `icelab up` does
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise LabError("the web server did not start (see the messages above)")
            time.sleep(0.02)
        host, port = sock.getsockname()[:2]
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{shown}]" if ":" in shown else shown
        if not ipaddress.ip_address(host).is_loopback:
            err.print(f"[yellow]warning: serving on {escape(host)}:{port}, not only this machine: anyone who has "
                      "the address below (it carries the token) can change this lab's firewalls and links[/]")
        out.print(f"[green]lab '{name}' is up[/]" + (f" (scenario {escape(scenario.name)})" if scenario else ""))
        out.print(f"http://{shown}:{port}/?token={token}", soft_wrap=True, markup=False)
        out.print("Ctrl-C here stops the server and tears the lab down.")
        while True:
            signal.pause()
    finally:
        if server is not None:
            server.should_exit = True
            thread.join(5)
        sock.close()
        with err.status(f"tearing down lab '{name}'"):
            if live is not None:
                live.stop()
            network.teardown()
        err.print(f"lab '{name}' is down")
    return EXIT_OK
