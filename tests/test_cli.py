"""The command line as people and CI use it: exit statuses, no tracebacks, --json."""

import json
import signal
import subprocess
import sys

import pytest

from support import optional_part_missing

ICELAB = [sys.executable, "-m", "lab.cli"]


def icelab(*args, cwd=None):
    return subprocess.run([*ICELAB, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_validate_good_file(repo):
    r = icelab("validate", "topologies/agent-lan.yaml", cwd=repo)
    assert r.returncode == 0
    assert "lab 'office', 10 nodes, 9 links, 4 subnets" in r.stdout


def test_validate_bad_file_exits_2_with_every_problem_and_no_traceback(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  a: {kind: hots}\n  b: {kind: host, role: agent}\n"
                   "links:\n  - {a: b, b: nowhere}\n")
    r = icelab("validate", str(bad), "topologies/agent-lan.yaml", cwd=repo)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}:3: nodes.a.kind: unknown kind 'hots'" in r.stderr
    assert "did you mean 'host'?" in r.stderr
    assert f"{bad}:6: links[0].b: unknown node 'nowhere'" in r.stderr
    assert "nothing was built" in r.stderr
    assert "✓ topologies/agent-lan.yaml" in r.stdout      # the good file is still checked


def test_validate_json(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes: {}\nlinks: [{a: p, b: q}]\n")
    r = icelab("validate", "--json", str(bad), "topologies/agent-lan.yaml", cwd=repo)
    assert r.returncode == 2
    res = json.loads(r.stdout)
    assert [x["valid"] for x in res] == [False, True]
    assert {p["path"] for p in res[0]["problems"]} == {"links[0].a", "links[0].b"}
    assert all(p["line"] == 3 for p in res[0]["problems"])


def test_missing_file_is_an_input_error(tmp_path):
    r = icelab("validate", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "file not found" in r.stderr and "Traceback" not in r.stderr


def test_schema_is_json_schema_for_editors():
    r = icelab("schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["required"]) >= {"name", "nodes"}
    assert "links" in schema["properties"]
    assert schema["additionalProperties"] is False


def test_schema_accepts_the_starter_topology_shape(repo):
    """The JSON Schema and the validator agree on the starter topology's structure."""
    import yaml
    schema = json.loads(icelab("schema").stdout)
    doc = yaml.safe_load((repo / "topologies/agent-lan.yaml").read_text())
    assert set(doc) <= set(schema["properties"])
    kinds = json.dumps(schema["$defs"])
    for node in doc["nodes"].values():
        assert f'"{node["kind"]}"' in kinds


def test_graph_rejects_unknown_format(repo, tmp_path):
    r = icelab("graph", "topologies/agent-lan.yaml", "-o", str(tmp_path / "x.jpg"), cwd=repo)
    assert r.returncode == 2 and "use .svg, .png or .dot" in r.stderr


def test_graph_writes_dot(repo, tmp_path):
    r = icelab("graph", "topologies/agent-lan.yaml", "-o", str(tmp_path / "x.dot"), cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "10.10.0.1" in (tmp_path / "x.dot").read_text()


def test_down_and_exec_of_an_unknown_lab(tmp_path):
    r = icelab("down", "no-such-lab")
    assert r.returncode == 2 and "no lab named 'no-such-lab'" in r.stderr


def test_usage_errors_exit_2():
    assert icelab("frobnicate").returncode == 2
    assert icelab("up").returncode == 2


@pytest.mark.parametrize("kind", ["topology", "scenario"])
def test_committed_schema_files_are_current(repo, kind):
    """docs/*.schema.json are what editors point at; they must match `icelab schema`."""
    committed = json.loads((repo / f"docs/{kind}.schema.json").read_text())
    assert committed == json.loads(icelab("schema", kind).stdout), \
        f"regenerate it: .venv/bin/icelab schema {kind} > docs/{kind}.schema.json"


def test_every_scenario_file_uses_only_what_the_scenario_schema_names(repo):
    """The schema is built from the action and expectation models; every step and expectation
    of the shipped scenarios must find its action (one of the oneOf items) and its fields."""
    import yaml
    schema = json.loads(icelab("schema", "scenario").stdout)
    defs = schema["$defs"]
    actions = {next(k for k in item["required"] if k != "at"): item["properties"]
               for item in schema["properties"]["timeline"]["items"]["oneOf"]}
    expects = {next(iter(defs[r["$ref"].rsplit("/", 1)[1]]["required"])): defs[r["$ref"].rsplit("/", 1)[1]]
               for r in schema["properties"]["expect"]["items"]["oneOf"]}
    files = sorted((repo / "scenarios").glob("*.yaml")) + sorted((repo / "tests/scenarios").glob("*.yaml"))
    assert files
    for f in files:
        doc = yaml.safe_load(f.read_text())
        assert set(doc) <= set(schema["properties"]), f
        for step in doc["timeline"]:
            [action] = set(step) - {"at"}
            ref = actions[action][action]["$ref"].rsplit("/", 1)[1]
            assert set(step[action]) <= set(defs[ref]["properties"]), (f, step)
        for e in doc["expect"]:
            kind = next(k for k in e if k in expects)
            assert set(e) <= set(expects[kind]["properties"]), (f, e)


def test_doctor_lists_what_labs_need_and_names_what_is_missing(tmp_path, repo):
    import os
    r = icelab("doctor", "--json")
    report = json.loads(r.stdout)
    by_what = {c["what"]: c for c in report["checks"]}
    assert all(c["ok"] for w, c in by_what.items() if c["required"] and w != "root"), report
    absent = [f"{w} (for {c['needed_for']})" for w, c in by_what.items() if not c["ok"] and w != "root"]
    assert report["impairments"]["backend"] in ("netem", "shaper")
    assert r.returncode == (0 if by_what["root"]["ok"] else 1)
    # without the programs on PATH: each is named, with the package that brings it
    env = dict(os.environ, PATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "lab.cli", "doctor"], capture_output=True, text=True, env=env,
                       cwd=repo)
    assert r.returncode == 1
    assert "mnexec" in r.stdout and "mininet" in r.stdout and "sudo make setup" in r.stdout
    report = json.loads(subprocess.run([sys.executable, "-m", "lab.cli", "doctor", "--json"], capture_output=True,
                                       text=True, env=env, cwd=repo).stdout)
    missing = {c["what"] for c in report["checks"] if not c["ok"]}
    assert {"mnexec", "nft", "tcpdump", "turnserver", "openvpn", "chromium"} <= missing
    # make setup installs the optional parts too: without one this skips (CI: fails) saying which
    if absent:
        optional_part_missing(", ".join(absent))


def test_names_with_rich_markup_are_printed_as_they_are():
    """rich reads '[/x]' as a closing tag: a user's string must never reach it as markup."""
    r = icelab("down", "[/x]")
    assert r.returncode == 2, r.stderr
    assert "MarkupError" not in r.stderr and "Traceback" not in r.stderr
    # the name is refused (item 11), and the refusal quotes it as it was typed
    assert "lab name '[/x]' has characters that cannot be used" in r.stderr
    r = icelab("exec", "[bold]lab", "n", "--", "true")
    assert r.returncode == 2 and "lab name '[bold]lab' has characters" in r.stderr


def test_a_signal_unwinds_the_command_and_ends_it_with_130():
    """The one signal decorator: SIGTERM becomes Interrupted once the command's cleanup ran,
    and the handlers from before are back afterwards."""
    import os
    import time

    from lab.cli.signals import interruptible
    from lab.core.errors import Interrupted

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []

    @interruptible()
    def command():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Exception:          # what a lower layer may do: it must not swallow the signal
            pytest.fail("the signal was taken for an error")
        finally:
            cleaned.append(True)

    with pytest.raises(Interrupted) as caught:
        command()
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_status == 130
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_up_tears_the_lab_down_and_exits_130(repo, tmp_path, sig):
    """Started from a non-interactive shell, SIGINT is inherited as ignored: `up` installs its
    own handler, so Ctrl-C (or a script's kill -INT) still stops the lab."""
    import time
    name = f"up-{sig.name.lower()}"
    topo = tmp_path / "pair.yaml"
    topo.write_text(f"name: {name}\nnodes:\n  a: {{kind: host}}\n  b: {{kind: host}}\nlinks:\n  - {{a: a, b: b}}\n")
    p = subprocess.Popen([*ICELAB, "up", str(topo)], cwd=repo,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = json.loads(icelab("status", "--json").stdout or "[]")
            if any(s["name"] == name and s["status"] == "running" for s in states):
                break
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the lab did not come up within 60 s")
        p.send_signal(sig)
        out, errs = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
            icelab("down", name)
    assert p.returncode == 130, errs[-2000:]
    assert f"lab '{name}' is down" in errs and "Traceback" not in errs


@pytest.mark.parametrize("argv", [
    ["down", "../../tmp/x"],
    ["exec", "../../tmp/x", "a", "--", "true"],
    ["fw", "show", "../x", "fw"],
    ["nat-check", "a/b", "h"],
    ["call", "..", "agent1"],
    ["link", "show", "../x"],
    ["link", "set", "../x", "a", "b", "--delay", "1ms"],
])
def test_a_lab_name_from_the_command_line_is_checked_before_any_path_is_built(argv):
    r = icelab(*argv)
    assert r.returncode == 2, r.stderr
    assert "has characters that cannot be used" in r.stderr and "Traceback" not in r.stderr


def test_the_state_of_a_lab_is_never_looked_for_outside_the_run_folder(tmp_path, monkeypatch):
    """A name with '/' or '..' would make the state file's path leave ICELAB_RUN_DIR."""
    from lab.core.errors import UsageError
    from lab.net import state

    monkeypatch.setenv("ICELAB_RUN_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside.json").write_text("{}")
    for name in ("../outside", "a/b", "", "UPPER"):
        with pytest.raises(UsageError):
            state.get(name)
        with pytest.raises(UsageError):
            state.remove_files(name)
    assert (tmp_path / "outside.json").exists() and (tmp_path / "outside").is_dir()


def test_doctor_checks_the_programs_builds_exec_and_clean_run(tmp_path):
    """Mininet runs ifconfig and sysctl while it builds, `exec` runs nsenter, the lab's node
    shells are made with unshare: without one of them labs fail half-way."""
    import os
    env = dict(os.environ, PATH=str(tmp_path))
    r = subprocess.run([*ICELAB, "doctor", "--json"], capture_output=True, text=True, env=env, timeout=60)
    report = json.loads(r.stdout)
    by_what = {c["what"]: c for c in report["checks"]}
    for program, package in (("ifconfig", "net-tools"), ("sysctl", "procps"), ("nsenter", "util-linux"),
                             ("unshare", "util-linux")):
        assert program in by_what, f"doctor does not check {program}"
        assert not by_what[program]["ok"] and by_what[program]["required"]
        assert package in by_what[program]["detail"]
    assert r.returncode == 1
