"""How `run` and `verify` run a set of scenarios: every file checked first (all problems at
once, nothing built), then one after the other in this process, or N at a time, each in a
child `icelab run` under a lab name of its own."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab.core.errors import InputError
from lab.report.scenario import write
from lab.report.tables import MARK
from lab.scenario.load import load_scenario
from lab.scenario.runner import Result, run_scenario
from lab.scenario.shard import ESTIMATE

from .console import err, escape


def scenario_files(paths: list[str]) -> list[str]:
    """Files as given; folders as their *.yaml files, in name order."""
    files = []
    for p in paths:
        path = Path(p)
        files += sorted(str(f) for f in path.glob("*.yaml")) if path.is_dir() else [p]
    return files


def load_all(files: list[str], lab: str | None = None, turn_backend: str | None = None) -> list:
    """Every scenario checked before anything is built; all problems of all files at once."""
    loaded, problems = [], []
    for f in files:
        try:
            loaded.append(load_scenario(f, lab, turn_backend))
        except InputError as exc:
            problems += exc.problems
    if problems:
        raise InputError(problems)
    return loaded


def run_all(scenarios: list, out: str | None) -> list[Result]:
    """One after the other; with ``out``, each one's report written as soon as it is done."""
    results = []
    with err.status("starting") as status:
        for i, s in enumerate(scenarios, 1):
            status.update(f"[{i}/{len(scenarios)}] {escape(s.name)}: building lab '{escape(s.topology.name)}'")
            r = run_scenario(s, progress=lambda m, i=i: status.update(f"[{i}/{len(scenarios)}] {escape(m)}"),
                             out_dir=Path(out) if out else None)
            results.append(r)
            if out:
                r.report_dir = str(write(r, Path(out)))
            err.print(f"{MARK[r.verdict]} {escape(s.name)} ({r.timings.get('total', 0):.1f} s)")
    return results


def longest_first(scenarios: list, durations: dict[str, float]) -> list:
    """The order N workers take scenarios in: the longest (last measured) first, so that a
    long one does not start last while the other workers sit idle, and the workers finish
    together (LPT, as the shard split; unmeasured ones count shard.ESTIMATE)."""
    return sorted(scenarios, key=lambda s: (-durations.get(s.name, ESTIMATE), s.name))


def run_parallel(scenarios: list, n: int, out: str | None, turn_backend: str | None,
                 shard: int | None = None, durations: dict[str, float] | None = None) -> list[Result]:
    """Each scenario in a child `icelab run` under a lab name of its worker slot (and shard,
    so that shards on one machine do not meet), so labs of the same topology run side by
    side; results come back as JSON, in the order given, whatever order they ran in (with
    ``durations``: longest first). When this process is stopped (a signal, an error) the
    children get SIGTERM, each tears its own lab down, and no new one starts: otherwise it
    would wait for every scenario to finish first."""
    slots: queue.Queue = queue.Queue()
    for i in range(n):
        slots.put(i)
    children: set[subprocess.Popen] = set()
    lock = threading.Lock()
    stopping = threading.Event()

    def one(s) -> Result:
        slot = slots.get()
        suffix = f"-s{shard}p{slot}" if shard else f"-p{slot}"
        lab = s.topology.name[:15 - len(suffix)] + suffix if shard else f"{s.topology.name[:11]}-p{slot}"
        try:
            argv = [sys.executable, "-m", "lab.cli", "run", s.file, "--name", lab, "--json", "-o", out or ""]
            if turn_backend:
                argv += ["--turn-backend", turn_backend]
            with lock:
                if stopping.is_set():
                    return Result(s, lab, error="not run: verify was stopped")
                child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                children.add(child)
            try:
                stdout, stderr = child.communicate()
            finally:
                with lock:
                    children.discard(child)
        finally:
            slots.put(slot)
        try:
            res = Result.from_dict(json.loads(stdout)[0], s)
        except (ValueError, IndexError):
            return Result(s, lab, error=f"the run failed: {stderr.strip()[-300:]}")
        err.print(f"{MARK[res.verdict]} {escape(s.name)} ({res.timings.get('total', 0):.1f} s, lab {escape(lab)})")
        return res

    pool = ThreadPoolExecutor(max_workers=n)
    try:
        # the pool starts tasks in the order they are submitted
        order = longest_first(scenarios, durations) if durations is not None else scenarios
        futures = {id(s): pool.submit(one, s) for s in order}
        return [futures[id(s)].result() for s in scenarios]
    except BaseException:
        with lock:
            stopping.set()
            for child in children:
                child.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
