"""The embedded TURN server's control socket (lab/services/turn/faults.py, issue #13 item 5):
a bad request is answered with what is wrong and changes nothing; the server keeps
answering control requests and STUN alike; good requests work as before."""

from __future__ import annotations

import json
import socket

import pytest

from lab.core import stun
from lab.services.turn.faults import Faults, control

from turnlab import Client, error, server

BAD = [
    ({"faults": {"drop": 5}}, "faults.drop: Input should be a valid list"),
    ({"faults": {"delay": [{"method": "Binding", "ms": "800"}]}}, "faults.delay.0.ms: Input should be a valid number"),
    ({"faults": {"error": [{"method": "Allocate", "code": "508"}]}}, "faults.error.0.code: Input should be a valid integer"),
    ({"faults": {"error": [{"code": 200}]}}, "faults.error.0.code: Input should be greater than or equal to 300"),
    ({"faults": {"drop": [{"method": "Binding", "probability": 2}]}}, "less than or equal to 1"),
    ({"faults": {"drop": [{"transport": "sctp"}]}}, "faults.drop.0.transport: Input should be"),
    ({"faults": {"lose": []}}, "faults.lose: Extra inputs are not permitted"),
    ({"faults": {"stop_relay": "yes"}}, "faults.stop_relay: Input should be a valid boolean"),
    ({"faults": []}, "faults: Input should be a valid dictionary"),
    ({"restart": 1}, "restart: Input should be a valid boolean"),
    ({"reboot": True}, "reboot: Extra inputs are not permitted"),
    ([], "a request is a JSON object, not a list"),
]


def _raw(path: str, line: bytes) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(line)
        return json.loads(s.makefile("rb").readline())


def test_bad_control_requests_are_refused_and_change_nothing(tmp_path):
    with server(tmp_path) as s:
        ctl = s.cfg.control
        assert control(ctl, {"faults": {"error": [{"method": "Allocate", "code": 508}]}})["ok"]
        before = control(ctl, {"status": True})
        for request, says in BAD:
            answer = control(ctl, request)
            assert answer["ok"] is False and says in answer["error"], (request, answer)
        for line, says in ((b"not json\n", "not JSON"), (b"\n", "not JSON"),
                           (b'{"faults": {}}' + b" " * 70000 + b"\n", "at most 65536 bytes")):
            answer = _raw(ctl, line)
            assert answer["ok"] is False and says in answer["error"], answer
        after = control(ctl, {"status": True})
        assert after["faults"] == before["faults"] == {
            "drop": [], "delay": [], "error": [{"method": "Allocate", "code": 508}], "stop_relay": False,
            "permission_lifetime": None}
        # the server still works: STUN is answered, the fault in force still applies
        assert Client(s.udp).request(stun.BINDING, []).cls == stun.SUCCESS
        c = Client(s.udp)
        c.rest()
        assert error(c.allocate()) == 508
        assert control(ctl, {"faults": {}})["ok"]
        assert "Traceback" not in (tmp_path / "turn.log").read_text()


def test_a_good_request_several_verbs_at_once(tmp_path):
    with server(tmp_path) as s:
        answer = control(s.cfg.control, {"faults": {"drop": [{"method": "Binding", "probability": 1}],
                                                    "permission_lifetime": 20}, "status": True})
        assert answer["ok"] and answer["faults"]["drop"] == [{"method": "Binding", "probability": 1}]
        assert answer["faults"]["permission_lifetime"] == 20
        assert Client(s.udp, timeout=0.3).request(stun.BINDING, []) is None


@pytest.mark.parametrize("faults, says", [
    ({"lose": []}, "unknown faults: lose"),
    ({"error": [{"code": 200}]}, "an error fault needs a code between 300 and 699"),
    ({"drop": 5}, "drop: Input should be a valid list"),
    ({"delay": [{"ms": "800"}]}, "delay.0.ms: Input should be a valid number"),
])
def test_a_fault_set_in_a_file_is_checked_the_same_way(faults, says):
    with pytest.raises(ValueError, match=says):
        Faults.from_dict(faults)
