"""The command line's grammar: every command, its arguments and help. A command is named by
"module:function" in this package, imported only when it runs (see main).

A new command: its subparser here, with ``set_defaults(handler="group:function")``; the function
in the group's module (topology, graph, lab, net, link, call, scenario, doctor), a few lines over a
function of lab.model, lab.net, lab.scenario or lab.report. It returns an exit status or raises a
``LabError`` (``UsageError`` for a bad argument), and wears ``@interruptible()`` (signals.py) if it
builds a lab or waits on one."""

from __future__ import annotations

import argparse

from lab import __version__
from lab.probe.args import EXAMPLES as PROBE_EXAMPLES
from lab.probe.args import add_arguments as probe_arguments


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icelab", description="Network emulation lab for WebRTC softphone failures.")
    p.add_argument("--version", action="version", version=f"icelab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    _topology(sub)
    _lab(sub)
    _scenario(sub)
    _net(sub)
    _policy(sub)
    s = sub.add_parser("probe", help="probe a real agent's network (no root, no lab): findings name the lab's scenarios",
                       description="Probe the network the softphone uses: UDP 3478 from the OS's ephemeral ports, "
                                   "TURN, signalling. Exit 0 healthy, 1 a problem found, 2 bad usage.",
                       epilog=PROBE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    probe_arguments(s)
    s.set_defaults(handler="probe:probe")

    s = sub.add_parser("doctor", help="what this machine has of what labs need, and the link impairment backend")
    s.add_argument("--json", action="store_true", help="machine-readable result")
    s.set_defaults(handler="doctor:doctor")

    s = sub.add_parser("clean", help="remove what killed labs left behind, and nothing else")
    s.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    s.set_defaults(handler="lab:clean")
    return p


def _topology(sub) -> None:
    s = sub.add_parser("validate", help="check topology files; every problem with file, line, path and hint")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--json", action="store_true", help="machine-readable result")
    s.set_defaults(handler="topology:validate")

    s = sub.add_parser("schema", help="print the topology's or the scenario's JSON Schema (for editors)")
    s.add_argument("kind", nargs="?", choices=["topology", "scenario"], default="topology")
    s.set_defaults(handler="schema:schema")

    s = sub.add_parser("graph", help="draw a topology: -o out.svg, out.png or out.dot")
    s.add_argument("file", metavar="FILE")
    s.add_argument("-o", "--output", required=True, metavar="OUT")
    s.set_defaults(handler="graph:graph")


def _lab(sub) -> None:
    s = sub.add_parser("up", help="build a lab and keep it up until Ctrl-C (needs root)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--name", help="run under another lab name (two copies side by side)")
    s.add_argument("--cli", action="store_true", help="open Mininet's CLI; leaving it stops the lab")
    s.set_defaults(handler="lab:up")

    s = sub.add_parser("serve", help="build a lab and show it live in the browser, with controls (needs root)")
    s.add_argument("file", metavar="TOPOLOGY|SCENARIO")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="address to listen on (default 127.0.0.1: this machine only); another shows the lab to a room")
    s.add_argument("--port", type=int, default=8478, metavar="N", help="port (default 8478; 0: any free one)")
    s.add_argument("-o", "--out", default="out", help="a scenario's report folder (default: out/)")
    s.set_defaults(handler="serve:serve")

    s = sub.add_parser("check", help="build a lab, ping between all hosts, compare with the model, tear down")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("--routers", action="store_true", help="also ping every router address")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler="net:check")

    s = sub.add_parser("down", help="stop a running lab")
    s.add_argument("name", metavar="NAME")
    s.set_defaults(handler="lab:down")

    s = sub.add_parser("status", help="list the labs that are up")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler="lab:status")

    s = sub.add_parser("exec", help="run a command in a lab node's network namespace")
    s.add_argument("name", metavar="NAME")
    s.add_argument("node", metavar="NODE")
    s.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD")
    s.set_defaults(handler="lab:exec_")

    s = sub.add_parser("call", help="place a softphone call from an agent of a running lab; print its timeline")
    s.add_argument("name", metavar="LAB")
    s.add_argument("agent", metavar="AGENT")
    s.add_argument("--talk", type=float, default=3.0, help="seconds in Talking before hanging up (default 3)")
    s.add_argument("--profile", choices=["chrome", "aiortc-default"], default="chrome")
    s.add_argument("--engine", choices=["emulated", "chromium"], default="emulated",
                   help="emulated: the lab's softphone (default); chromium: the real connect-rtc-js in headless Chromium")
    s.add_argument("--mdns", action="store_true", help="name host candidates <uuid>.local, as Chrome's mDNS option does")
    s.add_argument("--json", action="store_true", help="the timeline as JSON lines, then the outcome")
    s.set_defaults(handler="call:call")


