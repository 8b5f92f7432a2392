"""The report's VDI section: per call from a thin client, where the softphone ran and the
mouth-to-ear estimate of both modes (lab/net/vdi.py), so a trainer can show why media from
the data centre sounds worse even when it connects."""

from __future__ import annotations


def markdown(observations: dict[str, dict]) -> list[str]:
    calls = [(k, o["vdi"]) for k, o in observations.items() if k.startswith("call:") and o.get("vdi")]
    if not calls:
        return []
    lines = ["", "## VDI: where the softphone ran, mouth-to-ear (one way)", ""]
    for key, v in calls:
        lines.append(f"**{key}**: mode `{v['mode']}`, RTC engine on `{v['engine_on']}`, "
                     f"signalling from `{v['signalling_from']}` (thin client `{v['thin_client']}`, "
                     f"desktop `{v['desktop']}`).")
        m = v.get("mouth_to_ear") or {}
        if "error" in m:
            lines += ["", f"Mouth-to-ear not estimated: {m['error']}", ""]
            continue
        if not m:
            lines.append("")
            continue
        r, d = m["redirected"], m["in-desktop"]
        lines += ["", "| softphone runs | network | display channel | softphone (nominal) | total |",
                  "|---|---|---|---|---|",
                  f"| redirected (thin client) | {r['network_ms']:.1f} ms | - | {r['softphone_ms']:.0f} ms | "
                  f"**{r['total_ms']:.0f} ms** |",
                  f"| in the desktop | {d['network_ms']:.1f} ms | {d['display_ms']:.1f} ms | "
                  f"{d['softphone_ms']:.0f} ms | **{d['total_ms']:.0f} ms** |", ""]
    return lines
