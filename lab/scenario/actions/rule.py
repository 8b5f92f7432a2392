"""``rule``: add a rule to a firewall's live nftables table, or delete one.

An added rule goes before the default rule of its direction (or before the rule named in
``before``) with the next free number; a rule is deleted by name or number. The table is
changed in place, never reloaded, so every other rule keeps its counter; a deleted rule's
last counter is kept for the report. At load the numbers and names a step can use are those
the timeline has left at that time.
"""

from __future__ import annotations

import difflib
import time
from typing import Any

from pydantic import Field, ValidationError

from lab.core.errors import did_you_mean
from lab.core.units import format_duration
from lab.model.firewall import FwRule, rule_from_spec
from lab.model.schema import _translate
from lab.net import firewall

from ..errors import ActionError
from .base import Action, Strict, action


class RuleAction(Strict):
    """Change a firewall's rules at run time: ``add`` a rule written as in the topology
    (``{name, direction, action, proto, src, dst, port, sport, log}``), placed before the
    default rule of its direction; or ``delete`` one by its name or number. The nftables
    table is changed in place: every other rule keeps its counter."""

    node: str = Field(description="the firewall")
    add: dict[str, Any] | None = Field(None, description="a rule as in the topology's 'rules'")
    delete: str | int | None = Field(None, description="a rule's name or number (as 'icelab fw show' lists them)")
    before: str | int | None = Field(None, description=(
        "with add: place it before this rule (name or number, same direction) instead of before the default"))


@action
class Rule(Action):
    name = "rule"
    model = RuleAction

    @classmethod
    def check(cls, ck, step, topo) -> bool:
        spec, path = step.spec, step.path
        node = topo.nodes.get(spec.node)
        pol = getattr(node, "policy", None)
        if node is None or node.kind != "firewall" or pol is None or pol.ruleset is not None:
            fws = [n.name for n in topo.nodes.values() if n.kind == "firewall"]
            why = "has its own nftables file (rules are changed there)" if pol is not None and \
                getattr(pol, "ruleset", None) is not None else "is not a firewall"
            ck.err(path + ("node",), f"'{spec.node}' {why}",
                   did_you_mean(spec.node, fws, "firewalls") or "name a node with 'kind: firewall' and rules")
            return False
        if (spec.add is None) == (spec.delete is None):
            ck.err(path, "a rule step either adds or deletes one rule",
                   "write 'add: {name: ..., direction: inbound, action: accept, ...}' or 'delete: NAME-OR-NUMBER'")
            return False
        rules = ck.state(cls.name).setdefault(spec.node, [(r.number, r.name, r.direction) for r in pol.rules])
        if spec.add is not None:
            return cls._check_add(ck, step, topo, rules)
        if spec.before is not None:
            ck.err(path + ("before",), "'before' places a rule that is added", "leave it out when deleting")
            return False
        found = _find_rule(ck, spec.node, rules, spec.delete, path + ("delete",), step.at)
        if found is None:
            return False
        if found[1].startswith("default "):
            ck.err(path + ("delete",), f"rule {found[0]} ({found[1]}) is the default of its direction "
                   "and cannot be deleted", "add a rule before it instead")
            return False
        rules.remove(found)
        step.name = f"{spec.node}-delete-r{found[0]}"
        return True

    @classmethod
    def _check_add(cls, ck, step, topo, rules: list) -> bool:
        spec, path = step.spec, step.path
        try:
            FwRule.model_validate(spec.add)
        except ValidationError as exc:
            ck.problems += [_translate(e, ck.doc, path + ("add",), FwRule, tuple(e["loc"])) for e in exc.errors()]
            return False
        try:
            rule = rule_from_spec(topo, spec.node, spec.add)
        except ValueError as exc:
            msg, _, hint = str(exc).partition(" (hint: ")
            ck.err(path + ("add",), f"the rule cannot be added to {spec.node}: {msg}",
                   hint.rstrip(")") if hint else "write it as in the topology's rules (docs/firewall.md)")
            return False
        number = max((n for n, _, _ in rules), default=0) + 1
        if spec.before is not None:
            at = _find_rule(ck, spec.node, rules, spec.before, path + ("before",), step.at)
            if at is None:
                return False
            if at[2] != rule.direction:
                ck.err(path + ("before",), f"rule {at[0]} ({at[1]}) is {at[2]}, the new rule {rule.direction}",
                       "a rule goes before one of its own direction")
                return False
            step.before = at[0]
        rules.append((number, rule.name, rule.direction))
        step.name = f"{spec.node}-add-r{number}"
        return True

    @classmethod
    def start(cls, run, step) -> None:
        what, number, gone = rule_action(run.network, step.spec, step.before)
        now = round(time.monotonic() - run.t0, 3)
        if gone is not None:
            run.deleted_rules.setdefault(step.spec.node, []).append(dict(gone, deleted_at=now))
        else:
            run.added_rules.setdefault(step.spec.node, {})[number] = now
        run.event(f"rule:{step.spec.node}", what)


def _find_rule(ck, node: str, rules: list, want, path: tuple, at: float):
    """The one rule (number, name, direction) called ``want`` (a number or a name)."""
    found = [r for r in rules if (r[0] == want if isinstance(want, int) else r[1] == want)]
    if not found:
        listed = ", ".join(f"{n} ({name})" for n, name, _ in rules)
        close = difflib.get_close_matches(str(want), [r[1] for r in rules], 1) if isinstance(want, str) else []
        ck.err(path, f"{node} has no rule {want!r} at {format_duration(at)}",
               (f"did you mean '{close[0]}'? " if close else "") + f"its rules then: {listed}")
        return None
    if len(found) > 1:
        ck.err(path, f"{len(found)} rules of {node} are named {want!r}",
               "name it by number: " + ", ".join(str(r[0]) for r in found))
        return None
    return found[0]


def rule_action(network, spec, before: int | None = None) -> tuple[str, int, dict | None]:
    """Add or delete the step's rule on the live firewall: what was done, the rule's number,
    and for a deleted rule its last counter (a dict as in the firewall observations)."""
    pid = network.node(spec.node).pid
    policy = network.topo.nodes[spec.node].policy
    if spec.add is not None:
        try:
            rule = firewall.add(network, spec.node, dict(spec.add), before)
        except (ValueError, RuntimeError) as exc:
            raise ActionError(f"adding a rule to {spec.node}: {exc}") from exc
        return f"added rule {rule.number} ({rule.name}, {rule.direction} {rule.action})", rule.number, None
    gone = firewall.delete_rule(pid, policy, spec.delete)
    return (f"deleted rule {gone.number} ({gone.name}) after it counted {gone.packets} packets", gone.number,
            dict(gone.to_dict(), action=gone.action, sentence=gone.sentence()))
