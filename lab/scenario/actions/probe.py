"""``probe``: a few packets from a host to a node's address and port, and what comes back.

The lab runs an echo responder on the destination (``python -m lab.net.probe serve``),
started before the timeline's clock; a probe to a port a lab service listens on (TURN's
3478 with ``proto: stun`` or tcp) is answered by the service instead. A UDP probe to a
service's port is refused at load: the service would drop the probe's packets.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from ipaddress import ip_address
from typing import Literal

from pydantic import Field

from lab.core.errors import did_you_mean
from lab.core.units import Bound, format_duration, parse_duration
from lab.net.probe import received
from lab.net.state import run_dir
from lab.services.turn.config import TurnConfig

from ..diagnose import path_points
from ..errors import RunError
from ..observations import ProbeObservation
from .base import Action, DurationText, Expect, ExpectModel, Strict, action, expect, typed


class Probe(Strict):
    """Send a few packets from a host to a node's address and port and see what comes back.
    The lab runs an echo responder on the destination: a reply that does not come back
    while the request arrived is a return path that drops (a stateless firewall's classic)."""

    name: str | None = Field(None, description="what expectations call it (default: FROM-TO-PROTOPORT)")
    from_: str = Field(alias="from", description="source host")
    to: str = Field(description="destination node, or an IPv4 address in the lab")
    proto: Literal["udp", "tcp", "stun"] = Field("udp", description=(
        "udp or tcp to the lab's echo responder; stun: STUN Binding requests, answered by the "
        "destination's STUN/TURN server"))
    port: int = Field(ge=1, le=65535)
    sport: int | None = Field(None, ge=1, le=65535, description="source port (default: the kernel's choice)")
    count: int = Field(5, ge=1, le=1000)
    interval: DurationText = Field("50ms", description="time between packets")
    timeout: DurationText = Field("1s", description="how long to wait for the last reply")


class ProbeStep(Probe):
    """A checked probe: its times in seconds."""

    interval: float
    timeout: float


class ProbeExpect(ExpectModel):
    probe: str = Field(description="the probe's name")
    reached: bool | None = Field(None, description="requests arrived and replies came back")
    request_reached: bool | None = Field(None, description="requests arrived at the destination")
    reply_reached: bool | None = Field(None, description="replies made it back to the source")
    rtt: str | None = Field(None, description="a bound on the median round-trip time, e.g. '< 50ms'")


def node_of(topo, to: str) -> str:
    """The node a probe goes to: named, or owning the address."""
    if to in topo.nodes:
        return to
    return next(n.name for n in topo.nodes.values() if any(str(a.ip) == to for a in n.addresses))


def udp_service(topo, node: str, port: int) -> str | None:
    """The lab service that takes UDP ``port`` on ``node`` (TURN's), from the topology alone."""
    n = topo.nodes[node]
    if "turn" in getattr(n, "services", ()):
        opts = topo.services.get("turn") or {}
        if opts.get("udp_port", TurnConfig.udp_port) == port:
            return "turn"
    return None


def service_on(network, topo, spec) -> str | None:
    """The lab service listening where the probe goes ('turn on turn, udp 3478'), if any."""
    node = node_of(topo, spec.to)
    want = "tcp" if spec.proto == "tcp" else "udp"
    for rs in getattr(network, "services", None) or []:
        if rs.node == node and any(p == want and port == spec.port for p, _ip, port in rs.listens):
            return f"{rs.service} on {node}, {want} {spec.port}"
    return None


@action
class ProbeAction(Action):
    name = "probe"
    model = Probe
    named = True

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec, path = step.spec, step.path
        ok = ck.host(topo, spec.from_, path + ("from",))
        to = spec.to
        if to not in topo.nodes:
            try:
                addr = ip_address(to)
            except ValueError:
                ck.err(path + ("to",), f"unknown node '{to}'",
                       did_you_mean(to, topo.nodes, "nodes") or "name a node or give an IPv4 address")
                return False
            if not any(a.ip == addr for n in topo.nodes.values() for a in n.addresses):
                ck.err(path + ("to",), f"no node of the lab has the address {addr}",
                       "name the node instead, or use one of its addresses")
                return False
        elif topo.nodes[to].kind == "lan":
            ck.err(path + ("to",), f"'{to}' is a lan and has no address", "probe a host or a router on it")
            return False
        times = {}
        for key in ("interval", "timeout"):
            times[key], m, h = parse_duration(getattr(spec, key), allow_zero=key == "interval")
            if m:
                ck.err(path + (key,), m, h)
                ok = False
        step.name = spec.name or f"{spec.from_}-{to}-{spec.proto}{spec.port}"
        if spec.proto == "udp":
            service = udp_service(topo, node_of(topo, to), spec.port)
            if service:
                ck.err(path + ("proto",), f"UDP {spec.port} on {to} is the lab's {service} service, which would "
                       "drop the probe's packets", "use 'proto: stun' to ask it for a STUN Binding instead")
                ok = False
        if ok:
            step.spec = typed(ProbeStep, spec, **times)
        return ok

    @classmethod
    def before_timeline(cls, run, steps: list) -> None:
        """An echo responder on every destination a probe goes to that no service answers."""
        topo = run.scenario.topology
        wanted = {}
        for step in steps:
            s = step.spec
            if not service_on(run.network, topo, s):
                wanted[(node_of(topo, s.to), s.proto, s.port)] = None
        procs = []
        d = run_dir() / topo.name
        for node, proto, port in wanted:
            log = str(d / f"probe-{node}-{proto}{port}.jsonl")
            run.responders[(node, proto, port)] = log
            p = run.network.node(node).popen(
                [sys.executable, "-m", "lab.net.probe", "serve", "--proto", proto, "--port", str(port), "--log", log],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            procs.append((node, proto, port, p))
        for node, proto, port, p in procs:
            line = p.stdout.readline().decode().strip()
            if line != "ready":
                raise RunError(f"the probe responder on {node} ({proto} {port}) did not start: {line}")

    @classmethod
    def capture_path(cls, topo, step) -> list | None:
        return path_points(topo, step.spec.from_, ip_address(run_address(topo, step.spec.to)))

    @classmethod
    def start(cls, run, step) -> "ProbeRun":
        return ProbeRun(run, step)


def run_address(topo, to: str) -> str:
    return str(topo.address_of(to)) if to in topo.nodes else to


class ProbeRun:
    """A probe step in flight: the sender's process in the source node."""

    def __init__(self, run, step):
        spec = step.spec
        topo = run.scenario.topology
        self.step = step
        self.key = f"probe:{step.name}"
        self.run_id = uuid.uuid4().hex[:10]
        self.address = run_address(topo, spec.to)
        self.service = service_on(run.network, topo, spec)
        self.responder = None if self.service else run.responders[(node_of(topo, spec.to), spec.proto, spec.port)]
        argv = [sys.executable, "-m", "lab.net.probe", "send", "--proto", spec.proto, "--to", self.address,
                "--port", str(spec.port), "--count", str(spec.count), "--interval", str(spec.interval),
                "--timeout", str(spec.timeout), "--run", self.run_id]
        if spec.sport:
            argv += ["--sport", str(spec.sport)]
        self.proc = run.network.node(spec.from_).popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.deadline = time.monotonic() + spec.count * spec.interval + spec.timeout + 5.0

    def done(self) -> bool:
        return self.proc.poll() is not None

    def finish(self, run) -> None:
        try:
            out, errs = self.proc.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, errs = self.proc.communicate()
            run.result.observations[self.key] = {"error": "the probe did not finish in time"}
            return
        try:
            data = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            run.result.observations[self.key] = {"error": f"the probe failed: {errs.decode()[-300:]}"}
            return
        spec = self.step.spec
        data.update(from_node=spec.from_, to_node=spec.to)
        if self.responder is not None:
            got = received(self.responder, self.run_id)
            data.update(requests_received=len({g["req"] for g in got}),
                        seen_from=sorted({f"{g['src']}:{g['sport']}" for g in got}))
        else:
            # a lab service answers on this port: what arrived is counted in the captures
            data.update(requests_received=None, answered_by=self.service)
        run.result.observations[self.key] = data
        run.probes.append(self)
        arrived = "" if data["requests_received"] is None else f"{data['requests_received']} arrived at {spec.to}, "
        run.event(self.key, f"{data['sent']} sent, {arrived}{data['replies']} replies back")


@expect
class ProbeExpectation(Expect):
    kind = "probe"
    model = ProbeExpect
    example = "add what must hold, e.g. 'reached: true'"

    @classmethod
    def evaluate(cls, e, record: dict) -> tuple[bool | None, str]:
        spec, obs = e.spec, ProbeObservation.from_dict(record)
        sent, arrived, back = obs.sent, obs.requests_received, obs.replies
        if arrived is None and (spec.request_reached is not None or spec.reply_reached is not None):
            return None, (f"{sent} sent, {back} replies back; whether requests arrived at {obs.to_node} is unknown "
                          f"({obs.answered_by or 'a service'} answers there and there is no capture to count them)")
        words = f"{sent} sent, {'?' if arrived is None else arrived} arrived at {obs.to_node}, {back} replies back"
        if obs.errors:
            words += f" (sender: {obs.errors[0]})"
        if back < sent and obs.requests_where:
            words += f"; {obs.requests_where}"
            if arrived and obs.replies_where:
                words += f"; {obs.replies_where}"
        ok = True
        if spec.reached is not None:
            ok &= (back > 0) == spec.reached
        if spec.request_reached is not None:
            ok &= (arrived > 0) == spec.request_reached
        if spec.reply_reached is not None:
            if arrived == 0:
                return None, words + ": no request arrived, so the reply path was not tested"
            ok &= (back > 0) == spec.reply_reached
        rtt: Bound | None = e.bounds.get("rtt")
        if rtt is not None:
            if not obs.rtt_ms:
                return (False, words + ": no reply, so no round-trip time")
            median = statistics.median(obs.rtt_ms) / 1000
            words += f", median RTT {format_duration(median)}"
            ok &= rtt.holds(median)
        return bool(ok), words
