"""Processes the lab runs (services, tunnels, display servers, the shaper) and deadlines.

One way to start a process, wait until it is ready, and stop it; one ``wait_until`` for
every "until this holds, at most that long" loop::

    p = start(["openvpn", "--config", conf], name="VPN client 'agent1'", log=log_path,
              popen=node.popen)                         # a Mininet node's popen, or subprocess.Popen
    p.wait_ready(lambda: UP_MARK in read_text(log_path), timeout=20)
    ...
    p.stop()                                             # terminate, wait, kill

    wait_ready([p1, p2], lambda p: p.listening(), timeout=10)    # several at once
    wait_until(lambda: sock_answers(), timeout=10, what="the shaper answering")

``wait_ready`` raises ``ProcessExited`` when the process ends first and ``NotReady`` when
the time runs out, both quoting the end of its log; pass ``exited=`` / ``not_ready=`` (a
function of the Process returning the message) for a caller's own wording. ``wait_until``
raises ``TimedOut``. All three are LabErrors. ``clock`` and ``sleep`` are parameters so that
the waiting logic can be tested on a fake clock.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Sequence

from .errors import LabError

#: how often predicates are asked by default
INTERVAL = 0.05
#: how long ``stop`` waits after SIGTERM before SIGKILL
GRACE = 3.0
#: lines of a log quoted in errors
TAIL = 15


class TimedOut(LabError):
    """``wait_until``'s condition did not hold in time."""


class ProcessError(LabError):
    """A supervised process ended before it was ready, or was not ready in time."""

    def __init__(self, message: str, process: "Process"):
        super().__init__(message)
        self.process = process


class ProcessExited(ProcessError):
    pass


class NotReady(ProcessError):
    pass


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = INTERVAL, *,
               what: str = "the condition", clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Any:
    """Ask ``predicate`` until it returns something true and return that; it is asked at
    least once, then every ``interval`` s until ``timeout`` s have passed (the last wait is
    cut to the deadline, and it is asked once more there). Raises TimedOut ("``what`` did
    not happen within ``timeout`` s"). An exception from ``predicate`` ends the wait."""
    deadline = clock() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - clock()
        if left <= 0:
            raise TimedOut(f"{what} did not happen within {timeout:g} s")
        sleep(min(interval, left))


def read_text(path: str | Path) -> str:
    """A log's text, or "" when it is not there (yet)."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def tail(path: str | Path | None, n: int = TAIL, prefix: str = "  | ") -> str:
    """The last ``n`` lines of a log, each after ``prefix``, for error messages."""
    if path is None:
        return prefix + "(no log)"
    try:
        lines = Path(path).read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return prefix + "(no log)"
    return "\n".join(prefix + line for line in lines) or prefix + "(empty log)"


@dataclass
class Process:
    """A process started by ``start``: its Popen, its name in messages, its log."""

    proc: subprocess.Popen
    name: str
    log: Path | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = TAIL, prefix: str = "  | ") -> str:
        return tail(self.log, n, prefix)

    def wait_ready(self, ready: Callable[[], Any], timeout: float, interval: float = INTERVAL, *,
                   exited: Callable[["Process"], str] | None = None,
                   not_ready: Callable[["Process"], str] | None = None,
                   clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        """Until ``ready()`` holds; see ``wait_ready`` (the function) for the errors."""
        wait_ready([self], lambda _p: ready(), timeout, interval, exited=exited, not_ready=not_ready,
                   clock=clock, sleep=sleep)

    def stop(self, grace: float = GRACE) -> None:
        stop([self], grace)


def start(argv: Sequence[str], *, name: str, log: str | Path | None = None, env: dict | None = None,
          popen: Callable[..., subprocess.Popen] = subprocess.Popen, append: bool = True,
          **kwargs) -> Process:
    """Start ``argv`` with ``popen`` (``subprocess.Popen`` or e.g. a Mininet node's ``popen``,
    which runs it in the node's namespace), stdin from /dev/null, stdout and stderr into
    ``log`` (appended to, or truncated with ``append=False``) unless ``kwargs`` say otherwise.
    ``name`` is how errors call it ("service 'turn' on turn")."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    if env is not None:
        kwargs["env"] = env
    argv = list(argv)
    if log is None:
        return Process(popen(argv, **kwargs), name, None, argv)
    log = Path(log)
    with open(log, "ab" if append else "wb") as fh:
        kwargs.setdefault("stdout", fh)
        kwargs.setdefault("stderr", subprocess.STDOUT)
        return Process(popen(argv, **kwargs), name, log, argv)


def _exited(p: Process) -> str:
    return f"{p.name} exited with status {p.returncode}:\n{p.tail()}"


def _not_ready(timeout: float) -> Callable[[Process], str]:
    return lambda p: f"{p.name} was not ready within {timeout:g} s:\n{p.tail()}"


def wait_ready(processes: Iterable[Process], ready: Callable[[Process], Any], timeout: float,
               interval: float = INTERVAL, *, timeouts: dict[int, float] | None = None,
               exited: Callable[[Process], str] | None = None,
               not_ready: Callable[[Process], str] | None = None,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Until ``ready(p)`` holds for every process, all waited for together. A process that
    ends first raises ProcessExited (message ``exited(p)``, by default its status and log
    tail); one not ready ``timeout`` s after the wait began (``timeouts``: per process, by
    pid) raises NotReady (``not_ready(p)``). The exit status is looked at before readiness:
    a process that ended is not ready, even when what it left behind looks so (a port held by
    another process, a line in its log)."""
    pending = list(processes)
    t0 = clock()
    while pending:
        for p in list(pending):
            if not p.alive():
                raise ProcessExited((exited or _exited)(p), p)
            if ready(p):
                pending.remove(p)
        if not pending:
            return
        now = clock()
        for p in pending:
            limit = (timeouts or {}).get(p.pid, timeout)
            if now - t0 >= limit:
                raise NotReady((not_ready or _not_ready(limit))(p), p)
        sleep(interval)


def stop(processes: Iterable[Process | subprocess.Popen], grace: float = GRACE) -> None:
    """SIGTERM to every process still running, then wait ``grace`` s for each and SIGKILL
    what is left; every process is reaped."""
    procs = [p.proc if isinstance(p, Process) else p for p in processes]
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LineWatch:
    """A ready predicate for a process that says it is ready on a pipe: true once a line
    containing ``text`` came on ``stream``. Reads only what is there (never blocks);
    ``seen`` holds what came, for error messages."""

    def __init__(self, stream: IO[bytes], text: str):
        self.stream, self.text = stream, text
        self.seen = ""
        self._fd = stream.fileno()
        self._buf = b""

    def __call__(self) -> bool:
        while select.select([self._fd], [], [], 0)[0]:
            chunk = os.read(self._fd, 65536)
            if not chunk:
                break
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                self.seen += text + "\n"
                if self.text in text:
                    return True
        return False

    def rest(self) -> str:
        """What came so far, including a last line without its newline."""
        return self.seen + self._buf.decode(errors="replace")
