"""The report's VDI section (lab/report/vdi.py)."""

from lab.report.vdi import markdown


def test_the_vdi_section_shows_both_modes_and_nothing_without_vdi_calls():
    v = {"mode": "in-desktop", "thin_client": "thin1", "desktop": "desktop", "engine_on": "desktop",
         "signalling_from": "desktop",
         "mouth_to_ear": {"redirected": {"network_ms": 10.4, "softphone_ms": 80.0, "total_ms": 90.4},
                          "in-desktop": {"network_ms": 15.4, "display_ms": 45.9, "softphone_ms": 80.0,
                                         "total_ms": 141.3}}}
    text = "\n".join(markdown({"call:thin1": {"vdi": v}, "probe:x": {"sent": 1}}))
    assert "mode `in-desktop`, RTC engine on `desktop`" in text
    assert "| redirected (thin client) | 10.4 ms | - | 80 ms | **90 ms** |" in text
    assert "| in the desktop | 15.4 ms | 45.9 ms | 80 ms | **141 ms** |" in text
    assert markdown({"call:a": {"quality": {}}}) == []
    broken = dict(v, mouth_to_ear={"error": "'desktop' cannot ping 203.0.113.2"})
    assert "Mouth-to-ear not estimated: 'desktop' cannot ping" in "\n".join(markdown({"call:t": {"vdi": broken}}))
