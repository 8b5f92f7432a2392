"""A softphone process of a scenario step: started in a lab node while the lab's services
start, told ``go`` on its stdin at the step's time, its JSON lines read as they come (on the
scenario's clock) until it ends or its time budget runs out. ``call`` (one call,
``python -m lab.agent``) and load runs (``python -m lab.agent.load``) are both one."""

from __future__ import annotations

import json
import subprocess
import threading
import time


class AgentProcess:
    """The process, its reader and its deadline; subclasses say what to start and what its
    lines mean (``finish``)."""

    def spawn(self, node, argv: list[str], budget_s: float) -> None:
        """Start ``argv`` in ``node``'s namespace; it waits for ``go``. ``budget_s``: how long
        it may run after ``go`` before ``end()`` kills it."""
        self.lines: list[tuple[float, dict]] = []
        self.stderr = b""
        self.started = 0.0
        self.budget_s = budget_s
        self.ready = threading.Event()
        self.proc = node.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.deadline = time.monotonic() + budget_s

    def go(self):
        """Tell it to begin now (the step's time)."""
        self.started = time.monotonic() - self.run.t0
        self.deadline = time.monotonic() + self.budget_s
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.close()
        except (BrokenPipeError, ValueError):
            pass            # it died while waiting: finish() reports its stderr
        self.proc.stdin = None      # communicate() must not flush it again
        return self

    def _read(self) -> None:
        for raw in self.proc.stdout:
            try:
                item = json.loads(raw)
            except ValueError:
                continue
            if item.get("ready"):
                self.ready.set()
                continue
            self.lines.append((time.monotonic() - self.run.t0, item))

    def done(self) -> bool:
        return self.proc.poll() is not None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def end(self) -> None:
        """Wait for it to end (killed at its deadline) and for its last lines."""
        try:
            _, self.stderr = self.proc.communicate(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
        self.reader.join(5)
