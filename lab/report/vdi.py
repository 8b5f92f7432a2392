"""The report's VDI section: per call from a thin client, where the softphone ran and the
mouth-to-ear estimate of both modes (lab/net/vdi.py), so a trainer can show why media from
the data centre sounds worse even when it connects. Rendered by templates/vdi.*.j2."""

from __future__ import annotations

from .render import render


def calls(observations: dict[str, dict]) -> list[dict]:
    """The section's data: a call from a thin client each (none: no section)."""
    out = []
    for key, o in observations.items():
        if not key.startswith("call:") or not o.get("vdi"):
            continue
        v = o["vdi"]
        m = v.get("mouth_to_ear") or {}
        estimate = {"redirected": m["redirected"], "in_desktop": m["in-desktop"]} if m and "error" not in m else None
        out.append({"key": key, "mode": v["mode"], "engine_on": v["engine_on"], "signalling_from": v["signalling_from"],
                    "thin_client": v["thin_client"], "desktop": v["desktop"],
                    "error": str(m["error"]) if "error" in m else None, "estimate": estimate})
    return out


def section(observations: dict[str, dict], fmt: str = "md") -> str:
    """The section alone, as Markdown (``fmt`` md) or HTML (html); empty without VDI calls."""
    return render(f"vdi.{fmt}.j2", vdi=calls(observations))
