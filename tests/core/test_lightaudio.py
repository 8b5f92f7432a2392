"""The light media path's audio (lab/core/lightaudio.py): pre-encoded tones that decode to
their tone, and a sink that recognises them by payload and order without decoding."""

import pytest

from lab.core.audio import AGENT_TONE, CALLER_TONE, HOLD_TONE
from lab.core.lightaudio import CYCLE, PayloadSink, decoded, encoded_tone


@pytest.mark.parametrize("freq", [AGENT_TONE, CALLER_TONE, HOLD_TONE])
def test_an_encoded_tone_decodes_to_its_tone_and_each_frame_is_distinct(freq):
    tone = encoded_tone(freq)
    assert len(tone.payloads) == CYCLE and len(set(tone.payloads)) == CYCLE
    hz, dbfs = decoded(tone.payloads)
    assert abs(hz - freq) < 2 and tone.heard_hz == hz
    assert -25 < dbfs < -10          # the full path's sink reads the same tones at about -17 dBFS


def test_the_sink_hears_the_tone_of_its_frames_in_order():
    sink = PayloadSink((CALLER_TONE, HOLD_TONE))
    tone = encoded_tone(CALLER_TONE)
    for i in range(2 * CYCLE):
        sink.add((65530 + i) & 0xFFFF, tone.payloads[(7 + i) % CYCLE])     # the sequence number wraps
    assert sink.counts() == {"frames": 100, "matched": 100, "in_sequence": 100, "foreign": 0}
    hz, dbfs = sink.heard()
    assert hz == CALLER_TONE and dbfs == tone.dbfs


def test_a_lost_frame_keeps_the_order_and_a_reordered_or_foreign_one_is_counted():
    sink = PayloadSink((CALLER_TONE,))
    p = encoded_tone(CALLER_TONE).payloads
    sink.add(1, p[1])
    sink.add(3, p[3])           # 2 lost: still in sequence
    sink.add(4, p[10])          # not the frame that follows
    sink.add(5, b"\x00" * 40)   # nobody's frame
    assert sink.counts() == {"frames": 4, "matched": 3, "in_sequence": 2, "foreign": 1}


def test_the_agent_tone_is_not_heard_as_the_caller_and_silence_is_nothing():
    sink = PayloadSink((CALLER_TONE, HOLD_TONE))
    assert sink.heard() == (0.0, float("-inf"))
    for i, p in enumerate(encoded_tone(AGENT_TONE).payloads):
        sink.add(i, p)
    assert sink.heard() == (0.0, float("-inf")) and sink.foreign == CYCLE


def test_the_hold_tone_then_the_caller_after_accept():
    sink = PayloadSink((CALLER_TONE, HOLD_TONE))
    hold, caller = encoded_tone(HOLD_TONE).payloads, encoded_tone(CALLER_TONE).payloads
    for i in range(CYCLE):
        sink.add(i, hold[i])
    assert sink.heard()[0] == HOLD_TONE
    sink.reset()
    for i in range(CYCLE, CYCLE + 30):
        sink.add(i, caller[i % CYCLE])
    assert sink.heard()[0] == CALLER_TONE and sink.in_sequence == CYCLE + 30