def _scenario(sub) -> None:
    s = sub.add_parser("run", help="run scenarios: build, play the timeline, check expectations, tear down")
    s.add_argument("files", nargs="+", metavar="SCENARIO", help="scenario files or folders of them")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("-o", "--out", default="out", help="report folder (default: out/); '' for none")
    s.add_argument("--json", action="store_true", help="results as JSON on stdout")
    s.add_argument("--turn-backend", choices=("embedded", "coturn"),
                   help="run every scenario's TURN server on this backend, whatever its topology says")
    s.set_defaults(handler="scenario:run")

    s = sub.add_parser("verify", help="run a set of scenarios: exit 0 if every verdict is pass, else 1")
    s.add_argument("paths", nargs="*", metavar="DIR", help="scenario folders or files (default: scenarios/)")
    s.add_argument("-k", metavar="TEXT", help="only scenarios whose file name contains TEXT")
    s.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI")
    s.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="run N scenarios at once, each in a lab of its own name")
    s.add_argument("-o", "--out", default="out", help="report folder (default: out/)")
    s.add_argument("--turn-backend", choices=("embedded", "coturn"),
                   help="run the whole set against this TURN backend, whatever the scenarios' topologies say")
    s.add_argument("--shard", metavar="K/N",
                   help="run only shard K of N (1 <= K <= N), split by each scenario's last measured duration; "
                        "put the shards together with `icelab merge`")
    s.add_argument("--durations", metavar="FILE",
                   help="durations the split balances by, and --parallel starts the longest first by: a "
                        "durations.json or summary.csv of an earlier run (default: .durations.json beside the "
                        "scenarios; unmeasured ones count 20 s)")
    s.set_defaults(handler="scenario:verify")

    s = sub.add_parser("merge", help="combine the output folders of `verify --shard` runs into one report, "
                                     "and of `sweep --shard` runs into one sweep")
    s.add_argument("folders", nargs="+", metavar="DIR", help="the shards' `verify -o` or `sweep -o` folders")
    s.add_argument("-o", "--out", default="out", help="folder for index.html, summary.csv, durations.json "
                                                      "and the scenarios' reports (default: out/)")
    s.add_argument("--junit", metavar="FILE", help="write JUnit XML of the whole set")
    s.add_argument("--backend-in-names", action="store_true",
                   help="name JUnit cases 'scenario[backend]', as `verify --turn-backend` does")
    s.set_defaults(handler="scenario:merge")

    s = sub.add_parser("sweep", help="run a scenario over a grid of link settings; plot set-up time and outcome")
    s.add_argument("file", metavar="SCENARIO")
    s.add_argument("--param", action="append", metavar="link.FIELD=VALUES",
                   help="link.delay=0..400ms/9, link.loss=0%%,5%%,20%% (at most two; default: the scenario's sweep.params)")
    s.add_argument("--link", metavar="A-B", help="the swept link (default: the scenario's sweep: section, "
                                                  "else the link of its first link step)")
    s.add_argument("--direction", choices=("both", "a2b", "b2a"), help="the swept direction (default both)")
    s.add_argument("--call", metavar="NAME", help="the call to time (default: the scenario's first)")
    s.add_argument("--name", help="run under another lab name")
    s.add_argument("--parallel", type=int, default=1, metavar="N",
                   help="run N grid points at once, each worker in a lab of its own name")
    s.add_argument("--shard", metavar="K/N",
                   help="run only shard K of N: grid points K, K+N, K+2N, ...; put the shards together with "
                        "`icelab merge`")
    s.add_argument("--fresh-labs", action="store_true",
                   help="build and tear down a lab for every point, even where points could share one "
                        "(calls and link changes only: docs/scenarios.md)")
    s.add_argument("-o", "--out", default="out", help="folder for sweep-<scenario>/ (default: out/); '' for none")
    s.add_argument("--json", action="store_true", help="the sweep as JSON on stdout")
    s.set_defaults(handler="scenario:sweep")


