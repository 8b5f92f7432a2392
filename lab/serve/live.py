"""The lab as the page sees it: a running ``Network``, read and changed only through the lab's
own mechanisms (lab.net.firewall, lab.net.shaping, lab.net.nat, the scenario's ``turn``
action, the softphone process and the call diagnosis of lab.scenario).

Everything here is called from the server's worker threads; ``LiveLab`` serialises the
changes with one lock, so two trainers clicking at once do not interleave nft commands.
The web app (app.py) knows only the methods below; tests give it a fake with the same ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from lab.agent.constants import DEFAULT_ICE_TIMEOUT
from lab.core.errors import LabError, UsageError, did_you_mean
from lab.model.firewall import FirewallPolicy, rule_from_spec
from lab.net import firewall, nat
from lab.net.call import take_call
from lab.net.capture import Captures
from lab.net.shaping import change_impairment, show
from lab.report.graph import STYLE, layout
from lab.scenario.diagnose import blame_rules, call_sentence, diagnose_call, path_points
from lab.scenario.actions.call import ICE_STATE
from lab.scenario.actions.rule import rule_action
from lab.scenario.actions.turn import backend_of, turn_action
from lab.scenario.errors import ActionError

Publish = Callable[[dict], None]

#: how often a call placed from the page reports its audio levels while Talking (both engines;
#: lab/agent/levels.py): four times a second moves a meter smoothly and costs a line each
LEVEL_S = 0.25

#: the emulated softphone's ICE collection timer (the page counts it down from ICE_STATE)
ICE_TIMER_S = DEFAULT_ICE_TIMEOUT


class NotFound(UsageError):
    """A node, link, rule or file the request names is not in this lab (HTTP 404)."""


class Conflict(LabError):
    """The lab cannot do it now (a TURN server without a control socket, no call left): HTTP 409."""


def read_netdev(pid: int) -> dict[str, dict[str, int]]:
    """The kernel's interface counters of the namespace ``pid`` is in, as ``ip -s link`` shows
    them. ``/proc/PID/net/dev`` is that namespace's table: read twice a second for every node,
    a file read costs nothing where a process per node would cost a core's few percent."""
    out = {}
    try:
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return out
    for line in lines:
        name, _, rest = line.partition(":")
        f = [int(x) for x in rest.split()]
        out[name.strip()] = {"rx_packets": f[1], "rx_dropped": f[3], "tx_packets": f[9], "tx_dropped": f[11]}
    return out


@dataclasses.dataclass
class _Renumbered:
    """A rule toggled on again: the live table's number for it, what it counted before."""

    live: int
    packets: int
    bytes: int


@dataclasses.dataclass
class _Disabled:
    """A rule toggled off: deleted from the live table, kept to put back where it was."""

    rule: object            # lab.model.firewall.Rule
    before: int | None      # the (page's) number of the rule that followed it in its chain
    last: dict              # its last counter


