"""lab.core.stun's lenient side: the header peek that reads captured packets and probe
answers, the names, and the RFC 5780 address attributes."""

import os

import pytest

from lab.core import stun


def test_peek_reads_method_class_transaction_and_error_code():
    tid = os.urandom(12)
    assert stun.peek(stun.encode(stun.ALLOCATE, stun.REQUEST, tid, [])) == (stun.ALLOCATE, stun.REQUEST, tid, None)
    err = stun.encode(stun.ALLOCATE, stun.ERROR, tid, [(stun.SOFTWARE, b"x"), (stun.ERROR_CODE, stun.error_code(438))],
                      add_fingerprint=True)
    assert stun.peek(err) == (stun.ALLOCATE, stun.ERROR, tid, 438)
    # a capture cut short after the ERROR-CODE: still read; cut inside it: no code, still STUN
    assert stun.peek(err[:20 + 8 + 4 + 8]).code == 438
    assert stun.peek(err[:20 + 8 + 6]) == (stun.ALLOCATE, stun.ERROR, tid, None)
    assert stun.peek(b"\x40\x00\x00\x04abcd") is None                 # ChannelData
    assert stun.peek(b"\x00\x01\x00\x00" + b"\x00" * 16) is None        # no magic cookie
    assert stun.peek(b"\x80" + stun.encode(stun.BINDING, stun.REQUEST, tid, [])[1:]) is None   # first bits set


def test_names():
    assert [stun.method_name(m) for m in (stun.BINDING, stun.CHANNEL_BIND, 0x00B)] == ["Binding", "ChannelBind", "0x00b"]
    assert stun.CLASS_NAMES[stun.SUCCESS] == "success" and stun.CLASS_NAMES[stun.INDICATION] == "indication"


@pytest.mark.parametrize("addr", [("198.51.100.7", 3479), ("2001:db8::1", 1)])
def test_address_attributes_round_trip(addr):
    tid = os.urandom(12)
    assert stun.parse_address(stun.address(addr)) == addr
    assert stun.parse_xor_address(stun.xor_address(addr, tid), tid) == addr
    with pytest.raises(stun.ParseError):
        stun.parse_address(stun.address(addr)[:-1])