def _net(sub) -> None:
    s = sub.add_parser("fw", help="a firewall/nat node's rules with packet counters; or flush its conntrack")
    s.add_argument("action", choices=["show", "flush"], help="show: rules and counters; flush: forget connections")
    s.add_argument("name", metavar="LAB")
    s.add_argument("node", metavar="NODE")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler="net:fw")

    s = sub.add_parser("nat-check", help="discover a host's NAT mapping and filtering (RFC 5780), declared vs measured")
    s.add_argument("name", metavar="LAB")
    s.add_argument("host", metavar="HOST")
    s.add_argument("--server", help="host with two addresses to run the responder on (default: the first found)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(handler="net:nat_check")

    s = sub.add_parser("link", help="link impairments of a running lab: 'link set', 'link show'")
    lsub = s.add_subparsers(dest="link_cmd", required=True, metavar="ACTION")
    ls = lsub.add_parser("set", help="change impairments: icelab link set LAB A B --delay 120ms --loss 2%%")
    ls.add_argument("name", metavar="LAB")
    ls.add_argument("a", metavar="A", help="one end of the link")
    ls.add_argument("b", metavar="B", help="the other end")
    ls.add_argument("--direction", choices=("both", "a2b", "b2a"), default="both",
                    help="a2b: from A to B as named here (default both)")
    ls.add_argument("--delay", help="one-way delay: 120ms, 0.2s")
    ls.add_argument("--jitter", help="standard deviation of the delay: 5ms")
    ls.add_argument("--distribution", help="of the jitter: normal, uniform, pareto, paretonormal")
    ls.add_argument("--loss", help="random loss: 2%%; with --burst the mean of bursty loss")
    ls.add_argument("--burst", type=float, help="mean loss burst length in packets (Gilbert-Elliott)")
    ls.add_argument("--rate", help="rate limit: 1mbit, 100kbit")
    ls.add_argument("--queue", type=int, help="packets that may wait for the rate limit")
    ls.add_argument("--duplicate", help="share of packets sent twice: 1%%")
    ls.add_argument("--reorder", help="share of packets that skip the delay: 10%%")
    ls.add_argument("--clear", action="store_true", help="start from no impairment instead of the current ones")
    ls.set_defaults(handler="link:link_set")
    ls = lsub.add_parser("show", help="every link's impairments and counters")
    ls.add_argument("name", metavar="LAB")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler="link:link_show")


def _policy(sub) -> None:
    s = sub.add_parser("policy", help="your own firewall rules, run for real: a verdict per softphone requirement")
    psub = s.add_subparsers(dest="policy_cmd", required=True, metavar="ACTION")
    c = psub.add_parser("check", help="load the rules into a lab's firewall, probe every requirement, print the "
                                      "deciding rule and a verified fix (needs root)")
    c.add_argument("file", metavar="RULES", help="iptables-save output, an nft ruleset, a CSV rule table or YAML rules")
    c.add_argument("--format", choices=["iptables", "nft", "csv", "yaml"], help="override the detected format")
    c.add_argument("--agents", required=True, metavar="CIDR", help="the agents' subnet as the rules name it")
    c.add_argument("--os", action="append", choices=["windows", "linux", "macos"], metavar="OS",
                   help="the agents' operating system (repeat for several): windows, linux, macos")
    c.add_argument("--ip-ranges", required=True, metavar="FILE", help="AWS's ip-ranges.json (a real one works)")
    c.add_argument("--region", required=True, help="the Connect region, e.g. eu-west-2")
    c.add_argument("--interfaces", metavar="inside=IF,outside=IF", help="the interface names the rules use")
    c.add_argument("--through", choices=["vpn-full", "vpn-split"],
                   help="the agents at home in a VPN to the data centre, the policy at its edge")
    c.add_argument("--bypass", metavar="PREFIX,...",
                   help="vpn-split: the split tunnel's destinations (default: the region's Connect ranges)")
    c.add_argument("--vdi", action="store_true",
                   help="the softphone runs in virtual desktops on the agents' subnet, the policy at the data-centre edge")
    c.add_argument("--media-info", metavar="FILE",
                   help="the softphone's media info JSON: TURN over TCP 443 offered adds the turn-tcp-443 requirement")
    c.add_argument("--nat", action="store_true", help="masquerade at the outside interface when the rules have no NAT")
    c.add_argument("--objects", metavar="FILE", help="CSV: named address objects (columns name, address)")
    c.add_argument("--mode", choices=["stateful", "stateless"], default="stateful", help="CSV/YAML: connection tracking")
    c.add_argument("--no-call", action="store_true", help="probes only, no softphone call")
    c.add_argument("--no-fix", action="store_true", help="do not compute and verify fixes")
    c.add_argument("--show-translation", action="store_true", help="CSV/YAML: print the nft file that is loaded")
    c.add_argument("--json", action="store_true", help="machine-readable result")
    c.add_argument("--junit", metavar="FILE", help="write JUnit XML, one test case per requirement")
    c.add_argument("--report", metavar="FILE", help="write a Markdown report")
    c.add_argument("--report-dir", metavar="DIR",
                   help="write an HTML and Markdown report with the topology picture and the firewall's captures (pcap/)")
    c.add_argument("--write-fixed", metavar="FILE", help="write the policy with the verified fix")
    c.add_argument("--name", default="policy", help="the lab's name (default: policy)")
    c.set_defaults(handler="policy:check")
