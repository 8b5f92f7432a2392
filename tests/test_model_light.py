"""`icelab validate` reads a topology with lab.model alone: no Mininet, nothing of the network,
the services or the softphone, and none of the heavy libraries the other layers use. The
processes that run inside lab nodes (TURN server, shaper, probe) import one model module
each and must not pull in the whole model either."""

import subprocess
import sys

HEAVY = ("mininet", "networkx", "matplotlib", "aiortc", "scapy", "numpy", "cryptography",
         "lab.net", "lab.services", "lab.agent", "lab.scenario", "lab.report")


def _loaded(repo, code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` in the repository."""
    code += "\nimport sys; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo).stdout
    return set(out.split())


def test_loading_a_topology_imports_the_model_only(repo):
    mods = _loaded(repo, "import lab.model; lab.model.load_topology('topologies/office-firewall.yaml')")
    assert "lab.model.validate" in mods
    assert not {m for m in mods for h in HEAVY if m == h or m.startswith(h + ".")}


def test_processes_in_lab_nodes_do_not_load_the_whole_model(repo):
    # the TURN server and the shaper check their control requests with pydantic (lab.core.control);
    # the probe has no control socket and must start in milliseconds
    for module in ("lab.services.turn.__main__", "lab.net.shaper.daemon", "lab.net.probe"):
        mods = _loaded(repo, f"import {module}")
        assert "mininet" not in mods and "lab.model.validate" not in mods and "networkx" not in mods, module
    assert "pydantic" not in _loaded(repo, "import lab.net.probe")


def test_validate_builds_only_the_models_a_topology_uses_and_json_output_never_loads_rich(repo):
    # start-up time (issue #12, docs/benchmarks.md "Start-up"): the node kinds a file does not
    # use are never built, and `--json`, read by machines, does not pay for rich
    code = ("import sys; sys.argv = ['icelab', 'validate', '--json', 'topologies/agent-lan.yaml']\n"
            "from lab.cli.main import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main()\n"
            "from lab.model import schema\n"
            "print('built:' + ','.join(n for n in ('HostNode', 'LanNode', 'RouterNode', 'VpnNode', 'VdiNode', 'NatNode')"
            " if getattr(schema, n).__pydantic_complete__))")
    mods = _loaded(repo, code)
    built = next(m for m in mods if m.startswith("built:"))[len("built:"):].split(",")
    assert "HostNode" in built and "VpnNode" not in built and "VdiNode" not in built, built
    assert not {m for m in mods if m == "rich" or m.startswith("rich.")}
    assert "lab.model.validate" in mods
