"""The lab's one control channel: one JSON object per line in, one JSON object per line out.

Long-running lab processes (the shaper, the embedded TURN server) take live requests on a
unix socket. Every request is checked against a pydantic model before anything is done, so
a bad line gets an answer ``{"ok": false, "error": "..."}`` naming what is wrong and changes
nothing; a good one gets the handler's answer with ``"ok": true``. The connection is never
closed without an answer, and nothing raised by a request reaches the server's log.

Server side (a service declares its messages next to itself, as ``Request`` models)::

    channel = Channel.by_op({"ping": (Ping, on_ping), "set": (SetLink, on_set)})  # {"op": "set", ...}
    channel = Channel.single(TurnControl, on_request)                              # one message shape
    await serve_unix(path, channel)          # asyncio servers
    sock = listen_unix(path)                 # select/thread loops: when readable,
    channel.serve_one(sock)                  #   accept one connection, answer one request

Client side (blocking)::

    answer = ask(path, {"op": "ping"}, timeout=5.0)   # the answer dict, "ok" true or false

``ask`` raises ``NotListening`` when nothing listens at ``path`` and ``ControlError`` when
no answer comes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import LabError

#: longest request line taken, in bytes: more is refused (the connection is then closed)
LINE_LIMIT = 64 * 1024
#: how long a blocking server waits for a connected client's request
SERVE_TIMEOUT = 1.0


class ControlError(LabError, OSError):
    """No answer on a control socket. Also an OSError: to a caller it is a socket that failed."""


class NotListening(ControlError):
    """Nothing listens on the control socket (the process is not running)."""


class Request(BaseModel):
    """Base of every control message: unknown fields are refused and values are not coerced
    (a delay given as "800" is an error, not 800)."""

    model_config = ConfigDict(extra="forbid", strict=True)


Handler = Callable[[Any], dict]


def describe(exc: ValidationError) -> str:
    """``faults.drop: Input should be a valid list; ...``: each problem with its place."""
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


class Channel:
    """What a server answers to one request line. Build it with ``by_op`` or ``single``."""

    def __init__(self, route: Callable[[dict], tuple[type[Request], Handler, dict]],
                 limit: int = LINE_LIMIT):
        self._route = route
        self.limit = limit

    @classmethod
    def by_op(cls, ops: Mapping[str, tuple[type[Request], Handler]], limit: int = LINE_LIMIT) -> "Channel":
        """Requests name their operation in ``op``; each operation has its model (without
        ``op``) and its handler, which gets the validated model."""
        ops = dict(ops)

        def route(doc: dict):
            op = doc.get("op")
            if op not in ops:
                known = ", ".join(sorted(ops))
                if "op" not in doc:
                    raise _Refused(f"a request needs 'op': one of {known}")
                raise _Refused(f"unknown op {op!r}: one of {known}")
            model, handler = ops[op]
            return model, handler, {k: v for k, v in doc.items() if k != "op"}
        return cls(route, limit)

    @classmethod
    def single(cls, model: type[Request], handler: Handler, limit: int = LINE_LIMIT) -> "Channel":
        """Every request has the one shape ``model``."""
        return cls(lambda doc: (model, handler, doc), limit)

    def answer(self, line: bytes | str) -> dict:
        """The answer to one request line (with or without its newline)."""
        if isinstance(line, str):
            line = line.encode()
        if len(line) > self.limit:
            return _error(f"a request is at most {self.limit} bytes; this one has {len(line)}")
        try:
            doc = json.loads(line)
        except ValueError as exc:
            return _error(f"a request is one JSON object per line; this one is not JSON ({exc})")
        if not isinstance(doc, dict):
            return _error(f"a request is a JSON object, not {_kind(doc)}")
        try:
            model, handler, body = self._route(doc)
            request = model.model_validate(body)
        except _Refused as exc:
            return _error(str(exc))
        except ValidationError as exc:
            return _error(describe(exc))
        try:
            reply = handler(request)
        except Exception as exc:      # a request must never stop the service it controls
            return _error(str(exc) if isinstance(exc, (LabError, ValueError)) else f"{type(exc).__name__}: {exc}")
        return {"ok": True, **reply}

    def answer_line(self, line: bytes | str) -> bytes:
        reply = self.answer(line)
        try:
            return _line(reply)
        except (TypeError, ValueError) as exc:     # a handler's answer that JSON cannot carry
            return _line(_error(f"the answer could not be sent: {exc}"))

    # -- blocking servers (select loops, threads) ---------------------------------------------

    def serve_one(self, listener: socket.socket, timeout: float = SERVE_TIMEOUT) -> None:
        """Accept one connection on ``listener`` (a readable listening socket), answer its
        first request and close it. Waits at most ``timeout`` for the request."""
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.settimeout(timeout)
            data = b""
            try:
                while b"\n" not in data and len(data) <= self.limit:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                reply = self.answer_line(data.split(b"\n", 1)[0]) if data.strip() else \
                    _line(_error("no request: the connection was closed before a line came"))
            except socket.timeout:
                reply = _line(_error(f"no request within {timeout:g} s"))
            except OSError:
                return
            try:
                conn.sendall(reply)
            except OSError:
                pass

    # -- asyncio servers ----------------------------------------------------------------------

    async def serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer every line of one connection, in order, until the client closes it."""
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    if exc.partial.strip():
                        writer.write(self.answer_line(exc.partial))
                        await writer.drain()
                    break
                except asyncio.LimitOverrunError:
                    # the rest of the line cannot be told from the next request: answer, then close
                    writer.write(_line(_error(f"a request is at most {self.limit} bytes; this one has more")))
                    await writer.drain()
                    break
                writer.write(self.answer_line(line))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class _Refused(Exception):
    pass


def _error(message: str) -> dict:
    return {"ok": False, "error": message}


def _line(reply: dict) -> bytes:
    return json.dumps(reply).encode() + b"\n"


def _unlink(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def listen_unix(path: str | Path, backlog: int = 16) -> socket.socket:
    """A non-blocking listening unix socket at ``path`` (a stale one is replaced), for
    servers that watch it with select and call ``Channel.serve_one`` when it is readable."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(backlog)
    s.setblocking(False)
    return s


async def serve_unix(path: str | Path, channel: Channel) -> asyncio.AbstractServer:
    """Serve ``channel`` on the unix socket ``path`` (a stale one is replaced) in the running
    event loop; each connection may send any number of requests."""
    _unlink(path)
    # one byte more than the limit: a line of exactly ``limit`` bytes plus its newline fits
    return await asyncio.start_unix_server(channel.serve_stream, str(path), limit=channel.limit + 1)


def ask(path: str | Path, request: dict, timeout: float = 5.0) -> dict:
    """Send one request to the control socket ``path``; return the answer (``ok`` true or
    false: the caller decides what a refusal means). Raises NotListening when nothing
    listens there, ControlError when the answer does not come within ``timeout`` s or is
    not a JSON object."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotListening(f"nothing listens on {path}: {exc.strerror}") from exc
        data = b""
        try:
            s.sendall(json.dumps(request).encode() + b"\n")
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                data += chunk
        except socket.timeout as exc:
            raise ControlError(f"no answer on {path} within {timeout:g} s") from exc
        except OSError as exc:
            raise ControlError(f"the control socket {path} failed: {exc}") from exc
    try:
        reply = json.loads(data)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ControlError(f"no answer on {path}" + (f" (got {data[:80]!r})" if data else ""))
    return reply
