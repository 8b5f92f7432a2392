"""The JSON-line control channel (lab/core/control.py): every request answered, a bad one
with an error naming what is wrong and nothing done; both server forms, and the client."""

import asyncio
import json
import socket
import threading

import pytest
from pydantic import Field

from lab.core.control import (Channel, ControlError, NotListening, Request, ask, listen_unix,
                              serve_unix)
from lab.core.errors import LabError


class Bump(Request):
    by: int = Field(1, ge=1)


class Rule(Request):
    ms: float = 0


class Config(Request):
    rules: list[Rule] = []
    stop: bool = False


class Counter:
    def __init__(self):
        self.n = 0
        self.config = Config()

    def bump(self, req: Bump) -> dict:
        self.n += req.by
        return {"n": self.n}

    def show(self, req: Request) -> dict:
        return {"n": self.n}

    def boom(self, req: Request) -> dict:
        raise KeyError("lost")

    def channel(self, limit=1024) -> Channel:
        return Channel.by_op({"bump": (Bump, self.bump), "show": (Request, self.show), "boom": (Request, self.boom)},
                             limit=limit)


BAD = [
    (b"not json", "not JSON"),
    (b"", "not JSON"),
    (b"[]", "a JSON object, not a list"),
    (b'"bump"', "a JSON object, not a string"),
    (b'{"by": 2}', "needs 'op': one of boom, bump, show"),
    (b'{"op": "bumb"}', "unknown op 'bumb': one of boom, bump, show"),
    (b'{"op": "bump", "by": "2"}', "by: Input should be a valid integer"),
    (b'{"op": "bump", "by": 0}', "by: Input should be greater than or equal to 1"),
    (b'{"op": "bump", "by": 2.5}', "by: Input should be a valid integer"),
    (b'{"op": "bump", "by": true}', "by: Input should be a valid integer"),
    (b'{"op": "bump", "twice": true}', "twice: Extra inputs are not permitted"),
    (b'{"op": "bump", "by": 1, "pad": "' + b"x" * 2000 + b'"}', "at most 1024 bytes"),
]


@pytest.mark.parametrize("line, says", BAD, ids=[b[:20].decode() for b, _ in BAD])
def test_a_bad_request_is_answered_with_what_is_wrong_and_changes_nothing(line, says):
    c = Counter()
    answer = c.channel().answer(line)
    assert answer["ok"] is False and says in answer["error"], answer
    assert c.n == 0


def test_a_good_request_gets_the_handlers_answer():
    c = Counter()
    ch = c.channel()
    assert ch.answer(b'{"op": "bump", "by": 2}\n') == {"ok": True, "n": 2}
    assert ch.answer('{"op": "show"}') == {"ok": True, "n": 2}


def test_a_handler_that_fails_is_an_error_answer_not_a_traceback():
    answer = Counter().channel().answer(b'{"op": "boom"}')
    assert answer == {"ok": False, "error": "KeyError: 'lost'"}


def test_a_single_shape_channel_names_the_nested_place_of_a_bad_value():
    got = []
    ch = Channel.single(Config, lambda req: got.append(req) or {})
    assert ch.answer(b'{"rules": 5}')["error"] == "rules: Input should be a valid list"
    assert ch.answer(b'{"rules": [{"ms": "800"}]}')["error"] == "rules.0.ms: Input should be a valid number"
    assert ch.answer(b'{"rules": [{"ms": 800}]}') == {"ok": True}
    assert got == [Config(rules=[Rule(ms=800)])]


def _blocking_server(path, channel, requests=1):
    listener = listen_unix(path)
    listener.setblocking(True)

    def run():
        for _ in range(requests):
            channel.serve_one(listener, timeout=0.3)
        listener.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_a_blocking_server_answers_good_and_bad_requests_and_silent_clients(tmp_path):
    path = tmp_path / "c.sock"
    c = Counter()
    t = _blocking_server(path, c.channel(), requests=4)
    assert ask(path, {"op": "bump"}) == {"ok": True, "n": 1}
    assert ask(path, [])["error"] == "a request is a JSON object, not a list"
    with socket.socket(socket.AF_UNIX) as s:         # connects, says nothing
        s.connect(str(path))
        assert json.loads(s.makefile().readline()) == {"ok": False, "error": "no request within 0.3 s"}
    with socket.socket(socket.AF_UNIX) as s:         # a line without its newline, then closes its side
        s.connect(str(path))
        s.sendall(b'{"op": "show"}')
        s.shutdown(socket.SHUT_WR)
        assert json.loads(s.makefile().readline()) == {"ok": True, "n": 1}
    t.join(2)
    assert c.n == 1


def test_an_asyncio_server_answers_every_line_and_closes_after_an_overlong_one(tmp_path):
    path = tmp_path / "a.sock"
    c = Counter()

    async def main():
        server = await serve_unix(path, c.channel(limit=200))
        reader, writer = await asyncio.open_unix_connection(str(path))
        answers = []
        for line in (b'{"op": "bump"}\n', b'[]\n', b'{"op": "bump", "by": "x"}\n', b'{"op": "show"}\n',
                     b'{"op": "bump", "pad": "' + b"y" * 500 + b'"}\n'):
            writer.write(line)
            await writer.drain()
            answers.append(json.loads(await reader.readline()))
        closed = await reader.read() == b""
        writer.close()
        server.close()
        await server.wait_closed()
        return answers, closed

    answers, closed = asyncio.run(main())
    assert [a["ok"] for a in answers] == [True, False, False, True, False]
    assert answers[3] == {"ok": True, "n": 1}
    assert "at most 200 bytes" in answers[4]["error"] and closed
    assert c.n == 1


def test_the_client_says_when_nothing_listens_or_nothing_answers(tmp_path):
    with pytest.raises(NotListening) as info:
        ask(tmp_path / "none.sock", {"op": "ping"})
    assert isinstance(info.value, LabError) and isinstance(info.value, OSError)
    path = tmp_path / "mute.sock"
    listener = listen_unix(path)                      # accepts (backlog) but never answers
    try:
        with pytest.raises(ControlError, match="no answer .* within 0.2 s"):
            ask(path, {"op": "ping"}, timeout=0.2)
    finally:
        listener.close()


def test_an_answer_json_cannot_carry_is_still_an_answer():
    ch = Channel.single(Request, lambda req: {"when": object()})
    answer = json.loads(ch.answer_line(b"{}"))
    assert answer["ok"] is False and "could not be sent" in answer["error"]