class LiveLab:
    """One built lab. ``publish`` hands an event to every page watching (app.Hub)."""

    def __init__(self, network, publish: Publish = lambda e: None, scenario=None):
        self.network = network
        self.topo = network.topo
        self.publish = publish
        self.scenario = scenario
        self._lock = threading.Lock()
        self._disabled: dict[tuple[str, int], _Disabled] = {}
        self._renumbered: dict[tuple[str, int], _Renumbered] = {}     # (node, the page's number)
        self._call_ids = itertools.count(1)
        self.calls: dict[int, dict] = {}         # id -> what the page has been told of it
        self.captures: Captures | None = None

    # -- what the page draws ---------------------------------------------------------------

    def topology(self) -> dict:
        """Nodes with their place (lab/report/graph.py's layout) and colours, links with their
        ends' interfaces: drawn once by the page, then coloured by ``counters``."""
        pos = layout(self.topo)
        nodes = []
        for n in self.topo.nodes.values():
            key = "agent" if n.kind == "host" and n.role == "agent" else "server" if n.kind == "host" \
                else n.kind if n.kind in STYLE else "router"
            face, edge, _w, _h = STYLE[key]
            nodes.append({"name": n.name, "kind": n.kind, "role": n.role, "label": n.label or n.name,
                          "services": list(n.services), "x": pos[n.name][0], "y": pos[n.name][1],
                          "face": face, "edge": edge,
                          "interfaces": [{"name": i.name, "address": str(i.address) if i.address else None}
                                         for i in n.interfaces]})
        links = [{"index": l.index, "a": {"node": l.a.node, "interface": l.a.name},
                  "b": {"node": l.b.node, "interface": l.b.name}, "subnet": str(l.subnet)} for l in self.topo.links]
        agents = [n.name for n in self.topo.hosts() if n.role == "agent"]
        return {"name": self.topo.name, "nodes": nodes, "links": links, "agents": agents,
                "firewalls": [n for n, v in self.topo.nodes.items() if v.kind in ("firewall", "nat")],
                "turn": [n for n, v in self.topo.nodes.items() if v.kind == "host" and "turn" in v.services],
                "ice_timer_s": ICE_TIMER_S, "ice_state": ICE_STATE, "scenario": self.scenario_info()}

    def scenario_info(self) -> dict | None:
        return None

    def play_step(self, index: int) -> dict:
        raise NotFound("this lab was not started from a scenario: 'icelab serve SCENARIO' plays one")

    def timeline(self, verb: str) -> dict:
        raise NotFound("this lab was not started from a scenario: 'icelab serve SCENARIO' plays one")

    def report(self) -> Path:
        raise NotFound("no report yet: a scenario's report is written once its last step has played")

    def counters(self) -> dict:
        """Per interface: packets and drops both ways (the kernel's, plus what the node's
        firewall dropped of what arrived there); per firewall or NAT: its rules' counters."""
        itfs: dict[str, dict] = {}
        rules: dict[str, list[dict]] = {}
        for name, node in self.topo.nodes.items():
            if node.kind == "lan":
                continue
            pid = self.network.node(name).pid
            dev = read_netdev(pid)
            for i in node.interfaces:
                c = dev.get(i.name)
                if c is not None:
                    itfs[f"{name}:{i.name}"] = dict(c, fw_dropped=0)
            if node.kind in ("firewall", "nat"):
                try:
                    rows = self._rules(name, pid)
                except LabError:
                    continue
                rules[name] = rows
                self._attribute_drops(node, rows, itfs)
        return {"t": time.time(), "interfaces": itfs, "rules": rules}

    def _rules(self, node: str, pid: int) -> list[dict]:
        live = []
        for c in firewall.counters(pid):
            r = self._renumbered.get((node, shown := self._shown(node).get(c.number, c.number)))
            if r is not None:       # toggled on again: the page's number, its whole count
                c = dataclasses.replace(c, number=shown, packets=c.packets + r.packets, bytes=c.bytes + r.bytes)
            live.append(dict(c.to_dict(), action=c.action, sentence=c.sentence(), enabled=True,
                             **({"live_number": r.live} if r is not None else {})))
        off = [dict(d.last, enabled=False) for (n, _), d in self._disabled.items() if n == node]
        return sorted(live + off, key=lambda r: (r["number"] is None, r["number"] or 0))

    @staticmethod
    def _attribute_drops(node, rows: list[dict], itfs: dict) -> None:
        """A packet a firewall drops arrived on one of its interfaces and never left: count it
        on the link it came in by (outbound drops came from the inside, inbound ones from outside)."""
        policy = node.policy
        if not isinstance(policy, FirewallPolicy):
            return
        for chain, side in (("outbound", policy.inside), ("inbound", policy.outside)):
            dropped = sum(r["packets"] for r in rows if r["chain"] == chain and r["action"] in ("drop", "reject"))
            if side and f"{node.name}:{side[0]}" in itfs:
                itfs[f"{node.name}:{side[0]}"]["fw_dropped"] += dropped

    def node_info(self, name: str) -> dict:
        node = self._node(name)
        info = {"name": name, "kind": node.kind, "label": node.label, "services": list(node.services),
                "addresses": [{"interface": i.name, "address": str(i.address) if i.address else None,
                               "peer": i.peer} for i in node.interfaces],
                "routes": self._routes(name) if node.kind != "lan" else []}
        if node.kind in ("firewall", "nat"):
            info["rules"] = self._rules(name, self.network.node(name).pid)
            info["mode"] = getattr(node.policy, "mode", None) or getattr(node.policy, "type", None)
        return info

    def _routes(self, name: str) -> list[str]:
        """The kernel's routes in the node (what it does, not only what the model says)."""
        r = subprocess.run(["nsenter", "-t", str(self.network.node(name).pid), "-n", "ip", "route", "show"],
                           capture_output=True, text=True, timeout=5)
        return [l for l in r.stdout.splitlines() if l.strip()]

    def links(self) -> list[dict]:
        return [l.to_dict() for l in show(self.topo.name)]

    # -- controls ----------------------------------------------------------------------------

    def _node(self, name: str, kinds: tuple[str, ...] | None = None):
        node = self.topo.nodes.get(name)
        if node is None:
            raise NotFound(f"no node '{name}' in lab '{self.topo.name}'; {did_you_mean(name, self.topo.nodes, 'nodes')}")
        if kinds and node.kind not in kinds:
            raise NotFound(f"'{name}' is a {node.kind}, not a {' or '.join(kinds)}")
        return node

    def rule_toggle(self, node: str, number: int, enabled: bool) -> str:
        """Off: the rule is deleted from the live table (the ``rule`` action's delete), its last
        counter kept; on: it is added again before the rule that followed it. nft's table then
        has it under the next free number (as every rule added at run time: a number names one
        rule in the lab's reports), but the page keeps the number the trainer knows: ``number`` is always
        that one, the row stays where it was and its counter goes on from what it had counted
        (``live_number`` says what the table calls it now)."""
        fw = self._node(node, ("firewall",))
        pid = self.network.node(node).pid
        with self._lock:
            key = (node, number)
            if not enabled:
                live_no = self._live(node, number)
                rule = next((r for r in fw.policy.rules if r.number == live_no), None)
                if rule is None:
                    raise NotFound(f"no rule {number} in the live table of '{node}'")
                shown = self._shown(node)
                after = sorted(shown.get(r.number, r.number) for r in fw.policy.rules
                               if r.direction == rule.direction and shown.get(r.number, r.number) > number)
                live = {shown.get(c.number, c.number) for c in firewall.counters(pid)}
                before = next((n for n in after if n in live), None)
                gone = firewall.delete_rule(pid, fw.policy, live_no)
                was = self._renumbered.pop(key, None)
                total = dataclasses.replace(gone, number=number, packets=gone.packets + (was.packets if was else 0),
                                            bytes=gone.bytes + (was.bytes if was else 0))
                self._disabled[key] = _Disabled(rule, before, dict(total.to_dict(), action=total.action,
                                                                   sentence=total.sentence()))
                said = f"rule {number} ({rule.name}) off after it counted {total.packets} packets"
            else:
                d = self._disabled.pop(key, None)
                if d is None:
                    raise NotFound(f"rule {number} of '{node}' is not off")
                live = {c.number for c in firewall.counters(pid)}
                before = self._live(node, d.before) if d.before is not None else None
                rule = dataclasses.replace(d.rule)
                try:
                    firewall.add_rule(pid, node, fw.policy, rule, before if before in live else None)
                except LabError:
                    self._disabled[key] = d
                    raise
                if rule.number != number:
                    self._renumbered[key] = _Renumbered(rule.number, d.last["packets"], d.last["bytes"])
                said = f"rule {number} ({rule.name}) on again (r{rule.number} in the live table)"
        self.publish({"type": "log", "text": f"{node}: {said}"})
        return said

    def _live(self, node: str, number: int) -> int:
        """The live table's number of the rule the page calls ``number``."""
        r = self._renumbered.get((node, number))
        return r.live if r is not None else number

    def _shown(self, node: str) -> dict[int, int]:
        """Live number -> the number the page shows, for the rules toggled on again."""
        return {r.live: shown for (n, shown), r in self._renumbered.items() if n == node}

    def rule_add(self, node: str, spec: dict) -> str:
        self._node(node, ("firewall",))
        try:
            rule_from_spec(self.topo, node, spec)      # a rule that would not validate: 400, nothing tried
        except ValueError as exc:
            raise UsageError(f"rule for '{node}': {exc}") from None
        with self._lock:
            try:
                said, _, _ = rule_action(self.network, SimpleNamespace(node=node, add=spec, delete=None))
            except ActionError as exc:
                raise Conflict(str(exc)) from None
        self.publish({"type": "log", "text": f"{node}: {said}"})
        return said

    def rule_delete(self, node: str, number: int) -> str:
        fw = self._node(node, ("firewall",))
        with self._lock:
            if self._disabled.pop((node, number), None) is not None:
                said = f"rule {number} (off) removed"
            else:
                live_no = self._live(node, number)
                if live_no not in {c.number for c in firewall.counters(self.network.node(node).pid)}:
                    raise NotFound(f"no rule {number} in the live table of '{node}'")
                said, _, _ = rule_action(self.network, SimpleNamespace(node=node, add=None, delete=live_no))
                self._renumbered.pop((node, number), None)
        self.publish({"type": "log", "text": f"{node}: {said}"})
        return said

    def link_set(self, a: str, b: str, direction: str, settings: dict, clear: bool = False) -> dict:
        with self._lock:
            new = change_impairment(self.topo.name, a, b, settings, direction, clear=clear, origin="serve")
        said = {d: imp.describe() for d, imp in new.items()}
        for d, text in said.items():
            src, dst = (a, b) if d == "a2b" else (b, a)
            self.publish({"type": "log", "text": f"link {src} -> {dst}: {text}"})
        self.publish({"type": "links", "links": self.links()})
        return said

    def turn(self, node: str, verb: str, faults: dict | None = None) -> str:
        self._node(node)
        if not any(r.service == "turn" and r.node == node for r in self.network.services):
            raise NotFound(f"no TURN server runs on '{node}'")
        with self._lock:
            try:
                said = turn_action(self.network, SimpleNamespace(node=node, verbs=[verb], faults=faults or {}))
            except ActionError as exc:
                raise Conflict(str(exc)) from None
        self.publish({"type": "log", "text": f"TURN on {node}: {said}"})
        return said

    def nat_flush(self, node: str) -> str:
        self._node(node, ("nat", "firewall"))
        with self._lock:
            nat.flush_conntrack(self.network.node(node).pid)
        said = "mappings flushed (conntrack forgotten, as a reboot of the box)"
        self.publish({"type": "log", "text": f"{node}: {said}"})
        return said

    def pcap(self, node: str, interface: str) -> Path:
        if self.captures is None:
            raise NotFound("no captures run in this lab")
        c = self.captures.captures.get((node, interface))
        if c is None or not c.path.exists():
            raise NotFound(f"no capture of {node}:{interface}")
        return c.path

    def start_captures(self) -> None:
        """One tcpdump per interface for the whole session, for the download links."""
        points = [(n.name, i.name) for n in self.topo.nodes.values() if n.kind != "lan" for i in n.interfaces]
        self.captures = Captures(self.network.state.dir / "serve-pcap")
        self.captures.start(self.network, points)

    def stop(self) -> None:
        """Before the teardown: the session's captures flushed and closed."""
        if self.captures is not None:
            self.captures.stop()

    # -- calls -------------------------------------------------------------------------------

    def place_call(self, agent: str, engine: str = "emulated", talk: float = 3.0) -> int:
        """Start a call from ``agent``; its events reach the page as they happen. Returns its id."""
        node = self._node(agent, ("host",))
        if node.role != "agent":
            raise NotFound(f"'{agent}' is not an agent")
        try:
            used = take_call(self.network.state)
        except LabError as exc:
            raise Conflict(str(exc)) from None
        cid = next(self._call_ids)
        self.calls[cid] = {"id": cid, "agent": agent, "engine": engine, "events": [], "outcome": None,
                           "started": time.time()}
        threading.Thread(target=self._run_call, args=(cid, agent, engine, talk, used), daemon=True,
                         name=f"call-{cid}").start()
        return cid

    def _run_call(self, cid: int, agent: str, engine: str, talk: float, used: Path) -> None:
        call = self.calls[cid]
        st = self.network.state
        turn = next((n for n, v in self.topo.nodes.items() if v.kind == "host" and "turn" in v.services), None)
        caps, before = None, {}
        try:
            if turn is not None:
                points = path_points(self.topo, agent, self.topo.address_of(turn)) or []
                caps = Captures(st.dir / "serve-calls" / str(cid))
                caps.start(self.network, [(p.node, p.interface) for p in points])
                before = self._rule_counts()
            cfg = st.dir / f"agent-{agent}-serve-{cid}.json"
            cfg.write_text(json.dumps({"call": str(used), "ca": str(st.dir / "pki" / "ca.pem"), "talk_time": talk,
                                       "profile": "chrome", "engine": engine, "mdns": False,
                                       "levels": LEVEL_S}))
            self.publish({"type": "call", "id": cid, "agent": agent, "engine": engine, "started": time.time()})
            proc = self.network.node(agent).popen([sys.executable, "-m", "lab.agent", "--config", str(cfg)],
                                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE)
            outcome = None
            for raw in proc.stdout:
                try:
                    item = json.loads(raw)
                except ValueError:
                    continue
                if "outcome" in item:
                    outcome = item["outcome"]
                    continue
                if "level" in item:         # a meter's reading, not an event of the call's timeline
                    call["level"] = item["level"]
                    self.publish({"type": "call-level", "id": cid, "level": item["level"], "at": time.time()})
                    continue
                call["events"].append(item)
                self.publish({"type": "call-event", "id": cid, "event": item, "at": time.time()})
            err = proc.stderr.read().decode(errors="replace")
            proc.wait()
            if caps is not None:
                caps.stop()
            if outcome is None:
                outcome = {"ok": False, "state": "?", "softphone_error": None,
                           "error": f"the softphone reported no outcome: {err[-300:]}"}
            elif not outcome.get("reached_talking") and caps is not None:
                outcome["diagnosis"] = self._diagnose(agent, turn, caps, before, outcome.get("softphone_error"))
        except Exception as exc:      # noqa: BLE001 - the page must hear how the call ended, whatever broke
            outcome = {"ok": False, "state": "?", "error": f"{type(exc).__name__}: {exc}"}
            if caps is not None:
                caps.stop()
        outcome.pop("timeline", None)
        call["outcome"] = outcome
        self.publish({"type": "call-end", "id": cid, "outcome": outcome, "at": time.time()})

    def _rule_counts(self) -> dict[str, dict[int, object]]:
        out = {}
        for name, v in self.topo.nodes.items():
            if v.kind == "firewall":
                out[name] = {c.number: c for c in firewall.counters(self.network.node(name).pid) if c.number}
        return out

    def _diagnose(self, agent: str, turn: str, caps: Captures, before: dict, error: str | None) -> str:
        """The lab's sentence of where the call's packets died (lab/scenario/diagnose.py), with
        the rules that counted drops during this call only."""
        d = diagnose_call(self.topo, agent, turn, caps.files())
        observations = {}
        for name, was in before.items():
            rows = []
            shown = self._shown(name)
            for c in firewall.counters(self.network.node(name).pid):
                if c.number is None:
                    continue
                delta = dataclasses.replace(c, packets=c.packets - getattr(was.get(c.number), "packets", 0),
                                            number=shown.get(c.number, c.number))
                rows.append({"action": c.action, "packets": delta.packets, "sentence": delta.sentence()})
            observations[f"firewall:{name}"] = {"rules": rows}
        blame_rules(d, observations)
        rs = next((r for r in self.network.services if r.service == "turn" and r.node == turn), None)
        return call_sentence(d, None, backend_of(rs) if rs else None, error)
