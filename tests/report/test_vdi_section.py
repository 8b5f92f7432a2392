"""The report's VDI section (lab/report/vdi.py), in both report formats."""

from lab.report.vdi import section


def test_the_vdi_section_shows_both_modes_and_nothing_without_vdi_calls():
    v = {"mode": "in-desktop", "thin_client": "thin1", "desktop": "desktop", "engine_on": "desktop",
         "signalling_from": "desktop",
         "mouth_to_ear": {"redirected": {"network_ms": 10.4, "softphone_ms": 80.0, "total_ms": 90.4},
                          "in-desktop": {"network_ms": 15.4, "display_ms": 45.9, "softphone_ms": 80.0,
                                         "total_ms": 141.3}}}
    text = section({"call:thin1": {"vdi": v}, "probe:x": {"sent": 1}})
    assert "mode `in-desktop`, RTC engine on `desktop`" in text
    assert "| redirected (thin client) | 10.4 ms | - | 80 ms | **90 ms** |" in text
    assert "| in the desktop | 15.4 ms | 45.9 ms | 80 ms | **141 ms** |" in text
    assert section({"call:a": {"quality": {}}}) == ""
    broken = dict(v, mouth_to_ear={"error": "'desktop' cannot ping 203.0.113.2"})
    assert "Mouth-to-ear not estimated: 'desktop' cannot ping" in section({"call:t": {"vdi": broken}})


def test_the_html_report_has_the_vdi_section_too():
    """It once was in report.md only: both formats now render the same sections."""
    v = {"mode": "redirected", "thin_client": "thin1", "desktop": "<desk>", "engine_on": "thin1",
         "signalling_from": "desktop",
         "mouth_to_ear": {"redirected": {"network_ms": 10.4, "softphone_ms": 80.0, "total_ms": 90.4},
                          "in-desktop": {"network_ms": 15.4, "display_ms": 45.9, "softphone_ms": 80.0,
                                         "total_ms": 141.3}}}
    page = section({"call:thin1": {"vdi": v}}, "html")
    assert "<h2>VDI: where the softphone ran, mouth-to-ear (one way)</h2>" in page
    assert "<td>redirected (thin client)</td><td>10.4 ms</td><td>-</td><td>80 ms</td><td><b>90 ms</b></td>" in page
    assert "desktop <code>&lt;desk&gt;</code>" in page          # autoescaped
    assert section({"call:a": {"quality": {}}}, "html") == ""
